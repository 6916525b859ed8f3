"""Which dynamic-int8 configuration keeps NER accuracy? Dev F1 and speed of several, vs fp32.

    python bench/quant_configs.py --artifact artifacts/conll2003 --data path/to/conll2003 \
        --out bench/results/quant_configs.json

Quantizes the artifact's raw fp32 export (model.onnx) with Optimum's ORTQuantizer under each
configuration (and, when the artifact has one, its ORT-optimized graph with the export's first rung),
then scores each on the full dev split with the same pipeline as the export gate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert.data import load_split  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--speed-sentences", type=int, default=1000)
    p.add_argument("--out", default="bench/results/quant_configs.json")
    a = p.parse_args()

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from seqeval.metrics import f1_score

    from promptbert.export.config import detect_isa
    from promptbert.export.onnx_export import count_ops, kept_fp32, quantize_fused
    from promptbert.runtime import CPU, Artifact, make_session, onnx_pipeline

    art = Artifact(a.artifact)
    enc = art.encoder()
    dev = load_split(a.data, "dev")
    speed = load_split(a.data, "test", a.speed_sentences)
    isa = detect_isa()
    make = getattr(AutoQuantizationConfig, isa)
    raw = Path(a.artifact) / "model.onnx"
    head = kept_fp32(raw, ("classifier",))
    keep = kept_fp32(raw, ())  # only what int8 cannot hold: an isolated graph's baked head keys and values
    configs = {
        "naive (defaults, per-tensor)": make(is_static=False, per_channel=False, nodes_to_exclude=keep),
        "MatMul only, per-tensor": make(is_static=False, per_channel=False, operators_to_quantize=["MatMul"],
                                        nodes_to_exclude=keep),
        "MatMul only, per-channel": make(is_static=False, per_channel=True, operators_to_quantize=["MatMul"],
                                         nodes_to_exclude=keep),
        "MatMul per-channel, fp32 head": make(is_static=False, per_channel=True, operators_to_quantize=["MatMul"], nodes_to_exclude=head),
    }

    def score(path: Path) -> tuple[float, float]:
        pipe = onnx_pipeline(make_session(path, [CPU]), enc, art.labels, art.prompt_attention, max_batch_items=32)
        pred = [[t for t, _ in row] for row in pipe.word_tags([s.words for s in dev])]
        f1 = f1_score([list(s.tags) for s in dev], pred)
        pipe.word_tags([speed[0].words])
        t0 = time.perf_counter()
        pipe.word_tags([s.words for s in speed])
        return float(f1), len(speed) / (time.perf_counter() - t0)

    rows = []
    f1_fp32, sps_fp32 = score(raw)
    rows.append({"config": "fp32 (reference)", "dev_f1": f1_fp32, "drop_points": 0.0, "sentences_per_s": sps_fp32})
    print(f"{'fp32 (reference)':<34} dev F1 {f1_fp32:.4f}               {sps_fp32:7.1f} sent/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, qc) in enumerate(configs.items()):
            out = Path(tmp) / str(i)
            ORTQuantizer.from_pretrained(raw.parent, file_name="model.onnx").quantize(qc, out)
            q = out / "model_quantized.onnx"
            f1, sps = score(q)
            ops = count_ops(q)
            rows.append({"config": name, "dev_f1": f1, "drop_points": (f1_fp32 - f1) * 100, "sentences_per_s": sps,
                         "operators": qc.operators_to_quantize, "per_channel": qc.per_channel,
                         "excluded_nodes": len(qc.nodes_to_exclude), "quantized_ops": {k: v for k, v in ops.items() if "Integer" in k or "Quant" in k}})
            print(f"{name:<34} dev F1 {f1:.4f} (drop {(f1_fp32 - f1) * 100:+.2f})  {sps:7.1f} sent/s", flush=True)
        # The export's first rung: the ORT-optimized (fused) graph, weight MatMuls per-channel, fp32 head.
        name = "fused graph, MatMul per-channel, fp32 head"
        opt = Path(a.artifact) / "model_optimized.onnx"
        if opt.is_file():
            qc = make(is_static=False, per_channel=True, operators_to_quantize=["MatMul"],
                      nodes_to_exclude=kept_fp32(opt, ("classifier",)))
            q = quantize_fused(opt, Path(tmp) / "fused", qc)
            f1, sps = score(q)
            ops = count_ops(q)
            rows.append({"config": name, "dev_f1": f1, "drop_points": (f1_fp32 - f1) * 100, "sentences_per_s": sps,
                         "graph": "fused", "quantized_ops": {k: v for k, v in ops.items() if "Integer" in k or "Quant" in k}})
            print(f"{name:<34} dev F1 {f1:.4f} (drop {(f1_fp32 - f1) * 100:+.2f})  {sps:7.1f} sent/s", flush=True)
    write_json(a.out, {"date": now(), "versions": versions(), "isa": isa, "artifact": a.artifact, "dev_sentences": len(dev),
                       "speed_sentences": len(speed), "rows": rows})
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
