"""Export of the tiny model: variants, manifest, parity, quantized ops, predict offsets, token_type_ids."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from promptbert import constants as C
from promptbert.errors import ArtifactError
from promptbert.runtime import Artifact
from promptbert.tagger import Tagger

TEXTS = [
    "John Smith visited Paris.",
    "  Mary   Jones met the ACME Corp team in London !!  ",
    "Zürich, naïve café — and München (Bavaria)…",
    "\u200bWashington met German people\x00in Washington.",
    "",
    "   ",
]


def test_all_variants_and_complete_manifest(tiny_artifact, tiny_model):
    m = json.loads((tiny_artifact / C.MANIFEST).read_text())
    assert m["kind"] == C.ARTIFACT_KIND
    assert set(m["variants"]) == {"fp32", "optimized", "int8", "fp16"}
    for name, v in m["variants"].items():
        path = tiny_artifact / C.VARIANT_FILES[name]
        assert path.is_file() and v["bytes"] == path.stat().st_size and len(v["sha256"]) == 64 and v["passed"]
    for name in ("tokenizer.json", "tokenizer_config.json", C.LABELS, C.PROMPT_TEXT, C.PROMPT_SPEC, C.EXPORT_CONFIG, C.PARITY):
        assert (tiny_artifact / name).is_file(), name
    assert not (tiny_artifact / "_work").exists() and not (tiny_artifact / "model.safetensors").exists()
    src = json.loads((tiny_model / C.MANIFEST).read_text())
    assert m["prompt"]["fingerprint"] == src["prompt"]["fingerprint"] and m["opset"] == 18
    assert len(m["source_model"]["fingerprint"]) == 64
    assert m["variants"]["int8"]["quantization"]["is_static"] is False
    # The first rung (the fused graph, weight MatMuls only) passes on the tiny model: ORT fusions survive in int8,
    # except residual Add + LayerNorm, left unfused by default (ORT's CPU SkipLayerNormalization is the slower one).
    assert m["variants"]["int8"]["candidate"] == "fused-matmul-perchannel-fp32head"
    int8_ops = set(m["variants"]["int8"]["ops"])
    assert {"BiasGelu", "LayerNormalization", "MatMulInteger"} <= int8_ops and "SkipLayerNormalization" not in int8_ops
    assert m["variants"]["optimized"]["skip_layer_norm_fusion"] is False
    assert {"fp32", "int8"} <= set(m["metrics"]) and "dev_f1" in m["metrics"]["int8"]


def test_manifest_carries_dev_f1_as_served(tiny_artifact, tiny_corpus):
    """Each scored variant's dev F1 through the raw-text path, as `promptbert evaluate --as-text` gets it."""
    from promptbert.data import load_split
    from promptbert.training.evaluate import evaluate_as_text

    m = json.loads((tiny_artifact / C.MANIFEST).read_text())
    dev = load_split(tiny_corpus, "dev")
    for variant in ("fp32", "int8"):
        tagger = Tagger.from_pretrained(tiny_artifact, variant, "cpu")
        assert tagger.default_aggregation == m["best_aggregation"]
        expected = evaluate_as_text(tagger, dev)["micro avg"]["f1-score"]
        assert m["metrics"][variant]["dev_f1_as_text"] == pytest.approx(expected)
    assert m["text_path"] == {"word_splitter": C.WORD_SPLITTER, "dev_resplit": 1.0}


@pytest.mark.parametrize("fuse", [True, False])
def test_skip_layer_norm_fusion_follows_the_config(tiny_artifact, tmp_path, fuse):
    from promptbert.export.onnx_export import _optimize, count_ops

    ops = count_ops(_optimize(tiny_artifact, tmp_path, 2, skip_layer_norm=fuse))
    assert ("SkipLayerNormalization" in ops) is fuse and "BiasGelu" in ops
    # A GPU graph keeps the fusion whatever the CPU setting says.
    assert "SkipLayerNormalization" in count_ops(_optimize(tiny_artifact, tmp_path / "gpu", 1, fp16=True, skip_layer_norm=False))


def test_export_report_is_free_of_onnx_runtime_noise(tiny_artifact, tmp_path):
    """Without a GPU, building the fp16 graph printed ORT's red CUDA library-load error, and every
    quantization the quantizer's pre-processing advice: neither says anything about this export.
    A fresh process, since ORT may print the load error only once per process."""
    from promptbert.runtime import cuda_available

    if cuda_available():
        pytest.skip("a GPU is present: a CUDA load error there is real and stays visible")
    code = f"""
from pathlib import Path
from promptbert.export.config import ExportConfig
from promptbert.export.onnx_export import _optimize, quant_config, quantize_fused
art, out = Path({str(tiny_artifact)!r}), Path({str(tmp_path)!r})
_optimize(art, out / "gpu", 1, fp16=True)
fused = _optimize(art, out / "cpu", 2)
quantize_fused(fused, out / "q", quant_config(ExportConfig().quant_ladder[0], "avx512", fused))
print("done")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr[-2000:]
    assert "CUDA" not in run.stderr and "pre-processing" not in run.stderr, run.stderr[-2000:]
    assert (tmp_path / "gpu" / "model_optimized.onnx").is_file() and (tmp_path / "q" / "model_quantized.onnx").is_file()


def test_fp32_parity_within_tolerance(tiny_artifact):
    p = json.loads((tiny_artifact / C.PARITY).read_text())
    fp = p["fp32_vs_pytorch"]
    assert fp["passed"] and fp["max_abs_logit_diff"] <= 1e-3 and fp["tag_mismatches"] == 0 and fp["windows"] > 0
    assert p["int8_vs_fp32"]["f1_drop_points"] <= 0.3 and p["fp16_vs_fp32"]["word_tag_mismatches"] == 0


def test_int8_graph_contains_quantized_operators(tiny_artifact):
    from promptbert.export.onnx_export import count_ops

    ops = count_ops(tiny_artifact / C.VARIANT_FILES["int8"])
    assert ops.get("MatMulInteger", 0) + ops.get("DynamicQuantizeMatMul", 0) > 0
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops
    assert count_ops(tiny_artifact / "model.onnx").get("MatMulInteger", 0) == 0


def test_every_int8_rung_runs_on_an_isolated_graph(tiny_artifact, tmp_path):
    """The baked head keys/values stay fp32 on every rung: per-channel int8 of them makes ORT refuse the graph."""
    from promptbert.export.config import DEFAULT_LADDER, detect_isa
    from promptbert.export.onnx_export import _quantize, kept_fp32, quant_config, quantize_fused
    from promptbert.runtime import CPU, make_session, onnx_pipeline

    layers = json.loads((tiny_artifact / "config.json").read_text())["num_hidden_layers"]
    for graph in ("model.onnx", "model_optimized.onnx"):
        head_products = kept_fp32(tiny_artifact / graph, ())
        assert len(head_products) == 2 * layers, (graph, head_products)
    art = Artifact(tiny_artifact)
    words = [t.split() for t in TEXTS[:4]]
    want = [[t for t, _ in row] for row in art.pipeline("fp32", "cpu")[0].word_tags(words)]
    for i, cand in enumerate(DEFAULT_LADDER):
        source = tiny_artifact / ("model_optimized.onnx" if cand.graph == "fused" else "model.onnx")
        qconf = quant_config(cand, detect_isa(), source)
        path = (quantize_fused(source, tmp_path / str(i), qconf) if cand.graph == "fused"
                else _quantize(tiny_artifact, tmp_path / str(i), qconf))
        pipe = onnx_pipeline(make_session(path, [CPU]), art.encoder(), art.labels, art.prompt_attention)
        assert [len(r) for r in pipe.word_tags(words)] == [len(r) for r in want], cand.name


@pytest.mark.parametrize("variant", ["fp32", "optimized", "int8", "fp16"])
def test_predict_offsets_slice_the_original_text(tiny_artifact, variant):
    pipe, loaded = Artifact(tiny_artifact).pipeline(variant, "cpu")
    assert loaded.providers == ["CPUExecutionProvider"]
    for strategy in ("simple", "first", "average", "max"):
        results = pipe.entities(TEXTS, strategy)
        assert len(results) == len(TEXTS) and results[4] == [] and results[5] == []
        for text, ents in zip(TEXTS, results):
            for e in ents:
                assert set(e) == {"entity_group", "score", "word", "start", "end"}
                assert text[e["start"] : e["end"]] == e["word"] and e["word"].strip()
                assert 0.0 <= e["score"] <= 1.0 and isinstance(e["score"], float)
                assert e["entity_group"] in {"PER", "ORG", "LOC", "MISC"}


def test_token_type_ids_reach_the_joint_model(tiny_joint_artifact):
    """Feeding segment B as segment A must change the logits: token_type_ids are really passed."""
    art = Artifact(tiny_joint_artifact)
    assert art.prompt_attention == "joint" and json.loads((tiny_joint_artifact / C.MANIFEST).read_text())["exporter"] == "optimum main_export"
    enc = art.encoder()
    pipe, _ = art.pipeline("fp32", "cpu")
    from promptbert.encoding import batch_arrays

    batch = batch_arrays(enc.encode("john met mary in paris".split()), enc.pad_id)
    assert batch["token_type_ids"].max() == 1
    right = pipe.logits_fn(batch)
    wrong = pipe.logits_fn({**batch, "token_type_ids": np.zeros_like(batch["token_type_ids"])})
    assert np.abs(right - wrong).max() > 1e-4


def test_isolated_graph_runs_the_text_as_segment_b(tiny_artifact, tiny_model):
    """The prompt-isolated graph has the segment baked in: its logits are those of the full window with the
    text as segment B (and the head unable to see the text), not those with the text as segment A."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification

    from promptbert.encoding import batch_arrays
    from promptbert.training.cached import isolated_mask

    art = Artifact(tiny_artifact)
    assert art.prompt_attention == "isolated"
    enc = art.encoder()
    pipe, _ = art.pipeline("fp32", "cpu")
    windows = enc.encode("john met mary in paris".split())
    head = len(enc.head_ids)
    onnx_logits = pipe.logits_fn(batch_arrays(windows, enc.pad_id, skip=head))
    full = batch_arrays(windows, enc.pad_id)
    model = AutoModelForTokenClassification.from_pretrained(str(tiny_model)).eval()
    ids, types, mask = (torch.from_numpy(full[k]) for k in ("input_ids", "token_type_ids", "attention_mask"))
    assert art.config.encoding.casing  # the tiny tokenizer is uncased: casing auto is on
    shapes = load_file(str(tiny_model / C.CASING_WEIGHTS))["weight"][torch.from_numpy(full["word_shape"])]
    shapes[:, :head] = 0  # the head was encoded without word shapes
    with torch.inference_mode():
        embeds = model.bert.embeddings.word_embeddings(ids) + shapes
        as_b = model(inputs_embeds=embeds, token_type_ids=types, attention_mask=isolated_mask(types, mask, head)).logits.numpy()
        as_a = model(inputs_embeds=embeds, token_type_ids=torch.zeros_like(types),
                     attention_mask=isolated_mask(types, mask, head)).logits.numpy()
    assert types.max() == 1
    np.testing.assert_allclose(onnx_logits, as_b[:, head:], atol=1e-4)
    assert np.abs(onnx_logits - as_a[:, head:]).max() > 1e-3


def test_cli_predict_json_matches_library(tiny_artifact):
    r = subprocess.run([sys.executable, "-m", "promptbert.cli", "predict", str(tiny_artifact), *TEXTS[:3], "--json",
                        "--variant", "int8"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == Tagger.from_pretrained(tiny_artifact, "int8", "cpu").predict(TEXTS[:3])


def test_evaluate_artifact_uses_same_path(tiny_artifact, tiny_model, tiny_corpus):
    from promptbert.training.evaluate import evaluate_sentences
    from promptbert.data import load_split

    sents = load_split(tiny_corpus, "test")
    torch_tagger = Tagger.from_pretrained(tiny_model)
    assert torch_tagger.variant == "pytorch" and torch_tagger.config.kind == C.MODEL_FOLDER_KIND
    torch_rep = evaluate_sentences(torch_tagger, sents, "first")
    onnx_rep = evaluate_sentences(Tagger.from_pretrained(tiny_artifact, "fp32"), sents, "first")
    assert onnx_rep["micro avg"] == pytest.approx(torch_rep["micro avg"])


def cli(*args):
    return subprocess.run([sys.executable, "-m", "promptbert.cli", *args], capture_output=True, text=True, timeout=300)


def test_bad_inputs_one_line_exit_2(tiny_artifact, tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    (broken / "model_quantized.onnx").write_bytes(b"not an onnx file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"kind": "something-else"}')
    promptless = tmp_path / "promptless"
    shutil.copytree(tiny_artifact, promptless)
    (promptless / C.PROMPT_TEXT).unlink()
    cases = [
        (["export", str(tmp_path / "nope"), "--output", str(tmp_path / "o1")], "model folder not found"),
        (["export", str(tiny_artifact), "--output", str(tmp_path / "o2")], "not a model folder made by `promptbert train`"),
        (["export", str(tiny_model), "--output", str(tmp_path / "o3"), "--variants", "fp32,int4"], "variants: unknown 'int4'"),
        (["export", str(tiny_model), "--output", str(tiny_artifact)], "already exists"),
        (["predict", str(broken), "hi", "--variant", "int8"], "does not match the manifest's sha256"),
        (["predict", str(tiny_artifact), "hi", "--variant", "int3"], "variant: unknown 'int3'"),
        (["predict", str(other), "hi"], "not a promptbert artifact"),
        (["predict", str(promptless), "hi", "--variant", "fp32"], f"{C.PROMPT_TEXT}: not found"),
    ]
    for args, needle in cases:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr[-500:])
        assert needle in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr, (args, r.stderr[-500:])
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
    # A model folder predicts too, on PyTorch, through the same Tagger.
    r = cli("predict", str(tiny_model), "John Smith visited Paris .")
    assert r.returncode == 0 and r.stdout.startswith("# pytorch on torch:cpu"), r.stderr[-500:]


def test_export_warns_when_the_word_splitter_disagrees_with_the_data(tiny_model, tmp_path):
    """A corpus tokenised otherwise than the service's word splitter splits (here "Paris." as one word):
    the export says so and records the share of dev sentences that split back into their words."""
    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export

    from tests.conftest import write_conll

    data = tmp_path / "data"
    data.mkdir()
    write_conll(data / "dev.txt", [("John Smith visited Paris.", "B-PER I-PER O B-LOC"), ("Mary left London .", "B-PER O B-LOC O"),
                                   ("Acme Corp won.", "B-ORG I-ORG O")])
    lines: list[str] = []
    manifest = export(tiny_model, tmp_path / "art", ExportConfig(variants=("fp32",), data_dir=str(data)), report=lines.append)
    assert manifest.text_path["dev_resplit"] == pytest.approx(1 / 3)
    assert any(line.startswith("warning  the service's word splitter") and "33.3% of the dev sentences" in line for line in lines)


def test_model_folder_without_prompt_is_refused(tiny_model, tmp_path):
    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export

    copy = tmp_path / "noprompt"
    shutil.copytree(tiny_model, copy)
    (copy / C.PROMPT_TEXT).unlink()
    with pytest.raises(ArtifactError, match="missing prompt.txt"):
        export(copy, tmp_path / "out", ExportConfig(variants=("fp32",)))
    assert not (tmp_path / "out").exists()


def test_corrupt_onnx_is_a_clear_error(tiny_artifact, tmp_path):
    from promptbert.runtime import make_session

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ArtifactError, match="cannot load ONNX model"):
        make_session(bad, ["CPUExecutionProvider"])


def test_prompt_length_mismatch_is_refused(tiny_artifact, tmp_path):
    """An artifact whose prompt no longer encodes to the trained length is train/serve skew: refused."""
    copy = tmp_path / "skewed"
    shutil.copytree(tiny_artifact, copy)
    m = json.loads((copy / C.MANIFEST).read_text())
    m["prompt"]["tokens"] += 5
    (copy / C.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="train/serve skew"):
        Artifact(copy).pipeline("fp32", "cpu")


def test_fp16_candidate_keeps_blocked_nodes_in_fp32(tiny_artifact, tiny_model, tmp_path):
    import onnx

    from promptbert.export.onnx_export import _fp16_keep

    path = _fp16_keep(tiny_artifact / "model.onnx", tmp_path / "f16", ("classifier",), tiny_model / "config.json")
    inits = {i.name: i.data_type for i in onnx.load(str(path)).graph.initializer}
    head = [n for n in inits if "classifier" in n]
    assert head and all(inits[n] == onnx.TensorProto.FLOAT for n in head)
    assert any(t == onnx.TensorProto.FLOAT16 for n, t in inits.items() if n not in head)


def test_int8_gate_failure_and_allow_degraded(tiny_model, tmp_path):
    """No candidate can pass an impossible gate: the export fails, or ships int8 flagged and unused by 'auto'."""
    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export

    strict = ExportConfig(variants=("fp32", "int8"), max_int8_f1_drop=-1.0)
    with pytest.raises(ArtifactError, match="int8 gate failed"):
        export(tiny_model, tmp_path / "strict", strict)
    assert not (tmp_path / "strict").exists()
    m = export(tiny_model, tmp_path / "degraded", ExportConfig(variants=("fp32", "int8"), max_int8_f1_drop=-1.0,
                                                               allow_degraded=True))
    assert m.variants["int8"]["passed"] is False and not m.parity["int8_vs_fp32"]["passed"]
    assert len(m.parity["int8_vs_fp32"]["candidates"]) == len(ExportConfig().quant_ladder)
    assert Artifact(tmp_path / "degraded").choose("auto", "cpu")[0] == "fp32"


def test_device_choice_beside_a_gpu(tiny_artifact, monkeypatch):
    """Beside a GPU, auto serves fp16 on CUDA; int8 asked for by name stays on the CPU it was built for
    (dynamic int8 has no CUDA kernels), unless the CUDA provider is asked for by name too."""
    from promptbert import runtime

    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    art = Artifact(tiny_artifact)
    assert art.choose() == ("fp16", [runtime.CUDA, runtime.CPU])
    assert art.choose("int8") == ("int8", [runtime.CPU])
    assert art.choose("int8", "cuda") == ("int8", [runtime.CUDA, runtime.CPU])
    assert art.choose("fp32") == ("fp32", [runtime.CUDA, runtime.CPU])
    assert art.choose("auto", "cpu") == ("int8", [runtime.CPU])


def test_call_cost_follows_the_provider_ort_gave(tiny_artifact, monkeypatch):
    """A batch is cut into calls by the CPU's cost model on the CPU provider, and filled up to the token
    budget on CUDA (a GPU call costs the same whatever its size); a cost passed in wins."""
    from promptbert import runtime
    from promptbert.encoding import DEFAULT_CALL_COST, CallCost

    assert Artifact(tiny_artifact).pipeline("fp32", "cpu")[0].call_cost == DEFAULT_CALL_COST

    class AsIfCuda:  # a CPU session that says what a session on a GPU says
        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def get_providers(self):
            return [runtime.CUDA, runtime.CPU]

    real = runtime.make_session
    monkeypatch.setattr(runtime, "make_session", lambda path, providers, *a: AsIfCuda(real(path, [runtime.CPU], *a)))
    monkeypatch.setattr(runtime, "_preload_cuda", lambda: None)
    pipe, loaded = Artifact(tiny_artifact).pipeline("fp32", "cuda")
    assert loaded.providers[0] == runtime.CUDA and pipe.call_cost is None
    assert pipe.entities(TEXTS[:2]) == Artifact(tiny_artifact).pipeline("fp32", "cpu")[0].entities(TEXTS[:2])
    assert Artifact(tiny_artifact).pipeline("fp32", "cuda", call_cost=CallCost(3, 1))[0].call_cost == CallCost(3, 1)


def test_predict_and_evaluate_default_to_the_artifacts_best_aggregation(tiny_artifact, tiny_corpus, tmp_path, capsys):
    """The service answers with the aggregation that scored best on dev at export; `promptbert predict`
    and `evaluate` must default to it too, or they give another answer than the service's."""
    from promptbert.cli import main
    from promptbert.data import load_split
    from promptbert.training.evaluate import evaluate_sentences

    texts = ["Washington met McDonald in Zurich .", "Mary McDonald visited Washington and Zurich ."]
    tagger = Tagger.from_pretrained(tiny_artifact, "fp32", "cpu")
    by = {s: tagger.predict(texts, s) for s in ("first", "average", "max")}
    other = next(s for s in ("average", "max") if by[s] != by["first"])
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["best_aggregation"] = other
    (art / "manifest.json").write_text(json.dumps(manifest))

    assert main(["predict", str(art), *texts, "--json", "--variant", "fp32"]) == 0
    assert json.loads(capsys.readouterr().out) == by[other]
    out = tmp_path / "report.json"
    assert main(["evaluate", str(art), "--data", str(tiny_corpus), "--split", "test", "--variant", "fp32", "--output", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["aggregation"] == other and f"fp32 (CPUExecutionProvider), {other}]" in capsys.readouterr().out
    expected = evaluate_sentences(tagger, load_split(tiny_corpus, "test"), other)["micro avg"]
    assert written["report"]["micro avg"] == pytest.approx(expected)


def test_evaluate_as_text_maps_entities_back_onto_the_gold_words():
    """--as-text: entities found in the joined text land on the gold words they overlap (first B-, then
    I-; a word another entity took keeps it), and `resplit` counts sentences whose words come back."""
    from promptbert.data import Sentence
    from promptbert.training.evaluate import evaluate_as_text

    words = ("John", "Smith", "visited", "New", "York-based", "Acme")
    sents = [Sentence(words, ("B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-ORG")), Sentence(("x--y",), ("O",))]

    class Stub:
        def predict(self, texts, strategy):
            assert texts == ["John Smith visited New York-based Acme", "x--y"] and strategy == "first"
            ent = lambda group, a, b: {"entity_group": group, "start": a, "end": b}  # noqa: E731
            return [[ent("PER", 0, 10), ent("LOC", 19, 27), ent("MISC", 28, 33), ent("ORG", 34, 38)], []]

    rep = evaluate_as_text(Stub(), sents, "first")
    assert rep["micro avg"]["f1-score"] == 1.0 and rep["micro avg"]["support"] == 3
    assert rep["resplit"] == 0.5  # "x--y" splits into x, --, y


def test_evaluate_as_text_joins_a_documents_sentences():
    """documents: one text per -DOCSTART- document, its sentences one a line; paragraphs: run together.
    The tags come back to each sentence."""
    from promptbert.data import Sentence
    from promptbert.training.evaluate import evaluate_as_text

    sents = [Sentence(("Paris", "."), ("B-LOC", "O"), doc=1), Sentence(("John", "left"), ("B-PER", "O"), doc=1),
             Sentence(("Acme", "won"), ("B-ORG", "O"), doc=2)]
    seen = []

    class Stub:
        def predict(self, texts, strategy):
            seen.append(texts)
            at = {"Paris": "LOC", "John": "PER", "Acme": "ORG"}
            return [[{"entity_group": g, "start": t.index(w), "end": t.index(w) + len(w)} for w, g in at.items() if w in t]
                    for t in texts]

    for unit, texts in (("documents", ["Paris .\nJohn left", "Acme won"]), ("paragraphs", ["Paris . John left", "Acme won"]),
                        ("sentences", ["Paris .", "John left", "Acme won"])):
        rep = evaluate_as_text(Stub(), sents, unit=unit)
        assert seen[-1] == texts and rep["texts"] == len(texts) and rep["resplit"] == 1.0
        assert rep["micro avg"]["f1-score"] == 1.0 and rep["micro avg"]["support"] == 3


def test_cli_evaluate_as_text(tiny_artifact, tiny_corpus, tmp_path, capsys):
    from promptbert.cli import main
    from promptbert.data import load_split
    from promptbert.training.evaluate import evaluate_sentences

    out = tmp_path / "as_text.json"
    assert main(["evaluate", str(tiny_artifact), "--data", str(tiny_corpus), "--variant", "fp32", "--as-text", "--output", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["as_text"] == "sentences" and written["report"]["resplit"] == 1.0
    assert "of the 2 texts split back into their gold words" in capsys.readouterr().out
    tagger = Tagger.from_pretrained(tiny_artifact, "fp32", "cpu")  # the tiny test split resplits exactly: same scores
    gold = evaluate_sentences(tagger, load_split(tiny_corpus, "test"), written["aggregation"])
    assert written["report"]["micro avg"] == pytest.approx(gold["micro avg"])


def test_cli_predict_texts_after_the_options(tiny_artifact, capsys):
    """`promptbert predict ART --variant fp32 "text"` tags the text (argparse alone calls texts after the options unrecognized)."""
    from promptbert.cli import main

    texts = ["John Smith visited Paris .", "Mary met the Acme Corp team ."]
    assert main(["predict", str(tiny_artifact), texts[0], "--variant", "fp32", "--json", texts[1]]) == 0
    assert json.loads(capsys.readouterr().out) == Tagger.from_pretrained(tiny_artifact, "fp32", "cpu").predict(texts)
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tiny_artifact), "--variant", "fp32", "hi", "--bogus"])
    assert exc.value.code == 2 and "unrecognized arguments: hi --bogus" in capsys.readouterr().err


def test_cli_predict_whole_text(tiny_artifact, capsys):
    """predict splits a text into sentences as the service does; --whole-text runs it as one sequence."""
    from promptbert.cli import main

    text = "John Smith visited Paris . Mary Jones met the Acme Corp team in London ."
    answers = {}
    for flag in ([], ["--whole-text"]):
        assert main(["predict", str(tiny_artifact), text, "--json", "--variant", "fp32", *flag]) == 0
        answers[bool(flag)] = json.loads(capsys.readouterr().out)
    for whole in (False, True):
        pipe, _ = Artifact(tiny_artifact).pipeline("fp32", "cpu", split_sentences=not whole)
        assert answers[whole] == pipe.entities([text])
    assert answers[False] != answers[True]


def test_evaluate_output_paths(tiny_artifact, tiny_corpus, tmp_path):
    """--output creates the folders it names; a path that cannot be written is one line and exit code 2."""
    out = tmp_path / "reports" / "test.json"
    r = cli("evaluate", str(tiny_artifact), "--data", str(tiny_corpus), "--variant", "fp32", "--output", str(out))
    assert r.returncode == 0 and "micro avg" in json.loads(out.read_text())["report"], r.stderr[-500:]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = cli("evaluate", str(tiny_artifact), "--data", str(tiny_corpus), "--variant", "fp32",
            "--output", str(blocker / "test.json"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(blocker) in lines[-1], r.stderr[-500:]
