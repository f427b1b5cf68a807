"""Checked by mypy (the test command runs it): every first-party implementation is what
its registration's Protocol asks for. Never imported or run; a mismatch is a type error."""

from __future__ import annotations

from pathlib import Path

from tts_ops_strategies.blue_green import BlueGreen
from tts_ops_strategies.canary import Canary
from tts_ops_strategies.direct import Direct
from tts_ops_strategies.rolling import Rolling
from tts_ops_supervisor.backend import SupervisorBackend
from tts_ops_systemd.backend import SystemdBackend

from tts_ops.backend import BackendContext, ProcessBackend
from tts_ops.contracts import (
    ChangeFeed,
    EventSource,
    LogLocator,
    LogRotator,
    LogSink,
    RegistryStore,
    Router,
    SharedRegistry,
    Strategy,
)
from tts_ops.discovery.store import SqliteStore
from tts_ops.logs.sinks import FileSink
from tts_ops_etcd.options import EtcdOptions
from tts_ops_etcd.store import EtcdStore
from tts_ops_haproxy.router import HaproxyRouter
from tts_ops_manual.backend import ManualBackend


def backends(ctx: BackendContext) -> list[ProcessBackend]:
    return [ManualBackend(ctx), SystemdBackend(ctx), SupervisorBackend(ctx)]


def optional_parts(ctx: BackendContext) -> tuple[EventSource, LogRotator, LogLocator, LogLocator]:
    return ManualBackend(ctx), ManualBackend(ctx), SystemdBackend(ctx), SupervisorBackend(ctx)


def strategies() -> list[Strategy]:
    return [Direct(), BlueGreen(), Rolling(), Canary()]


def stores(path: Path, etcd: EtcdOptions) -> list[RegistryStore]:
    return [SqliteStore(path), EtcdStore(etcd)]


def store_parts(etcd: EtcdOptions) -> tuple[ChangeFeed, SharedRegistry]:
    return EtcdStore(etcd), EtcdStore(etcd)


def sinks(path: Path) -> list[LogSink]:
    return [FileSink(path)]


def routers(state_dir: Path) -> list[Router]:
    return [HaproxyRouter(state_dir)]
