"""tts-server: the reference text-to-speech HTTP server that tts-ops deploys by default."""

__version__ = "0.1.0"
