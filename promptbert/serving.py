"""ServeConfig: the service's settings, from PROMPTBERT_* environment variables.

BentoML reads batching limits at import time (decorator arguments), so the service's settings
come from the environment rather than from a file. Every field is PROMPTBERT_<FIELD>; an unknown
PROMPTBERT_* variable is an error (a misspelt setting must not be silently ignored), except those
of the load test (PROMPTBERT_LOADTEST_*). docs/serving.md describes each setting.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from .decoding import STRATEGIES
from .encoding import DEFAULT_CALL_COST, CallCost
from .errors import ConfigError

ENV_PREFIX = "PROMPTBERT_"
FOREIGN_PREFIXES = ("PROMPTBERT_LOADTEST_",)  # read by loadtests/locustfile.py, not by the service
AUTO_MAX_WORKERS = 8  # a memory guard, not a measured optimum (measured only on 2 cores)
AUTO_GPU_WORKERS = 4  # one GPU shared by this many workers: measured against 1 on an H200 (resolved_workers)
BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class ServeConfig:
    """Settings of service.py; each field can be set as PROMPTBERT_<FIELD> (upper case)."""

    artifact: str = ""  # empty: artifacts/serve beside service.py (in a built bento, the copy it carries)
    variant: str = "auto"  # auto: fp16/fp32 on CUDA, int8 on CPU
    device: str = "auto"  # auto, cpu, cuda
    workers: int = 0  # service processes, each with its own model (0: auto -- one per core on CPU, 4 on a GPU)
    max_batch_size: int = 128  # adaptive batching: most texts merged into one batch (1: batching off)
    max_latency_ms: int = 2000  # adaptive batching: queued past this -> 503
    max_items: int = 64  # most texts in one request
    max_chars: int = 100_000  # most characters in one text, and in one request's texts together (docs/serving.md: its time)
    timeout_s: int = 60  # request timeout -> 504
    max_concurrency: int = 256  # past this many in-flight requests -> 429
    tracing: bool = False  # on: OpenTelemetry spans per request, for a BentoML tracing exporter; off: none
    access_log: bool = True  # one log line per request
    aggregation: str = ""  # default strategy; empty = the one that scored best at export
    split_sentences: bool = True  # each sentence of a text its own sequence, as trained (data.sentence_bounds); 0: whole text
    max_batch_tokens: int = 8192  # token budget of one ONNX Runtime call inside a batch
    call_cost: float = -1.0  # fixed cost of one ORT call, in padded tokens (encoding.CallCost); -1: auto (batch_cost)
    row_cost: float = -1.0  # fixed cost of one text in a call, in padded tokens; -1: auto
    threads: int = 0  # ORT intra-op threads per worker (0: auto -- 1 with several workers, else ORT's default)
    ort_spinning: bool = False  # let ORT threads busy-wait between runs (faster alone, steals CPU from the HTTP loop)
    inline_chars: int = 4000  # most characters one step on the event loop runs (bentoml_workarounds.run_in_steps); 0: every batch in a thread
    gather_yields: int = 4  # the event loop's turns after each inline step (0: none)
    keepalive_requests: int = 100  # several workers: close 1 keep-alive connection in N, more above a fair share (KeepAliveBudget; 0: never)
    prompt_cache_entries: int = 256  # types models: distinct prompts whose encodings a worker keeps (LRU)
    prompt_cache_mb: int = 256  # types models: most MiB those encodings take in a worker
    gc_threshold: int = 10000  # after start-up: freeze the heap, collect the young generation every N allocations (tune_gc; 0: Python's defaults)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_latency_ms", "max_items", "max_chars", "max_batch_tokens", "max_concurrency",
                     "timeout_s", "prompt_cache_entries", "prompt_cache_mb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")
        for name in ("workers", "threads", "keepalive_requests", "inline_chars", "gather_yields", "gc_threshold"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0")
        for name in ("call_cost", "row_cost"):
            if getattr(self, name) < 0 and getattr(self, name) != -1:
                raise ConfigError(f"{name}: must be >= 0, or -1 for auto")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: must be auto, cpu or cuda, got {self.device!r}")
        if self.aggregation and self.aggregation not in STRATEGIES:
            raise ConfigError(f"aggregation: must be one of {', '.join(STRATEGIES)}")

    def batch_cost(self) -> CallCost | None:
        """The cost model set for cutting a batch into ONNX Runtime calls (encoding.token_budget_batches),
        or None when both are auto: then the tagger takes the device's own from the providers ORT gave
        (encoding.default_call_cost; on a GPU no cut below the token budget). A value set alone
        completes the CPU's model."""
        if self.call_cost < 0 and self.row_cost < 0:
            return None
        return CallCost(DEFAULT_CALL_COST.per_call if self.call_cost < 0 else self.call_cost,
                        DEFAULT_CALL_COST.per_row if self.row_cost < 0 else self.row_cost)

    def resolved_workers(self, gpu: bool) -> int:
        """On CPU one worker per core, each with one ORT thread: the HTTP/JSON side of every request then
        runs in parallel too (2 cores: 1.7x the throughput of one worker with 2 threads at 8 clients).
        Auto stops at AUTO_MAX_WORKERS: each worker holds its own model (about 215 MiB resident with the
        int8 CoNLL artifact). On a GPU the Python side of each request is the limit, not the device:
        four workers share it (H200, fp16 CoNLL artifact: 1.8x the sentences/s of one worker at 8
        clients x 1 sentence, 2.0x at 32), at most one per core."""
        if self.workers:
            return self.workers
        return max(1, min(AUTO_GPU_WORKERS if gpu else AUTO_MAX_WORKERS, os.cpu_count() or 1))

    def resolved_threads(self, workers: int) -> int:
        """ORT intra-op threads per worker (0 = ORT's default, one per core)."""
        if self.threads:
            return self.threads
        return 1 if workers > 1 else 0

    @property
    def tracing_enabled(self) -> bool:
        """Whether requests go through BentoML's OpenTelemetry middleware. Without an exporter its spans
        go nowhere, yet it costs about 0.4 ms of CPU a request on this project's 2-core machine (a fifth
        of a CoNLL sentence's whole cost), so it is off unless asked for. Off also drops the
        ``X-BentoML-Request-ID`` header, which is the span's id."""
        return self.tracing

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeConfig:
        env = os.environ if environ is None else environ
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for key, raw in sorted(env.items()):
            if not key.startswith(ENV_PREFIX) or key.startswith(FOREIGN_PREFIXES):
                continue
            name = key[len(ENV_PREFIX):].lower()
            if name not in known:
                settings = ", ".join(f"{ENV_PREFIX}{n.upper()}" for n in known)
                raise ConfigError(f"{key}: unknown setting (known: {settings})")
            default = known[name].default
            if isinstance(default, bool):
                flag = raw.strip().lower()
                if flag not in BOOLS:
                    raise ConfigError(f"{key}: expected a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")
                values[name] = BOOLS[flag]
                continue
            try:
                values[name] = type(default)(raw) if not isinstance(default, str) else raw
            except ValueError:
                raise ConfigError(f"{key}: expected {type(default).__name__}, got {raw!r}") from None
        return cls(**values)  # type: ignore[arg-type]


def settings(default_artifact: str | Path, in_worker: bool) -> tuple[ServeConfig, int]:
    """The service's settings (artifact defaulted) and its worker count. In the serve process, before any
    worker starts, the artifact is also checked as a worker's load would (``Artifact.check``): what would
    make every worker fail is caught there once, instead of BentoML restarting the workers in a loop."""
    from .runtime import Artifact, cuda_available

    config = ServeConfig.from_env()
    if not config.artifact:
        config = dataclasses.replace(config, artifact=str(default_artifact))
    if not in_worker:
        Artifact(config.artifact).check(config.variant, config.device)
    gpu = config.device == "cuda" or (config.device == "auto" and cuda_available())
    return config, config.resolved_workers(gpu)


# Seconds of one ONNX Runtime call: ~1 ms (one short text) to ~100 ms (a 128-text batch) on 2 CPU cores.
MODEL_CALL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@functools.cache
def model_call_metrics() -> Callable[[dict[str, np.ndarray], float], None]:
    """This process's observer of model calls, for /metrics: how long each ONNX Runtime call took, how
    many rows it ran and how much of what it computed was padding. BentoML's own metrics stop at the
    batch; these say what share of the service's time the model takes (``bench/service.py`` reads them).

    Made on first use, in the worker: prometheus_client must be imported after BentoML has set
    ``PROMETHEUS_MULTIPROC_DIR`` there, or the workers' values never reach /metrics. Once per process.
    """
    from prometheus_client import Counter, Histogram

    seconds = Histogram("promptbert_model_call_seconds", "Wall time of one ONNX Runtime call", buckets=MODEL_CALL_BUCKETS)
    rows = Counter("promptbert_model_rows", "Rows (text windows) the model ran")
    padded = Counter("promptbert_model_padded_tokens", "Tokens the model computed, padding included (rows x width)")
    tokens = Counter("promptbert_model_tokens", "Tokens of text the model computed (padding excluded)")

    def observe(arrays: dict[str, np.ndarray], elapsed: float) -> None:
        mask = arrays["attention_mask"]
        seconds.observe(elapsed)
        rows.inc(mask.shape[0])
        padded.inc(mask.size)
        tokens.inc(int(mask.sum()))

    return observe


# Seconds to encode one prompt (fp32 encoder, one thread): ~20 ms for 34 tokens to ~150 ms for 380 on 2 CPU cores.
PROMPT_ENCODE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@functools.cache
def prompt_cache_metrics() -> Callable[[bool, float, int, int], None]:
    """This process's observer of the prompt cache (types models), for /metrics: hits, misses, the time
    each new prompt took to encode, and the entries and bytes held (summed over live workers)."""
    from prometheus_client import Counter, Gauge, Histogram

    hits = Counter("promptbert_prompt_cache_hits", "Prompt lookups answered from the cache (one per prompt in a batch)")
    misses = Counter("promptbert_prompt_cache_misses", "Prompt lookups that had to encode the prompt")
    encode = Histogram("promptbert_prompt_encode_seconds", "Wall time of encoding one prompt",
                       buckets=PROMPT_ENCODE_BUCKETS)
    entries = Gauge("promptbert_prompt_cache_entries", "Prompt encodings held", multiprocess_mode="livesum")
    held = Gauge("promptbert_prompt_cache_bytes", "Bytes of prompt encodings held", multiprocess_mode="livesum")

    def observe(hit: bool, seconds: float, n: int, size: int) -> None:
        if hit:
            hits.inc()
        else:
            misses.inc()
            encode.observe(seconds)
        entries.set(n)
        held.set(size)

    return observe


@functools.cache
def mark_worker_ready() -> None:
    """Count this worker in ``promptbert_workers_ready`` (summed over the serve's live workers): /readyz
    turns green with the first ready worker, and a client that must wait for all of them (a benchmark)
    compares this with /metadata's ``workers``. Once per process, after the warm-up."""
    from prometheus_client import Gauge

    Gauge("promptbert_workers_ready", "Workers loaded and warmed up", multiprocess_mode="livesum").inc()


def tune_gc(threshold: int) -> dict[str, Any]:
    """Tune Python's garbage collector for serving, once the model is loaded and warmed up.

    Everything alive after start-up (BentoML, pydantic's schemas, the tokenizer, the pipeline) lives
    as long as the worker, yet each full collection walks all of it again: about 50 ms a time, every
    3-5 s at 32 clients x 1 sentence, 1.7-3.2% of a worker's CPU in all (measured with gc.callbacks).
    ``gc.freeze()`` moves those objects out of the collector's sight, and a young-generation
    threshold of ``threshold`` allocations instead of 700 collects the short-lived request objects
    less often: under 0.1% of the CPU, no full collection seen (docs/serving.md). 0 leaves Python's
    defaults. Returns the collector's state, for /metadata.
    """
    if threshold:
        gc.collect()
        gc.freeze()
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
    return {"frozen_objects": gc.get_freeze_count(), "thresholds": list(gc.get_threshold())}


