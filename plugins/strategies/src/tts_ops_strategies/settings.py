"""The settings of the rolling and canary strategies: ``deploy.rolling`` and ``deploy.canary``.

``{"deploy": {"strategy": "canary", "canary": {"steps": [25, 100], "min_samples": 50}}}``.
The core validates each section with these models when it loads the config, and hands the
running strategy its own as ``ctx.options``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class RollingSettings(_Settings):
    #: instances replaced at a time
    batch_size: int = Field(default=1, ge=1, le=64)
    #: old instances that may be down before their replacement is ready
    max_unavailable: int = Field(default=0, ge=0, le=10_000)
    #: extra instances that may run during a batch
    max_surge: int = Field(default=1, ge=1, le=64)


class CanarySettings(_Settings):
    #: the canary's traffic share at each step, in percent; the last is 100
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1,
                             max_length=100)
    #: how long each step runs before it is analysed
    step_pause_seconds: float = Field(default=5.0, ge=0, le=86_400)
    #: requests the canary must have served at a step before it is judged
    min_samples: int = Field(default=20, ge=1, le=10_000)
    #: the highest error rate (0-1) a step may show
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    #: the request paths a step counts (``tts_requests_total{path}`` of the instance's
    #: /metrics); health checks and metrics scrapes are not traffic
    count_paths: list[str] = Field(
        default_factory=lambda: ["/synthesize", "/v1/audio/speech"], min_length=1,
        max_length=50)

    @field_validator("count_paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or not path.isprintable() or len(path) > 200:
                raise PydanticCustomError("count_paths", "each must be a path such as"
                                          " /synthesize (got {got!r})", {"got": path})
        return value

    @field_validator("steps")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if any(not 1 <= v <= 100 for v in value) or value != sorted(value) or value[-1] != 100:
            raise PydanticCustomError("steps", "must be 1-100, rise and end at 100 (got {got})",
                                      {"got": value})
        return value
