"""Inference benchmark: PyTorch fp32 vs ONNX fp32 / optimized / int8 on the same sentences, in one process.

    python bench/infer.py --model runs/conll2003 --artifact artifacts/conll2003 \
        --data path/to/conll2003 --split test --out bench/results/infer.json

Without --data it uses the project's demo corpus. Three batch regimes per backend:
b1 (one sentence per call), b32 in input order (pads to the longest of each
batch), and b32 sorted by token count (little padding). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert.data import load_split  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402
from promptbert.pipeline import TaggingPipeline  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_regime(pipe: TaggingPipeline, sentences: list, batch: int, sort: bool) -> dict:
    from seqeval.metrics import f1_score

    if sort:  # by model tokens (what padding wastes), not by words
        tokens = [sum(len(w.input_ids) for w in pipe.encoder.encode(list(s.words))) for s in sentences]
        order = sorted(range(len(sentences)), key=lambda i: tokens[i])
    else:
        order = list(range(len(sentences)))
    pipe.sort_by_length = False  # the regime decides the batches, not the pipeline
    pipe.max_batch_items = batch
    preds: list = [None] * len(sentences)
    lat = []
    pipe.word_tags([sentences[order[0]].words])  # warm-up
    t_all = time.perf_counter()
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        t0 = time.perf_counter()
        tags = pipe.word_tags([sentences[j].words for j in idx])
        lat.append(time.perf_counter() - t0)
        for j, row in zip(idx, tags):
            preds[j] = [t for t, _ in row]
    total = time.perf_counter() - t_all
    words = sum(len(s.words) for s in sentences)
    f1 = f1_score([list(s.tags) for s in sentences], preds)
    return {"sentences_per_s": len(sentences) / total, "words_per_s": words / total,
            "p50_ms": float(np.percentile(lat, 50) * 1000), "p95_ms": float(np.percentile(lat, 95) * 1000),
            "seconds": total, "entity_f1": float(f1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder (promptbert train)")
    p.add_argument("--artifact", required=True, help="artifact folder (promptbert export)")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data" / "demo"))
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0, help="first N sentences only")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--backends", default="pytorch-full,pytorch,fp32,optimized,int8",
                   help="pytorch-full: the HF model on whole windows (prompt recomputed per window); pytorch: the "
                        "model as promptbert runs it (prompt head cached for isolated models); ONNX variants")
    p.add_argument("--threads", type=int, default=0, help="threads for torch and ORT (0: library default)")
    p.add_argument("--out", default="bench/results/infer.json")
    a = p.parse_args()

    import torch

    from promptbert.runtime import Artifact
    from promptbert.training.cached import PromptCachedTagger, full_window_logits_fn
    from promptbert.training.evaluate import load_model_folder, torch_pipeline

    if a.threads:
        torch.set_num_threads(a.threads)
    sentences = load_split(a.data, a.split, a.limit or None)
    art = Artifact(a.artifact)
    results = []
    regimes = [("b1", 1, False), (f"b{a.batch}", a.batch, False), (f"b{a.batch}-sorted", a.batch, True)]
    for backend in a.backends.split(","):
        if backend == "pytorch":
            model, encoder, labels, _ = load_model_folder(a.model)
            pipe = torch_pipeline(model, encoder, labels)
        elif backend == "pytorch-full":
            model, encoder, labels, _ = load_model_folder(a.model)
            if isinstance(model, PromptCachedTagger):
                pipe = TaggingPipeline(encoder, labels, full_window_logits_fn(model))
            else:
                pipe = torch_pipeline(model, encoder, labels)
        else:
            pipe, _ = art.pipeline(backend, "cpu", a.threads or None)
        for name, batch, sort in regimes:
            r = run_regime(pipe, sentences, batch, sort)
            r.update({"backend": backend, "regime": name})
            results.append(r)
            print(f"{backend:<13}{name:<12}{r['sentences_per_s']:9.1f} sent/s {r['words_per_s']:9.0f} words/s "
                  f"p50 {r['p50_ms']:8.1f} ms  p95 {r['p95_ms']:8.1f} ms  F1 {r['entity_f1']:.4f}", flush=True)
        del pipe

    def base(backend: str) -> tuple[float, float]:
        rows = [r for r in results if r["backend"] == backend]
        if not rows:
            return float("nan"), float("nan")
        return next(r for r in rows if r["regime"] == "b1")["sentences_per_s"], max(r["sentences_per_s"] for r in rows)

    full_b1, full_best = base("pytorch-full")
    pt_b1, pt_best = base("pytorch")
    print()
    header = (f"{'backend':<13}{'regime':<12}{'sent/s':>9}{'words/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'F1':>8}"
              f"{'x full b1':>10}{'x full best':>12}{'x pt b1':>9}{'x pt best':>10}")
    print(header)
    print("-" * len(header))
    for r in results:
        v = r["sentences_per_s"]
        r["speedup"] = {"vs_pytorch_full_b1": v / full_b1, "vs_pytorch_full_best": v / full_best,
                        "vs_pytorch_b1": v / pt_b1, "vs_pytorch_best": v / pt_best}
        x = r["speedup"]
        print(f"{r['backend']:<13}{r['regime']:<12}{v:9.1f}{r['words_per_s']:9.0f}{r['p50_ms']:9.1f}"
              f"{r['p95_ms']:9.1f}{r['entity_f1']:8.4f}{x['vs_pytorch_full_b1']:10.2f}{x['vs_pytorch_full_best']:12.2f}"
              f"{x['vs_pytorch_b1']:9.2f}{x['vs_pytorch_best']:10.2f}")
    out = {
        "date": now(), "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(), "model": a.model, "artifact": a.artifact, "data": a.data, "split": a.split,
        "sentences": len(sentences), "words": sum(len(s.words) for s in sentences),
        "prompt_tokens": art.config.prompt.tokens,
        "prompt_attention": art.prompt_attention, "threads": a.threads or "default", "results": results,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, out)
    print(f"\nwritten: {a.out}")


if __name__ == "__main__":
    main()
