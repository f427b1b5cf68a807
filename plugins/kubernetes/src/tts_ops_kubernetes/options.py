"""``options.kubernetes`` of a service: what only Kubernetes needs to know of it."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

#: a DNS-1123 label (namespaces, service accounts)
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
#: what an image reference may hold (registry/path:tag@digest), nothing else
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}")
#: a label key: an optional DNS prefix and a name
LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
                       r"[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def check_image(value: str) -> str:
    if not IMAGE.fullmatch(value):
        raise PydanticCustomError("image", "not an image reference (got {got}): use"
                                  " registry/name:tag", {"got": repr(value[:80])})
    return value


def check_label(value: str, what: str) -> str:
    if not LABEL.fullmatch(value):
        raise PydanticCustomError("dns_label", "{what} must be 1-63 characters a-z 0-9 -,"
                                  " starting and ending with a letter or digit (got {got})",
                                  {"what": what, "got": repr(value[:80])})
    return value


class KubernetesOptions(BaseModel):
    """``{"options": {"kubernetes": {"image": "registry/tts:1.2", ...}}}``; the command's
    flags override them."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    image: str | None = None
    namespace: str | None = None
    service_account: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=64)
    #: the image of the init containers that wait for a required dependency's Service
    wait_image: str = "busybox:1.36"
    #: the Service's type
    service_type: str = Field(default="ClusterIP", pattern="^(ClusterIP|NodePort|LoadBalancer)$")

    @field_validator("image", "wait_image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else check_image(value)

    @field_validator("namespace", "service_account")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else check_label(value, "a namespace or account name")

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(item):
                raise PydanticCustomError("node_selector", "node_selector {got}: keys and values"
                                          " must be Kubernetes label keys and values",
                                          {"got": repr(f"{key}={item}"[:80])})
        return value
