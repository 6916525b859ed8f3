"""The main job: demo corpus -> fine-tuned model -> int8 artifact -> live service -> a sample answer.

    promptbert demo

Stages print one line each with their time; training and export show progress.
Ctrl-C stops the service cleanly. Heavy imports (torch) happen inside, so the
serving core stays torch-free.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from promptbert.errors import ArtifactError
from promptbert.launch import ROOT, ServedArtifact, http_status, post_json

SAMPLE = [
    "Angela Merkel met Emmanuel Macron in Paris before the European Union summit.",
    "Serena Williams won Wimbledon while fans in New York watched on the BBC.",
]


def run_demo(config_path: str | Path = ROOT / "configs" / "demo.yaml", overrides: dict[str, Any] | None = None,
             artifact_dir: str | Path = ROOT / "artifacts" / "demo", port: int = 3000, once: bool = False,
             say: Callable[[str], None] = print, export_overrides: dict[str, Any] | None = None,
             sample: list[str] | None = None) -> dict[str, Any]:
    """Run every stage; returns what a test needs (paths, answer). With ``once`` the service stops after the sample."""
    with _signals_interrupt():
        return _run(config_path, overrides, artifact_dir, port, once, say, export_overrides, sample or SAMPLE)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Ctrl-C and `kill` both stop cleanly, even where SIGINT starts out ignored (a background job)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _run(config_path: str | Path, overrides: dict[str, Any] | None, artifact_dir: str | Path, port: int, once: bool,
         say: Callable[[str], None], export_overrides: dict[str, Any] | None, sample: list[str]) -> dict[str, Any]:
    from promptbert import config as cfg
    from promptbert.launch import free_port

    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export
    from promptbert.training.config import TrainConfig
    from promptbert.training.train import train

    t_start = time.perf_counter()
    config = cfg.load(TrainConfig, config_path, overrides)
    say(f"[1/4] training {config.base_model} on {config.data_dir} (budget {config.time_budget_minutes or '-'} min) ...")
    t0 = time.perf_counter()
    manifest = train(config, str(config_path), force=True)
    f1 = manifest.metrics.get("test", manifest.metrics["dev"])["f1"]
    say(f"[1/4] trained: {manifest.training['steps']} steps, test F1 {f1:.4f}  ({time.perf_counter() - t0:.0f}s)")

    say("[2/4] exporting int8 ONNX with parity gates ...")
    t0 = time.perf_counter()
    econf = cfg.from_dict(ExportConfig, {"variants": ["fp32", "int8"], "allow_degraded": True, **(export_overrides or {})})
    art = export(config.output_dir, artifact_dir, econf, force=True, report=lambda s: say(f"      {s}"))
    gate = art.parity.get("int8_vs_fp32", {})
    flag = "" if gate.get("passed", True) else "  (int8 missed its gate: the service will pick fp32)"
    say(f"[2/4] artifact {artifact_dir}  ({time.perf_counter() - t0:.0f}s){flag}")

    if http_status(f"http://127.0.0.1:{port}/livez") is not None:
        port = free_port()
    say(f"[3/4] starting bentoml serve on port {port} ...")
    t0 = time.perf_counter()
    served = ServedArtifact(artifact_dir, port=port, log_path=Path(artifact_dir).parent / "demo-serve.log")
    url = served.start()
    try:
        say(f"[3/4] ready at {url}  ({time.perf_counter() - t0:.0f}s)")
        t0 = time.perf_counter()
        try:
            answer = post_json(f"{url}/tag", {"texts": sample})
        except OSError as exc:  # urllib's HTTPError and URLError, and timeouts, are OSErrors
            raise ArtifactError(f"the sample request to {url}/tag failed ({exc}); the service's log: "
                                f"{served.log_path}") from None
        say(f"[4/4] sample request ({(time.perf_counter() - t0) * 1000:.0f} ms):")
        for text, ents in zip(sample, answer):
            say(f"  {text}")
            for e in ents:
                say(f"    {e['entity_group']:<5} {e['score']:.3f}  {e['word']!r} [{e['start']}:{e['end']}]")
        body = json.dumps({"texts": ["Lionel Messi flew from Paris to Buenos Aires."]})
        say("try more:")
        say(f"  curl -s -X POST {url}/tag -H 'Content-Type: application/json' -d {shlex.quote(body)}")
        say(f"total {time.perf_counter() - t_start:.0f}s")
        if not once:
            say("serving until Ctrl-C ...")
            while served.proc is not None and served.proc.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        say("stopping ...")
    finally:
        served.stop()
    return {"model": config.output_dir, "artifact": str(artifact_dir), "answer": answer, "url": url,
            "manifest": manifest, "artifact_manifest": art}
