"""ServeConfig: the service's settings, from PROMPTBERT_* environment variables.

BentoML reads batching limits at import time (decorator arguments), so the
service's settings come from the environment rather than from a file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from .decoding import STRATEGIES
from .errors import ConfigError

ENV_PREFIX = "PROMPTBERT_"
BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class ServeConfig:
    """Settings of service.py; each field can be set as PROMPTBERT_<FIELD> (upper case)."""

    artifact: str = str(Path(__file__).resolve().parents[1] / "artifacts" / "serve")
    variant: str = "auto"  # auto: fp16/fp32 on CUDA, int8 on CPU
    device: str = "auto"  # auto, cpu, cuda
    max_batch_size: int = 32  # adaptive batching: most texts per model call (1: batching off)
    max_latency_ms: int = 2000  # adaptive batching: queued past this -> 503
    max_items: int = 64  # most texts in one request
    max_chars: int = 10000  # most characters in one text
    max_batch_tokens: int = 8192  # token budget of one ONNX Runtime call inside a batch
    threads: int = 0  # ORT intra-op threads per worker (0: ORT default, one per core)
    workers: int = 1  # service processes; each loads the model (on N cores, N workers x 1 thread parallelises the Python side too)
    ort_spinning: bool = False  # let ORT threads busy-wait between runs (faster alone, steals CPU from the HTTP loop)
    aggregation: str = ""  # default strategy; empty = the one that scored best at export
    max_concurrency: int = 256  # past this many in-flight requests -> 429
    timeout_s: int = 60  # request timeout -> 504

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_latency_ms", "max_items", "max_chars", "max_batch_tokens", "max_concurrency",
                     "timeout_s", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: must be auto, cpu or cuda, got {self.device!r}")
        if self.aggregation and self.aggregation not in STRATEGIES:
            raise ConfigError(f"aggregation: must be one of {', '.join(STRATEGIES)}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeConfig:
        env = os.environ if environ is None else environ
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX):].lower()
            if name not in known:
                continue  # PROMPTBERT_* variables of other tools (e.g. PROMPTBERT_ARTIFACT_URL) are not ours
            default = known[name].default
            if isinstance(default, bool):
                flag = raw.strip().lower()
                if flag not in BOOLS:
                    raise ConfigError(f"{key}: expected a boolean (1/0, true/false), got {raw!r}")
                values[name] = BOOLS[flag]
                continue
            try:
                values[name] = type(default)(raw) if not isinstance(default, str) else raw
            except ValueError:
                raise ConfigError(f"{key}: expected {type(default).__name__}, got {raw!r}") from None
        return cls(**values)  # type: ignore[arg-type]
