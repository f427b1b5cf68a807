"""The ``discovery`` section for the etcd registry, and the ``etcd://`` URL form of it.

``{"registry": "etcd", "endpoints": ["http://10.0.0.1:2379", ...], "prefix": "/tts-ops",
"node": "web-1", "ca_cert": ..., "cert": ..., "key": ..., "user": ..., "password_file": ...}``

A password is never written in the config or the URL, and never stored by tts-ops: it is
read from ``password_file`` (kept private by its owner) or ``$TTS_OPS_ETCD_PASSWORD``
when a client connects, so the spec files the manual supervisors read carry only the path.
"""

from __future__ import annotations

import re
import socket
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, field_validator
from pydantic_core import PydanticCustomError

from tts_ops.plugin import ConfigError

PASSWORD_ENV = "TTS_OPS_ETCD_PASSWORD"
_NODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _bad(message: str) -> PydanticCustomError:
    return PydanticCustomError("etcd", message.replace("{", "{{").replace("}", "}}"))


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise _bad(f"must be http://HOST:PORT or https://HOST:PORT (got {value!r})")
    try:
        port = parts.port
    except ValueError:
        raise _bad(f"has no valid port (got {value!r})") from None
    if parts.username or parts.password:
        raise _bad("must not carry a user or password: use user and password_file")
    return f"{parts.scheme}://{parts.netloc}" if port else f"{parts.scheme}://{parts.hostname}:2379"


def default_node() -> str:
    """This host's name, in the form an instance id takes (``tts-a:NODE``)."""
    name = re.sub(r"[^a-z0-9_.-]", "-", socket.gethostname().lower()).strip("-._")
    return (name or "node")[:63]


class EtcdOptions(BaseModel):
    """What the etcd registry needs; every field has the name it has in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoints: list[Annotated[StrictStr, AfterValidator(_endpoint)]] = Field(
        default_factory=lambda: ["http://127.0.0.1:2379"], min_length=1)
    prefix: StrictStr = "/tts-ops"
    #: this host's name: its instances are ``NAME:NODE``, unique across hosts
    node: StrictStr = Field(default_factory=default_node)
    timeout: float = Field(default=2.0, gt=0, le=60)
    #: seconds a deploy lock outlives a deploy killed with SIGKILL
    lock_ttl: int = Field(default=10, ge=2, le=300)
    ca_cert: StrictStr | None = None
    cert: StrictStr | None = None
    key: StrictStr | None = None
    user: StrictStr | None = None
    password_file: StrictStr | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", value):
            raise _bad(f"must be a key path like /tts-ops (got {value!r})")
        return value

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        if not _NODE.match(value):
            raise _bad("must be lower-case letters, digits, '_', '.' or '-' (at most 63),"
                             f" starting with a letter or digit (got {value!r})")
        return value

    def password(self) -> str | None:
        """Read now, never kept on the model (its dumps go into spec files)."""
        import os

        if self.password_file:
            path = self.password_file
            try:
                with open(path, encoding="utf-8") as fh:
                    mode = os.fstat(fh.fileno()).st_mode & 0o777
                    if mode & 0o077:  # as ssh does with a private key: refuse, say why
                        raise ConfigError(
                            f"discovery.password_file: {path} can be read by other users"
                            f" (mode {mode:04o}): chmod 600 {path}")
                    return fh.read().strip()
            except OSError as exc:
                raise ConfigError(f"discovery.password_file: cannot read {path}"
                                  f" ({exc.strerror}): fix the path or its permissions"
                                  ) from None
        return os.environ.get(PASSWORD_ENV) if self.user else None


def from_url(url: str) -> EtcdOptions:
    """``etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`` (``etcds://`` for TLS), as the seed's
    ``ServiceRegistry(URL)`` takes it."""
    from pydantic import ValidationError

    match = re.fullmatch(r"(etcds?)://([^/]+)(/.*)?", url)
    if not match:
        raise ConfigError(f"registry {url!r}: use etcd://HOST:PORT[,HOST:PORT...][/PREFIX]")
    scheme = "https" if match[1] == "etcds" else "http"
    data: dict[str, object] = {"endpoints": [f"{scheme}://{h}" for h in match[2].split(",")]}
    if match[3] and match[3] != "/":
        data["prefix"] = match[3].rstrip("/")
    try:
        return EtcdOptions.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"registry {url!r}: {where}: {err['msg']}") from None
