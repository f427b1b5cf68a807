"""The discovery record of one instance, and the checks that keep bad records out."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tts_ops.errors import ConfigError

HEALTH = ("passing", "warning", "critical")
# NAME[@SLOT][:NODE]: a shared registry (etcd) qualifies ids with the node that runs them
_ID = re.compile(r"^[a-z][a-z0-9_.-]{0,62}(@[a-z0-9_.-]{1,32})?(:[a-z0-9][a-z0-9_.-]{0,62})?$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass
class InstanceRecord:
    id: str
    service: str
    host: str
    port: int
    service_type: str = "text-to-speech"
    url: str = ""
    release: str | None = None
    weight: int = 100
    labels: dict[str, str] = field(default_factory=dict)
    health: str = "passing"
    registered_at: float = 0.0
    last_heartbeat: float = 0.0
    ttl: float = 30.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)
        if not self.url:
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.url = f"http://{host}:{self.port}"
        now = time.time()
        self.registered_at = self.registered_at or now
        self.last_heartbeat = self.last_heartbeat or now

    def effective_health(self, now: float | None = None) -> str:
        """``critical`` once no heartbeat came within ``ttl``, else the recorded health."""
        now = time.time() if now is None else now
        return "critical" if now - self.last_heartbeat > self.ttl else self.health

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        data = asdict(self)
        data["effective_health"] = self.effective_health(now)
        return data

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> InstanceRecord:
        """A record read back from a store: it was validated when written, so not again."""
        data = dict(row)
        for key in ("labels", "meta"):
            value = data.get(key)
            if isinstance(value, str):
                data[key] = {} if value == "{}" else json.loads(value)
        data.pop("beats", None)
        record = cls.__new__(cls)
        record.__dict__.update(data)
        return record

    @classmethod
    def from_input(cls, data: dict[str, Any]) -> InstanceRecord:
        """A record from user input (CLI, API): unknown fields and wrong types are errors."""
        known = set(cls.__dataclass_fields__)
        for key in data:
            if key not in known and key != "effective_health":
                raise ConfigError(f"{key}: unknown field; valid: {', '.join(sorted(known))}")
        data = {k: v for k, v in data.items() if k in known}
        data.setdefault("service", service_of(str(data.get("id", ""))))
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"record: {exc}") from None


def service_of(rid: str) -> str:
    """The service of an instance id: ``tts-a`` of ``tts-a@blue:web-1``."""
    return rid.split(":")[0].split("@")[0]


def node_of(rid: str) -> str | None:
    """The node of a qualified id (``web-1`` of ``tts-a@blue:web-1``), else None."""
    return rid.partition(":")[2] or None


def validate(r: InstanceRecord) -> None:
    if not isinstance(r.id, str) or not _ID.match(r.id):
        raise ConfigError(f"id: invalid instance id {r.id!r}: use a service name, optionally"
                          " followed by @ and a slot and by : and a node (e.g."
                          " tts-primary@blue or tts-primary:web-1)")
    if service_of(r.id) != r.service:
        raise ConfigError(f"service: {r.service!r} does not match the id {r.id!r}")
    if not isinstance(r.port, int) or isinstance(r.port, bool) or not 1 <= r.port <= 65535:
        raise ConfigError(f"port: must be 1-65535 (got {r.port!r})")
    if not isinstance(r.host, str) or not _valid_host(r.host):
        raise ConfigError(f"host: {r.host!r} is neither an IP address nor a hostname")
    if not isinstance(r.weight, int) or isinstance(r.weight, bool) or not 0 <= r.weight <= 100:
        raise ConfigError(f"weight: must be 0-100 (got {r.weight!r})")
    if r.health not in HEALTH:
        raise ConfigError(f"health: must be one of {', '.join(HEALTH)} (got {r.health!r})")
    if not isinstance(r.ttl, int | float) or r.ttl <= 0:
        raise ConfigError(f"ttl: must be a positive number of seconds (got {r.ttl!r})")
    if r.url and not r.url.startswith(("http://", "https://")):
        raise ConfigError(f"url: must start with http:// or https:// (got {r.url!r})")
    if not isinstance(r.labels, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in r.labels.items()):
        raise ConfigError("labels: must map strings to strings")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))
