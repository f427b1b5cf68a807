"""The entry point of tts-ops-etcd: the ``etcd`` registry and its ``discovery`` options."""

from __future__ import annotations

from tts_ops import hookimpl


def _etcd(location):
    from tts_ops_etcd.store import open_store  # imported only when used

    return open_store(location)


def _options() -> type:
    from tts_ops_etcd.options import EtcdOptions

    return EtcdOptions


@hookimpl
def tts_ops_register_registries(register) -> None:
    register.add("etcd", _etcd, options=_options)
