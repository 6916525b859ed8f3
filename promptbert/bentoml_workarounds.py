"""Workarounds around BentoML 1.4's serving path, in one place, each with the measurement that keeps it.

BentoML gives no hook for these, so each works around a behaviour of its server from the outside,
through public interfaces only (ASGI middleware, the event loop, ``logging`` filters):

- ``run_in_steps``: a batch runs on the worker's event loop in steps, and the loop turns a few times
  after each (``gather_yields``) so that requests which arrived during the model call reach BentoML's
  batch queue before its dispatcher takes the queue for the next call.
- ``KeepAliveBudget`` (with ``SharedLoad``): BentoML's workers share one listening socket and the first
  to wake accepts a whole burst of connections; with keep-alive clients the load stays pinned on one
  worker. Now and then a response closes its connection, so that the client reconnects elsewhere.
- ``ClientErrorLog``: BentoML logs every 4xx, and every client that hung up, as an ERROR with a
  traceback; this filter turns those into one line, so that an operator can tell a client's mistake
  from a server fault (a 5xx keeps its traceback).

docs/serving.md, "Adjustments around BentoML", gives the A/B measurements of each.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# The logger BentoML's HTTP server reports request exceptions on (``log_exception``).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
# One line per client error, whoever answers it: method, path, status, reason.
CLIENT_ERROR_LINE = "%s %s %d: %s"


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


async def run_in_steps(fn: Callable[[list[str]], list[T]], texts: Sequence[str], inline_chars: int,
                       gather_yields: int) -> list[T]:
    """``fn`` over ``texts``, on the event loop in steps of at most ``inline_chars`` characters (sorted
    by length), the loop turning ``gather_yields`` times after each; a text longer than ``inline_chars``
    runs in a thread, and ``inline_chars`` 0 sends the whole batch to one.

    On the loop rather than in a thread: the hand-off costs more CPU than it saves on 2 cores. In steps,
    so that the loop is never held long: between steps it answers /livez, /readyz and /metrics. The turns
    matter for batching: while a step ran the loop could not read the requests that arrived, and
    BentoML's dispatcher takes its queue the moment this batch is answered; a request needs three turns
    to get from its socket to that queue (read, ASGI task, BentoML's timeout task), so without them the
    next call would hold only stragglers.
    """
    if not inline_chars:
        return await asyncio.to_thread(fn, list(texts))
    answers: list[Any] = [None] * len(texts)
    for step in inline_steps([len(t) for t in texts], inline_chars):
        part = [texts[i] for i in step]
        if len(part[0]) > inline_chars:
            out = await asyncio.to_thread(fn, part)
        else:
            out = fn(part)
            for _ in range(gather_yields):
                await asyncio.sleep(0)
        for i, answer in zip(step, out):
            answers[i] = answer
    return answers


class ClientErrorLog(logging.Filter):
    """Rewrites BentoML's request-exception records: a client's mistake (4xx) becomes one WARNING line
    ``POST /tag 400: <reason>`` and a client that hung up one INFO line, both without a traceback.
    Anything else (a 5xx, a bug) passes untouched, traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        status, reason = client_error(exc)
        if status is None:
            return True
        path, method = (record.args + ("", ""))[:2] if isinstance(record.args, tuple) else ("", "")
        if status == 499:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "%s %s: the client disconnected before its request was read", (method, path)
        else:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = CLIENT_ERROR_LINE, (method, path, status, reason)
        record.exc_info, record.exc_text = None, None
        return True

    @classmethod
    def install(cls) -> None:
        """Once per process: on BentoML's request logger (its records only, through ``logging``)."""
        logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


def client_error(exc: BaseException) -> tuple[int | None, str]:
    """(status, one-line reason) when ``exc`` is a client's fault: pydantic's validation errors (400),
    BentoML's own 4xx errors, a client gone (499, nginx's code); (None, "") otherwise."""
    from pydantic import ValidationError
    from starlette.requests import ClientDisconnect

    if isinstance(exc, ClientDisconnect):
        return 499, "client disconnected"
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or exc.title}: {e.get('msg', '')}" for e in errors[:3]]
        return 400, f"{exc.error_count()} validation error(s) for {exc.title}; {'; '.join(parts)}"
    code = getattr(getattr(exc, "error_code", None), "value", None)
    if isinstance(code, int) and 400 <= code < 500:
        return code, " ".join(str(exc).split())[:300]
    return None, ""


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


def with_keepalive_budget(every: int, workers: int, worker_index: int | None) -> Callable[[T], T]:
    """A class decorator over ``@bentoml.service``: adds KeepAliveBudget to the service when it runs
    several workers (one worker has nothing to balance), with this worker's slot in the serve's
    SharedLoad table (none in the serve process itself or in ``to_asgi()`` callers)."""

    def add(service: T) -> T:
        if every and workers > 1:
            service.add_asgi_middleware(KeepAliveBudget, every=every, load=_shared_load(workers, worker_index))  # type: ignore[attr-defined]
        return service

    return add


def _shared_load(workers: int, worker_index: int | None) -> SharedLoad | None:
    if not worker_index or worker_index > workers:
        return None
    try:
        return SharedLoad.for_worker(workers, worker_index - 1)
    except OSError as exc:
        logging.getLogger("promptbert").warning(
            "promptbert: workers do not share keep-alive counts (%s); each sheds in_flight/N", exc)
        return None
