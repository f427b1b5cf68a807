"""tts-ops-supervisor: run tts-ops services as supervisord programs, over XML-RPC.

The plugin itself is `tts_ops_supervisor.plugin` (the ``tts_ops`` entry point).
"""

__version__ = "0.1.0"
