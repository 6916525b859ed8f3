"""Start and stop a real ``bentoml serve`` of service.py on loopback (tests, demo, load tests)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from .errors import PromptBertError

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def post_json(url: str, body: object, timeout: float = 60.0) -> object:
    """POST a JSON body, return the decoded JSON answer (HTTP errors raise urllib's HTTPError)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


class ServedArtifact:
    """``with ServedArtifact(artifact) as url:`` -- a live service until the block ends.

    ``root``: the checkout whose service.py is served (default: this one); another one (a git
    worktree of an older commit) lets a benchmark compare two versions of the service side by side.
    ``bento``: serve a built bento from the store by its tag instead (``artifact`` None: the copy it carries).
    """

    def __init__(self, artifact: str | Path | None, port: int | None = None, env: dict[str, str] | None = None,
                 ready_timeout: float = 180.0, log_path: str | Path | None = None, root: str | Path | None = None,
                 bento: str | None = None, wait_all_workers: bool = True) -> None:
        self.artifact = Path(artifact).resolve() if artifact is not None else None
        self.root = Path(root).resolve() if root else ROOT
        self.bento = bento
        self.wait_all_workers = wait_all_workers
        self.port = port or free_port()
        self.env = env or {}
        self.ready_timeout = ready_timeout
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        if not self.bento and not (self.root / "service.py").is_file():
            raise PromptBertError(f"{self.root}: no service.py here; serving from promptbert's own commands needs a "
                                  f"checkout (pip install -e .), or pass the checkout as root")
        env = {k: v for k, v in os.environ.items() if k != "PROMPTBERT_ARTIFACT"}
        if self.artifact is not None:
            env["PROMPTBERT_ARTIFACT"] = str(self.artifact)
        env.update({"BENTOML_DO_NOT_TRACK": "true", **self.env})  # an env's PROMPTBERT_ARTIFACT wins (A/B of two artifacts)
        where = [self.bento] if self.bento else ["service:PromptBertNER", "--working-dir", str(self.root)]
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", *where, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PromptBertError(f"bentoml serve exited with code {self.proc.returncode} before it was ready"
                                      + (f" (log: {self.log_path})" if self.log_path else ""))
            if http_status(f"{self.url}/readyz") == 200 and (not self.wait_all_workers or self._all_workers_ready()):
                return self.url
            time.sleep(0.5)
        self.stop()
        raise PromptBertError(f"bentoml serve was not ready after {self.ready_timeout:.0f}s")

    def _all_workers_ready(self) -> bool:
        """/readyz answers from the first ready worker; the others may still be loading. A service that
        counts its ready workers (``promptbert_workers_ready``) is waited for until all are; one that
        does not (an older checkout) is taken as ready."""
        try:
            ready = metric_sums(self.url).get("promptbert_workers_ready")
            if ready is None:
                return True
            workers = post_json(f"{self.url}/metadata", {}, timeout=10)["workers"]  # type: ignore[index]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return ready >= workers

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGINT)  # bentoml shuts its workers down on SIGINT
            self.proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def metric_sums(url: str, timeout: float = 10.0) -> dict[str, float]:
    """Every sample of the service's /metrics, summed over its label sets (BentoML aggregates its
    workers; summing the labels too gives the serve's totals): the difference between two readings
    is what happened in between."""
    import re

    with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    sums: dict[str, float] = {}
    for name, value in re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? ([0-9.eE+-]+|NaN|[+-]Inf)$", text, re.M):
        sums[name] = sums.get(name, 0.0) + float(value)
    return sums


def serving_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """What the service did between two ``metric_sums`` readings: BentoML's batches (requests merged
    per batch) and, from promptbert's own counters, ONNX Runtime calls, the seconds they took, rows per
    call and the share of padding (None where a service predates the counters or ran no model)."""
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    batches = d.get("bentoml_service_adaptive_batch_size_count", 0.0)
    ort = d.get("promptbert_model_call_seconds_count", 0.0)
    padded = d.get("promptbert_model_padded_tokens_total", 0.0)
    return {"model_calls": batches,
            "mean_batch_requests": d.get("bentoml_service_adaptive_batch_size_sum", 0.0) / batches if batches else 0.0,
            "ort_calls": ort,
            "model_seconds": d.get("promptbert_model_call_seconds_sum", 0.0) if ort else None,
            "rows_per_ort_call": d.get("promptbert_model_rows_total", 0.0) / ort if ort else None,
            "padding_share": 1 - d.get("promptbert_model_tokens_total", 0.0) / padded if padded else None}
