"""tts-ops-manual: supervision with no init system, one small supervisor per service.

The plugin itself is `tts_ops_manual.plugin` (the ``tts_ops`` entry point).
"""

__version__ = "0.1.0"
