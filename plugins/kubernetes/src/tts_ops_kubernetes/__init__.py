"""tts-ops-kubernetes: hand a tts-ops service over to Kubernetes (``tts-ops export kubernetes``)."""

__version__ = "0.1.0"
