"""Short loopback smoke run of the Locust runner against the tiny artifact: reports, and exit codes that follow the gates."""

import json

import pytest

from pathlib import Path

from promptbert.loadtests.run import Thresholds, load_profile, main, verdict
from promptbert.errors import ConfigError


def test_profiles_load_and_reject_typos(tmp_path):
    shipped = Path(__file__).resolve().parents[1] / "loadtests" / "thresholds.yaml"
    assert load_profile(shipped, "cpu-smoke").p95_ms > 0 and load_profile(shipped, "cpu").p50_ms > 0
    bad = tmp_path / "t.yaml"
    bad.write_text("x:\n  p50_ms: 1\n  p95_ms: 2\n  p99_ms: 3\n  p99.9_ms: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="p99.9_ms: unknown key"):
        load_profile(bad, "x")
    with pytest.raises(ConfigError, match="no profile 'nope'"):
        load_profile(bad, "nope")


def test_verdict_names_each_missed_threshold():
    stats = {"p50_ms": 10, "p95_ms": 500, "p99_ms": 900, "failure_ratio": 0.02, "shed_ratio": 0.0, "rps": 3}
    missed = verdict(stats, Thresholds(p50_ms=20, p95_ms=100, p99_ms=1000, max_failure_ratio=0.01, min_rps=5))
    assert [m.split()[0] for m in missed] == ["p95_ms", "failure_ratio", "rps"]


@pytest.mark.slow
def test_smoke_run_writes_reports_and_gates(tiny_artifact, tmp_path):
    from promptbert.launch import ServedArtifact

    impossible = tmp_path / "impossible.yaml"
    impossible.write_text("strict:\n  p50_ms: 0.001\n  p95_ms: 0.001\n  p99_ms: 0.001\n", encoding="utf-8")
    with ServedArtifact(tiny_artifact) as url:
        ok = main(["--host", url, "--profile", "cpu-smoke", "--users", "4", "--spawn-rate", "4", "--duration", "6s",
                   "--out", str(tmp_path / "ok")])
        strict = main(["--host", url, "--profile", "strict", "--thresholds", str(impossible), "--users", "2",
                       "--spawn-rate", "2", "--duration", "3s", "--out", str(tmp_path / "strict")])
    assert ok == 0
    for name in ("report.html", "locust_stats.csv", "locust_failures.csv", "summary.json"):
        assert (tmp_path / "ok" / name).is_file(), name
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failure_ratio"] == 0 and summary["missed"] == []
    # From the service's /metrics: its batches and, from promptbert's counters, the model's calls.
    assert summary["model_calls"] > 0 and summary["requests_per_model_call"] >= 1
    assert summary["ort_calls"] > 0 and summary["rows_per_ort_call"] >= 1 and summary["model_ms_per_request"] > 0
    assert strict == 1
    missed = json.loads((tmp_path / "strict" / "summary.json").read_text())["missed"]
    assert any(m.startswith("p50_ms") for m in missed)


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["--profile", "cpu"]) == 2
    assert "exactly one of --host" in capsys.readouterr().err
    assert main(["--host", "http://127.0.0.1:9", "--profile", "nope"]) == 2


def test_serve_env_without_equals_exits_2(tmp_path, capsys):
    """A malformed --serve-env is refused before a service starts."""
    assert main(["--artifact", str(tmp_path), "--profile", "cpu-smoke", "--serve-env", "PROMPTBERT_WORKERS",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--serve-env: expected KEY=VALUE, got 'PROMPTBERT_WORKERS'" in capsys.readouterr().err
