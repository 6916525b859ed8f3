"""`bentoml build` of the tiny artifact in a scratch context: the generated Dockerfile and requirements, and the
built bento served from the store with the build context gone (it must serve the copy it carries)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bentoml_build_and_dockerfile(tiny_artifact, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(ROOT / "bentofile.yaml", ctx)
    shutil.copy(ROOT / "service.py", ctx)
    shutil.copytree(ROOT / "promptbert", ctx / "promptbert", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(tiny_artifact, ctx / "artifacts" / "serve")
    home = tmp_path / "bentoml_home"
    env = {k: v for k, v in os.environ.items() if k != "PROMPTBERT_ARTIFACT"}
    env.update({"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"})
    r = subprocess.run([sys.executable, "-m", "bentoml", "build", str(ctx)], capture_output=True, text=True, env=env,
                       timeout=300, cwd=ctx)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (bento,) = [p for p in (home / "bentos" / "promptbert").iterdir() if p.is_dir()]
    src = bento / "src"
    assert (src / "service.py").is_file() and (src / "promptbert" / "runtime.py").is_file()
    shipped = {p.name for p in (src / "artifacts" / "serve").iterdir()}
    assert {"manifest.json", "model_quantized.onnx", "model.onnx", "tokenizer.json", "prompt.txt", "labels.json"} <= shipped
    reqs = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime-gpu[cuda,cudnn]==1.31.1" in reqs and "nvidia-cublas==" in reqs and "bentoml==1.4.40" in reqs
    assert "torch" not in reqs and "transformers" not in reqs  # serving carries no training stack
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "python:3.11" in dockerfile or "3.11" in dockerfile
    assert "NVIDIA_VISIBLE_DEVICES" in dockerfile
    assert "PROMPTBERT_ARTIFACT" not in dockerfile  # the service finds the bento's own copy beside service.py
    assert "nvidia/cuda" not in dockerfile  # CUDA comes as pip wheels matching onnxruntime-gpu's CUDA 13 build

    # Served from the store as BentoML's docs test a bento, the build context moved away: the bento's copy answers.
    from promptbert.launch import ServedArtifact, post_json

    tag = f"promptbert:{bento.name}"
    shutil.rmtree(ctx)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with ServedArtifact(None, root=elsewhere, bento=tag, env={"BENTOML_HOME": str(home), "PROMPTBERT_WORKERS": "1"}) as url:
        meta = post_json(f"{url}/metadata", {})
        assert meta["artifact"] == str(src / "artifacts" / "serve")
        (ents,) = post_json(f"{url}/tag", {"texts": ["John Smith visited Paris ."]})
        assert all(e["word"] == "John Smith visited Paris ."[e["start"]:e["end"]] for e in ents)
