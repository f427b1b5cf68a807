"""tts-ops registry on etcd v3 (``"discovery": {"registry": "etcd", ...}``)."""

__version__ = "0.1.0"
