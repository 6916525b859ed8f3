"""The benchmark scripts run end to end on the tiny model and write what their tables print."""

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_infer_bench_table_and_json(tiny_model, tiny_artifact, tiny_corpus, tmp_path):
    out = tmp_path / "infer.json"
    r = run("bench/infer.py", "--model", str(tiny_model), "--artifact", str(tiny_artifact), "--data", str(tiny_corpus),
            "--split", "dev", "--batch", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    backends = {row["backend"] for row in data["results"]}
    assert backends == {"pytorch-full", "pytorch", "fp32", "optimized", "int8"}
    assert data["prompt_attention"] == "isolated" and data["sentences"] == 3
    f1 = {(row["backend"], row["regime"]): row["entity_f1"] for row in data["results"]}
    # The cached head changes the work, not the answers: full-window PyTorch, cached PyTorch and ONNX fp32 agree.
    assert f1[("pytorch-full", "b1")] == f1[("pytorch", "b1")] == f1[("fp32", "b1")] == f1[("pytorch", "b2-sorted")]
    assert "x full b1" in r.stdout and "int8" in r.stdout


def _bench_service():
    spec = importlib.util.spec_from_file_location("bench_service", ROOT / "bench" / "service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_steady_rate_counts_only_answers_between_warm_up_and_drain():
    steady_rate = _bench_service().steady_rate
    # 2 sentences a second while every client is busy; a slow warm-up answer and a drain tail around it.
    finished = [(0.5, 1), (1.0, 2), (2.0, 2), (3.0, 2), (4.0, 2), (9.0, 1)]
    assert steady_rate(finished, warm=1.0, drain=4.0) == pytest.approx(2.0)
    whole = sum(n for _, n in finished) / 9.0
    assert whole < 2.0  # what the whole run would have said
    assert steady_rate(finished, warm=4.0, drain=4.0) is None  # no window
    assert steady_rate(finished, warm=3.5, drain=4.0) is None  # one answer: too few to mean anything


def test_health_probe_counts_failed_probes():
    """A probe that gets no answer is counted as failed, not dropped (and not a crash of the bench)."""
    from promptbert.launch import free_port

    with _bench_service().HealthProbe(f"http://127.0.0.1:{free_port()}", every=0.01) as probe:
        pass
    summary = probe.summary()
    assert summary["livez_failures"] >= 1 and summary["livez_probes"] == 0 and math.isnan(summary["livez_p50_ms"])


def test_service_bench_table_and_json(tiny_artifact, tiny_corpus, tmp_path):
    out = tmp_path / "service.json"
    r = run("bench/service.py", "--artifact", str(tiny_artifact), "--data", str(tiny_corpus), "--split", "train",
            "--clients", "1,4", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [row["clients"] for row in data["service"]] == [1, 4]
    assert all(row["errors"] == 0 and row["sentences_per_s"] > 0 for row in data["service"])
    assert all(row["whole_run_sentences_per_s"] > 0 for row in data["service"])
    assert data["sentences"] == 8 and data["passes"] == 3 and "% of in-process best" in r.stdout
    # CPU times tick at 10 ms: a few tiny requests may read 0, so only their presence is checked.
    assert all(row["ratio_vs_same_in_flight"] > 0 and row["server_cpu_ms_per_sentence"] >= 0 for row in data["service"])
    # The model's share, from the service's /metrics and from the in-process runs alike: every
    # sentence of every pass ran (8 x 3 rows, one window each), in calls of at least one row.
    assert all(row["ort_calls"] >= 1 and row["model_ms_per_sentence"] > 0 and row["rows_per_ort_call"] >= 1
               and 0 <= row["padding_share"] < 1 and round(row["rows_per_ort_call"] * row["ort_calls"]) == 8 * 3
               for row in data["service"])
    assert all(row["in_process_same_in_flight_model_ms_per_sentence"] > 0 for row in data["service"])
    assert "ms a sentence in ORT calls" in r.stdout
    # /livez was probed during each run: at least one answer, none failed.
    assert all(row["livez_probes"] >= 1 and row["livez_failures"] == 0 and 0 < row["livez_p50_ms"] <= row["livez_max_ms"]
               for row in data["service"]) and "/livez p50/p99/max" in r.stdout


def test_service_bench_empty_texts_measure_the_server_alone(tiny_artifact, tiny_corpus, tmp_path):
    out = tmp_path / "empty.json"
    r = run("bench/service.py", "--artifact", str(tiny_artifact), "--data", str(tiny_corpus), "--split", "train",
            "--clients", "2", "--empty", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    (row,) = data["service"]
    assert data["empty_texts"] and data["in_process_best_per_s"] is None and row["ratio_vs_best"] is None
    assert row["errors"] == 0 and row["model_calls"] > 0 and row["server_cpu_ms_per_sentence"] >= 0
    assert "in-process" not in r.stdout
    assert row["ort_calls"] == 0 and row["model_ms_per_sentence"] is None  # empty texts never reach the model


def test_service_bench_ab_mode_interleaves_two_arms(tiny_artifact, tiny_corpus, tmp_path):
    """--b-checkout serves arm B from another checkout (its own promptbert, not this one's), --b-env
    sets its settings; the order flips every round so that drift falls on both arms alike."""
    other = tmp_path / "checkout"
    other.mkdir()
    shutil.copy(ROOT / "service.py", other / "service.py")
    shutil.copytree(ROOT / "promptbert", other / "promptbert", ignore=shutil.ignore_patterns("__pycache__"))
    serving = other / "promptbert" / "serving.py"
    code = serving.read_text()
    assert "gather_yields: int = 4" in code
    serving.write_text(code.replace("gather_yields: int = 4", "gather_yields: int = 7"))
    out = tmp_path / "ab.json"
    r = run("bench/service.py", "--artifact", str(tiny_artifact), "--data", str(tiny_corpus), "--split", "train",
            "--clients", "2", "--passes", "1", "--rounds", "2", "--b-checkout", str(other),
            "--b-env", "PROMPTBERT_INLINE_CHARS=1234", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["mode"] == "ab" and data["arms"]["B"]["checkout"] == str(other)
    assert [(run_["round"], run_["arm"]) for run_ in data["runs"]] == [(0, "A"), (0, "B"), (1, "B"), (1, "A")]
    limits = {run_["arm"]: (run_["served"]["limits"]["gather_yields"], run_["served"]["limits"]["inline_chars"])
              for run_ in data["runs"]}
    assert limits == {"A": (4, 4000), "B": (7, 1234)}
    assert all(run_["errors"] == 0 and run_["sentences_per_s"] > 0 for run_ in data["runs"])
    assert "| 2 x 1 |" in r.stdout and " → " in r.stdout and "in-process" not in r.stdout


def test_service_bench_rejects_bad_arguments():
    r = run("bench/service.py", "--artifact", "x", "--b-checkout", "/nonexistent")
    assert r.returncode == 2 and "--b-checkout" in r.stderr and "Traceback" not in r.stderr
    r = run("bench/service.py", "--artifact", "x", "--clients", "8,a")
    assert r.returncode == 2 and "comma-separated integers" in r.stderr and "Traceback" not in r.stderr


def test_out_of_domain_bench_maps_types_and_lowercases(tiny_artifact, tiny_corpus, tmp_path):
    out = tmp_path / "ood.json"
    r = run("bench/out_of_domain.py", "--model", f"tiny={tiny_artifact}", "--corpus", f"all={tiny_corpus}",
            "--corpus", f"per={tiny_corpus}:PER=PER", "--corpus", f"lower={tiny_corpus}:lower", "--variant", "fp32",
            "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())["results"]["tiny"]
    assert set(res["per"]) == {"f1", "PER"}  # only the mapped type is scored
    assert {"PER", "LOC"} <= set(res["all"]) and "tiny" in r.stdout


def test_ab_bench_interleaves_arms_and_adds_context(tiny_artifact, tiny_corpus, tmp_path):
    out = tmp_path / "ab.json"
    r = run("bench/ab.py", "--arm", f"a={tiny_artifact}", "--arm", f"ctx={tiny_artifact}:context=8", "--data",
            str(tiny_corpus), "--split", "test", "--rounds", "2", "--single", "2", "--variant", "fp32", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    arms = json.loads(out.read_text())["arms"]
    assert arms["a"]["context_tokens"] == 0 and arms["ctx"]["context_tokens"] == 8
    assert len(arms["a"]["bulk"]) == len(arms["ctx"]["single"]) == 2 and "| ctx | 8 |" in r.stdout


def test_prompts_bench_measures_lengths_and_mixed_prompts(tiny_types_artifact, tiny_corpus, tmp_path):
    out = tmp_path / "prompts.json"
    r = run("bench/prompts.py", "--artifact", str(tiny_types_artifact), "--data", str(tiny_corpus), "--split", "test",
            "--lengths", "20,40", "--rounds", "2", "--variant", "fp32", "--skip-service", "--out", str(out),
            "--beside", str(tiny_types_artifact))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())["in_process"]
    assert res["rows"]["40"]["tokens"] > res["rows"]["20"]["tokens"] and len(res["rows"]["20"]["rates"]) == 2
    # The beside export runs the same prompts, each against its own shortest.
    beside = res["rows"]["beside 40"]
    assert beside["tokens"] == res["rows"]["40"]["tokens"] and len(beside["rates"]) == 2
    assert res["rows"]["beside 20"]["vs_shortest"] == 1.0 and "beside, about 40 tokens" in r.stdout
    mixed = res["mixed"]
    assert mixed["graph_mixes"] and set(mixed["rates"]) == {"bulk", "calls of 8"}
    arms = {"1 prompt", "16 prompts, mixed", "16 prompts, one by one"}
    assert all(set(by_arm) == arms for by_arm in mixed["rates"].values())
    assert all(len(v) == 2 and min(v) > 0 for by_arm in mixed["rates"].values() for v in by_arm.values())
    assert "16 prompts, one by one" in r.stdout


def test_profile_ops_bench_times_operators_under_two_prompts(tiny_types_artifact, tiny_corpus, tmp_path):
    out = tmp_path / "ops.json"
    r = run("bench/profile_ops.py", "--artifact", str(tiny_types_artifact), "--data", str(tiny_corpus), "--split",
            "test", "--lengths", "20,40", "--variant", "fp32", "--limit", "20", "--rounds", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows["40"]["tokens"] > rows["20"]["tokens"]
    for row in rows.values():  # the attention products show up; kernels run inside the timed passes
        assert row["ops_ms"].get("MatMul", 0) > 0
        assert 0 < row["kernel_ms"] <= row["wall_ms"]
    assert "all kernels" in r.stdout and "difference" in r.stdout
    bad = run("bench/profile_ops.py", "--artifact", str(tmp_path / "missing"), "--data", str(tiny_corpus))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "artifact folder not found" in bad.stderr
