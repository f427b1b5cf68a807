"""tts-ops-haproxy: the ``haproxy`` router.

HAProxy's frontend owns a service's configured ``host:port``; the service's instances
listen on private loopback ports behind it. `tts_ops_haproxy.render` writes the config,
`tts_ops_haproxy.runtime` talks to the admin socket, `tts_ops_haproxy.router` is the
`tts_ops.plugin.Router` the core drives, and `tts_ops_haproxy.plugin` registers it.
"""

__version__ = "0.1.0"
