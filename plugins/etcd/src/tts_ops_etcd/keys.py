"""etcd's JSON gateway speaks keys and values in base64: the encodings, and key ranges.

Apart from `tts_ops_etcd.cluster` (which imports etcd3gw and requests) so that opening a
store, as ``status`` does to learn its node, costs no client import.
"""

from __future__ import annotations

import base64


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(data: str) -> bytes:
    return base64.b64decode(data)


def prefix_end(key: str) -> str:
    """The end of the range of every key that starts with ``key``."""
    raw = bytearray(key.encode())
    raw[-1] += 1
    return b64(bytes(raw))
