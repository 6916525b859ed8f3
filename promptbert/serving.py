"""ServeConfig: the service's settings, from PROMPTBERT_* environment variables.

BentoML reads batching limits at import time (decorator arguments), so the
service's settings come from the environment rather than from a file.
"""

from __future__ import annotations

import dataclasses
import gc
import mmap
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .decoding import STRATEGIES
from .encoding import DEFAULT_CALL_COST, CallCost
from .errors import ConfigError

ENV_PREFIX = "PROMPTBERT_"
AUTO_MAX_WORKERS = 8  # a memory guard, not a measured optimum (measured only on 2 cores)
AUTO_GPU_WORKERS = 4  # one GPU shared by this many workers: measured against 1 on an H200 (resolved_workers)
BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class ServeConfig:
    """Settings of service.py; each field can be set as PROMPTBERT_<FIELD> (upper case)."""

    artifact: str = str(Path(__file__).resolve().parents[1] / "artifacts" / "serve")
    variant: str = "auto"  # auto: fp16/fp32 on CUDA, int8 on CPU
    device: str = "auto"  # auto, cpu, cuda
    max_batch_size: int = 128  # adaptive batching: most texts merged into one batch (1: batching off)
    max_latency_ms: int = 2000  # adaptive batching: queued past this -> 503
    max_items: int = 64  # most texts in one request
    max_chars: int = 10000  # most characters in one text
    max_batch_tokens: int = 8192  # token budget of one ONNX Runtime call inside a batch
    call_cost: float = -1.0  # fixed cost of one ORT call, in padded tokens (encoding.CallCost); -1: auto (batch_cost)
    row_cost: float = -1.0  # fixed cost of one text in a call, in padded tokens; -1: auto
    threads: int = 0  # ORT intra-op threads per worker (0: auto -- 1 with several workers, else ORT's default)
    workers: int = 0  # service processes, each with its own model (0: auto -- one per core on CPU, 4 on a GPU)
    ort_spinning: bool = False  # let ORT threads busy-wait between runs (faster alone, steals CPU from the HTTP loop)
    aggregation: str = ""  # default strategy; empty = the one that scored best at export
    max_concurrency: int = 256  # past this many in-flight requests -> 429
    inline_chars: int = 4000  # most characters one step on the event loop runs (inline_steps); 0: every batch in a thread
    gather_yields: int = 4  # the event loop's turns after each inline step (0: none)
    access_log: bool = True  # one log line per request (costs ~0.07 ms of CPU a request, measured)
    tracing: str = "auto"  # OpenTelemetry spans per request: auto (on iff BentoML has a tracing exporter), on, off
    keepalive_requests: int = 100  # several workers: close 1 keep-alive connection in N, more above a fair share (KeepAliveBudget; 0: never)
    timeout_s: int = 60  # request timeout -> 504
    split_sentences: bool = True  # each sentence of a text its own sequence, as trained (data.sentence_bounds); 0: whole text
    gc_threshold: int = 10000  # after start-up: freeze the heap, collect the young generation every N allocations (tune_gc; 0: Python's defaults)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_latency_ms", "max_items", "max_chars", "max_batch_tokens", "max_concurrency",
                     "timeout_s"):
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
        if self.tracing not in ("auto", "on", "off"):
            raise ConfigError(f"tracing: must be auto, on or off, got {self.tracing!r}")
        if self.aggregation and self.aggregation not in STRATEGIES:
            raise ConfigError(f"aggregation: must be one of {', '.join(STRATEGIES)}")

    def batch_cost(self) -> CallCost | None:
        """The cost model set for cutting a batch into ONNX Runtime calls (encoding.token_budget_batches),
        or None when both are auto: then Artifact.pipeline takes the device's own from the providers ORT
        gave (encoding.default_call_cost; on a GPU no cut below the token budget). A value set alone
        completes the CPU's model."""
        if self.call_cost < 0 and self.row_cost < 0:
            return None
        return CallCost(DEFAULT_CALL_COST.per_call if self.call_cost < 0 else self.call_cost,
                        DEFAULT_CALL_COST.per_row if self.row_cost < 0 else self.row_cost)

    def resolved_workers(self, gpu: bool) -> int:
        """On CPU one worker per core, each with one ORT thread: the HTTP/JSON side of every request then
        runs in parallel too (2 cores: 1.7x the throughput of one worker with 2 threads at 8 clients).
        Auto stops at AUTO_MAX_WORKERS: each worker holds its own model (about 215 MiB resident with the
        int8 CoNLL artifact). On a GPU the device is seldom the limit, the Python side of each request is:
        four workers share it (H200, 16 cores, fp16 CoNLL artifact: 1.8x the sentences/s of one worker at
        8 clients x 1 sentence, 2.0x at 32; more than four not measured), at most one per core."""
        if self.workers:
            return self.workers
        return max(1, min(AUTO_GPU_WORKERS if gpu else AUTO_MAX_WORKERS, os.cpu_count() or 1))

    def resolved_threads(self, workers: int) -> int:
        """ORT intra-op threads per worker (0 = ORT's default, one per core)."""
        if self.threads:
            return self.threads
        return 1 if workers > 1 else 0

    def tracing_enabled(self, exporter: str | None) -> bool:
        """Whether requests go through BentoML's OpenTelemetry middleware. Without an exporter its
        spans go nowhere, yet it cost 0.4-0.5 ms of CPU a request (measured with empty texts: 1.0 ->
        0.57 ms, 1,700 -> 2,900 requests/s on 2 cores), a fifth of a CoNLL sentence's whole cost.
        Off also drops the ``X-BentoML-Request-ID`` header, which is the span's id."""
        return self.tracing == "on" or (self.tracing == "auto" and exporter is not None)

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


def tune_gc(threshold: int) -> dict[str, Any]:
    """Tune Python's garbage collector for serving, once the model is loaded and warmed up.

    Everything alive after start-up (BentoML, pydantic's schemas, the tokenizer, the pipeline) lives
    as long as the worker, yet each full collection walks all of it again: about 50 ms a time, every
    3-5 s at 32 clients x 1 sentence, 1.7-3.2% of a worker's CPU in all (measured with gc.callbacks).
    ``gc.freeze()`` moves those objects out of the collector's sight, and a young-generation
    threshold of ``threshold`` allocations instead of 700 collects the short-lived request objects
    less often: under 0.1% of the CPU, no full collection seen (README, Serving). 0 leaves Python's
    defaults. Returns the collector's state, for /metadata.
    """
    if threshold:
        gc.collect()
        gc.freeze()
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
    return {"frozen_objects": gc.get_freeze_count(), "thresholds": list(gc.get_threshold())}


def inline_steps(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices of a batch's texts, sorted by length and cut into steps of at most ``budget``
    characters; a text longer than ``budget`` is a step of its own (the service runs it in a thread).

    Why: a batch runs on the worker's event loop, which then answers nothing else. Cutting it bounds
    how long the loop is held (~26 us a character with the int8 CoNLL model on this CPU: ~100 ms for
    4000) whatever the batch size; between steps the loop answers health checks and queues new
    requests. Sorted first, each step holds texts of similar length, as the pipeline would group them.
    """
    if budget < 1:
        raise ValueError("budget: must be >= 1")
    steps: list[list[int]] = []
    size = budget + 1  # the open step is full: the first text opens one
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if lengths[i] > budget or size + lengths[i] > budget:
            steps.append([i])
            size = lengths[i]
        else:
            steps[-1].append(i)
            size += lengths[i]
    return steps


class SharedLoad:
    """A load figure per worker of one ``bentoml serve`` (KeepAliveBudget: its connections), in a
    small file that every worker maps.

    Why: a worker alone cannot tell whether it holds more than its share. The file is named after
    the serve process (the workers' parent), one 8-byte slot per worker, each written only by its
    worker; files left by serves that are gone are removed when a worker opens its own.
    """

    PREFIX = "promptbert-load-"

    def __init__(self, path: Path, workers: int, index: int) -> None:
        if not 0 <= index < workers:
            raise ValueError(f"index: must be in [0, {workers}), got {index}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < workers * 8:
                os.ftruncate(fd, workers * 8)
            self._map = mmap.mmap(fd, workers * 8)
        finally:
            os.close(fd)
        self.slots = memoryview(self._map).cast("q")
        self.index = index
        self.path = path

    @classmethod
    def for_worker(cls, workers: int, index: int, folder: Path | None = None) -> SharedLoad:
        """The table of this worker's serve (its parent process), after clearing dead serves' tables."""
        folder = Path(folder or tempfile.gettempdir())
        for old in folder.glob(cls.PREFIX + "*"):
            try:
                os.kill(int(old.name[len(cls.PREFIX):]), 0)
            except (ValueError, PermissionError):
                continue  # not ours, or a live process of another user
            except ProcessLookupError:
                old.unlink(missing_ok=True)
        return cls(folder / f"{cls.PREFIX}{os.getppid()}", workers, index)

    def set(self, value: int) -> None:
        self.slots[self.index] = value

    def mean(self) -> float:
        return sum(self.slots) / len(self.slots)


class KeepAliveBudget:
    """ASGI middleware: now and then a response closes its keep-alive connection, so that the
    client reconnects and lands on whichever worker accepts first.

    Why: BentoML's workers share one listening socket, and the first worker to wake accepts
    every connection of a burst. With keep-alive clients that pins the load on one worker for
    as long as the connections live (measured: 8 clients on 2 workers, all requests on one
    worker in 4 of 5 runs, 224-240 instead of 356-419 sentences/s). The chance per response:
    - with the workers' loads shared (``load``, a SharedLoad of connections per worker; a
      connection counts from its second request on, while it sent one in the last ``window``
      seconds, so that one-request connections such as health probes do not count):
      max(1/N, excess/mine), excess being how many connections this worker holds above the
      mean over the workers, counted only from one whole connection up (below that, a
      connection on its way to another worker would be shed twice). At its share a worker
      closes one connection in N (nginx's ``keepalive_requests``, randomized so that clients do
      not reconnect in step); above it, it sheds its excess. Connections rather than requests
      in flight: those dip every time a worker answers a batch, and a dip on one worker read as
      an excess on the other (8 clients x 1 sentence: 2.6% -> 7% of requests reconnected);
    - without (no ``load``): in_flight/N, in_flight being the requests this worker holds when
      the request arrives. The crowded worker sheds in proportion to its crowd, but a balanced
      pair of crowded workers churns too (12% of requests reconnected at 32 clients).
    """

    def __init__(self, app: Any, every: int, seed: int | None = None, load: SharedLoad | None = None,
                 window: float = 2.0) -> None:
        self.app = app
        self.every = every
        self.rand = random.Random(seed)
        self.in_flight = 0
        self.load = load
        self.window = window
        self.seen: dict[Any, float] = {}  # kept-alive connection (client address) -> its last request
        self.once: dict[Any, float] = {}  # connections seen once: a health probe or a one-off caller
        self.pruned = time.monotonic()

    def _connections(self, client: Any) -> int:
        """Record a request from ``client``; the kept-alive connections this worker holds now."""
        now = time.monotonic()
        if client in self.seen or client in self.once:
            self.seen[client] = now
            self.once.pop(client, None)
        else:
            self.once[client] = now
        if now - self.pruned > self.window:
            self.seen = {c: t for c, t in self.seen.items() if now - t <= self.window}
            self.once = {c: t for c, t in self.once.items() if now - t <= self.window}
            self.pruned = now
        return len(self.seen)

    def _closes(self, client: Any) -> bool:
        r = self.rand.random()
        if self.load is None or client is None:
            return r * self.every < self.in_flight
        mine = self._connections(client)
        self.load.set(mine)
        excess = mine - self.load.mean()
        if r * self.every < 1 or (excess >= 1 and r * mine < excess):
            if self.seen.pop(client, None) is not None:  # it is going: no longer this worker's
                self.load.set(mine - 1)
            self.once.pop(client, None)
            return True
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.every <= 0:
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            if not self._closes(scope.get("client")):
                await self.app(scope, receive, send)
                return

            async def send_closing(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                await send(message)

            await self.app(scope, receive, send_closing)
        finally:
            self.in_flight -= 1
