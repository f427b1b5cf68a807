"""tts-ops-systemd: run tts-ops services as systemd units (system or user scope).

The plugin itself is `tts_ops_systemd.plugin` (the ``tts_ops`` entry point).
"""

__version__ = "0.1.0"
