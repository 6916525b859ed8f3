"""Run the Locust load test headless and gate it on thresholds.yaml.

    python -m promptbert.loadtests.run --host http://127.0.0.1:3000 --profile cpu --users 8 --spawn-rate 4 --duration 60s
    python -m promptbert.loadtests.run --artifact artifacts/conll2003 --profile cpu --users 8 --duration 60s   # starts the service

Writes Locust's CSV and HTML reports and summary.json to --out, prints a table, and
exits 1 naming each missed threshold (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptbert import config as cfg
from promptbert.errors import ConfigError, PromptBertError
from promptbert.launch import ServedArtifact, metric_sums, post_json, serving_stats
from promptbert.manifest import write_json

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Thresholds:
    """One profile of thresholds.yaml."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_failure_ratio: float = 0.0
    max_shed_ratio: float = 0.0
    min_rps: float = 0.0


def load_profile(path: str | Path, name: str) -> Thresholds:
    data = cfg.read_yaml(path)
    if not isinstance(data, dict) or name not in data:
        raise ConfigError(f"{path}: no profile {name!r} (have: {', '.join(data or {})})")
    try:
        return cfg.from_dict(Thresholds, data[name], name)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_stats(prefix: Path) -> dict[str, Any]:
    """Aggregated and per-endpoint rows of Locust's *_stats.csv, plus shed vs real failures."""
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv", encoding="utf-8")))
    agg = next(r for r in rows if r["Name"] == "Aggregated")
    shed = failures = 0
    fpath = Path(f"{prefix}_failures.csv")
    if fpath.is_file():
        for r in csv.DictReader(open(fpath, encoding="utf-8")):
            n = int(r["Occurrences"])
            if r["Error"].startswith("shed load") or "shed load" in r["Error"]:
                shed += n
            else:
                failures += n
    total = int(agg["Request Count"])

    def num(r: dict[str, str], k: str) -> float:
        v = r.get(k, "")
        return float(v) if v not in ("", "N/A") else 0.0

    return {
        "requests": total, "rps": num(agg, "Requests/s"), "p50_ms": num(agg, "50%"), "p95_ms": num(agg, "95%"),
        "p99_ms": num(agg, "99%"), "failure_ratio": failures / total if total else 1.0,
        "shed_ratio": shed / total if total else 0.0,
        "endpoints": {r["Name"]: {"requests": int(r["Request Count"]), "p50_ms": num(r, "50%"), "p95_ms": num(r, "95%"),
                                  "p99_ms": num(r, "99%"), "rps": num(r, "Requests/s")} for r in rows if r["Name"] != "Aggregated"},
    }


def verdict(stats: dict[str, Any], t: Thresholds) -> list[str]:
    missed = []
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        if stats[key] > getattr(t, key):
            missed.append(f"{key} {stats[key]:.0f} > {getattr(t, key):.0f}")
    if stats["failure_ratio"] > t.max_failure_ratio:
        missed.append(f"failure_ratio {stats['failure_ratio']:.4f} > {t.max_failure_ratio}")
    if stats["shed_ratio"] > t.max_shed_ratio:
        missed.append(f"shed_ratio {stats['shed_ratio']:.4f} > {t.max_shed_ratio}")
    if stats["rps"] < t.min_rps:
        missed.append(f"rps {stats['rps']:.1f} < {t.min_rps}")
    return missed


def run_locust(host: str, out: Path, users: int, spawn_rate: float, duration: str, corpus: str | None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PROMPTBERT_LOADTEST_COUNTS": str(out / "texts.json")}
    if corpus:
        env["PROMPTBERT_LOADTEST_CORPUS"] = corpus
    cmd = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
           "--host", host, "-u", str(users), "-r", str(spawn_rate), "-t", duration, "--csv", str(out / "locust"),
           "--html", str(out / "report.html"), "--only-summary", "--stop-timeout", "10", "--loglevel", "WARNING"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    (out / "locust.log").write_text(r.stdout + r.stderr, encoding="utf-8")
    if not Path(f"{out / 'locust'}_stats.csv").is_file():
        raise PromptBertError(f"locust wrote no report (exit {r.returncode}); see {out / 'locust.log'}")
    stats = read_stats(out / "locust")
    stats["wall_s"] = time.perf_counter() - t0
    texts = json.loads((out / "texts.json").read_text()) if (out / "texts.json").is_file() else {"texts": 0}
    secs = _duration_s(duration)
    stats["texts_per_s"] = texts["texts"] / secs if secs else 0.0
    return stats


def _duration_s(d: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    total, num = 0.0, ""
    for ch in d:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in units and num:
            total += float(num) * units[ch]
            num = ""
        else:
            raise ConfigError(f"--duration: cannot read {d!r} (e.g. 60s, 2m, 1m30s)")
    return total + (float(num) if num else 0.0)


def service_metrics(host: str) -> dict[str, float]:
    """The service's /metrics so far, summed over every worker and label set ({} without /metrics: not fatal)."""
    try:
        return metric_sums(host)
    except Exception:  # an older service, or no /metrics
        return {}


def batch_sizes(host: str) -> dict[str, int]:
    """Adaptive batch sizes seen by the worker that answers /metadata (one worker's sample when there are several)."""
    try:
        return post_json(f"{host}/metadata", {}, timeout=10)["batch_sizes_seen"]
    except Exception:  # an older service without /metadata: not fatal
        return {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m promptbert.loadtests.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", help="URL of a running service")
    p.add_argument("--artifact", help="start `bentoml serve` on this artifact for the run, stop it afterwards")
    p.add_argument("--profile", default="cpu", help="profile in thresholds.yaml")
    p.add_argument("--thresholds", default=str(HERE / "thresholds.yaml"))
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--spawn-rate", type=float, default=8)
    p.add_argument("--duration", default="60s")
    p.add_argument("--corpus", help="texts (one per line) or a CoNLL file; default: demo texts")
    p.add_argument("--out", default="loadtests/results/latest")
    p.add_argument("--serve-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for the started service, e.g. PROMPTBERT_MAX_BATCH_SIZE=1")
    a = p.parse_args(argv)
    try:
        if bool(a.host) == bool(a.artifact):
            raise ConfigError("give exactly one of --host URL or --artifact DIR")
        thresholds = load_profile(a.thresholds, a.profile)
        _duration_s(a.duration)
        out = Path(a.out)
        served = None
        host = a.host
        if a.artifact:
            env = dict(cfg.split_assignment(kv, "--serve-env") for kv in a.serve_env)
            out.mkdir(parents=True, exist_ok=True)
            # The service's own log beside the reports: a setting it refuses is explained there.
            served = ServedArtifact(a.artifact, env=env, log_path=out / "serve.log")
            host = served.start()
        try:
            before = service_metrics(host)
            stats = run_locust(host, out, a.users, a.spawn_rate, a.duration, a.corpus)
            stats.update(serving_stats(before, service_metrics(host)))
            stats["requests_per_model_call"] = stats.pop("mean_batch_requests")
            stats["model_ms_per_request"] = (1000 * stats["model_seconds"] / stats["requests"]
                                             if stats["model_seconds"] is not None and stats["requests"] else None)
            stats["batch_sizes_seen"] = batch_sizes(host)
        finally:
            if served:
                served.stop()
    except PromptBertError as exc:
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return 2
    missed = verdict(stats, thresholds)
    stats.update({"profile": a.profile, "thresholds": cfg.to_dict(thresholds), "users": a.users, "duration": a.duration,
                  "host": host, "artifact": a.artifact, "serve_env": a.serve_env, "missed": missed})
    write_json(out / "summary.json", stats)
    print(f"{'endpoint':<24}{'requests':>9}{'rps':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, e in stats["endpoints"].items():
        print(f"{name:<24}{e['requests']:>9}{e['rps']:>8.1f}{e['p50_ms']:>9.0f}{e['p95_ms']:>9.0f}{e['p99_ms']:>9.0f}")
    print(f"{'all':<24}{stats['requests']:>9}{stats['rps']:>8.1f}{stats['p50_ms']:>9.0f}{stats['p95_ms']:>9.0f}{stats['p99_ms']:>9.0f}")
    print(f"texts/s {stats['texts_per_s']:.1f}  failure ratio {stats['failure_ratio']:.4f}  shed ratio {stats['shed_ratio']:.4f}"
          f"  requests per model call {stats['requests_per_model_call']:.1f} ({stats['model_calls']:.0f} calls)")
    if stats["ort_calls"]:
        print(f"ONNX Runtime: {stats['model_ms_per_request']:.2f} ms a request in its calls, {stats['rows_per_ort_call']:.1f} rows"
              f" per call ({stats['ort_calls']:.0f} calls), {100 * stats['padding_share']:.0f}% padding")
    print(f"reports: {out}/report.html, {out}/locust_stats.csv, {out}/summary.json")
    if missed:
        print(f"FAIL [{a.profile}]: " + "; ".join(missed))
        return 1
    print(f"PASS [{a.profile}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
