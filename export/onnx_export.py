"""Model folder -> self-contained ONNX artifact, through Optimum, guarded by parity gates.

    promptbert export runs/conll2003 --output artifacts/conll2003

Variants: fp32 (the reference, always written), optimized (ORT fusions), int8
(dynamic quantization of the optimized graph, else of the raw export) and fp16
(for the CUDA provider). Every variant is checked against PyTorch / fp32 before
the artifact folder appears.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptbert import config as cfg
from promptbert import constants as C
from promptbert import data as D
from promptbert.encoding import PromptEncoder, batch_arrays
from promptbert.errors import ArtifactError
from promptbert.labels import LabelMap
from promptbert.manifest import ArtifactConfig, ModelManifest, atomic_dir, folder_fingerprint, folder_hashes, now, versions, write_json
from promptbert.prompt import fingerprint
from promptbert.runtime import CPU, cuda_available, make_session, onnx_pipeline, ort_prompted
from promptbert.tagger import Tagger

from .config import ExportConfig, QuantCandidate, detect_isa

# Below this share of dev sentences split back into their words by the service's word splitter, the
# export warns: raw text would reach the model as other words than it was trained on (CoNLL: 99.3%).
RESPLIT_WARNING = 0.95

Report = Callable[[str], None]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SHIPPED_FROM_MODEL = (*TOKENIZER_FILES, "config.json", C.LABELS, C.PROMPT_TEXT, C.PROMPT_SPEC)


def _quiet(_: str) -> None:
    pass


def _onnx_export(model_dir: Path, out: Path, opset: int) -> Path:
    from optimum.exporters.onnx import main_export

    main_export(str(model_dir), out, task="token-classification", opset=opset, do_validation=False, device="cpu",
                library_name="transformers")
    path = out / "model.onnx"
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: ONNX export produced no model.onnx")
    return path


def _sample_shapes() -> Any:
    """A word-shape input to trace with, as wide as the exporters' sample text ids."""
    import torch

    return torch.tensor([[8, 1, 2, 0], [9, 0, 0, 0]], dtype=torch.long)


def _onnx_export_isolated(tagger: Any, model_dir: Path, out: Path, opset: int) -> Path:
    """The prompt-isolated graph: text ids + mask -> logits, the head's keys/values baked in as constants.

    Optimum's exporter knows the stock BertForTokenClassification signature only, so
    this graph goes through torch.onnx (TorchScript exporter) directly; Optimum's
    optimizer and quantizer then treat it like any BERT export (config.json beside it).
    """
    import warnings

    import torch

    from promptbert.training.cached import BakedPromptTagger

    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    baked = BakedPromptTagger(tagger)
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0]], dtype=torch.long)
    mask = (torch.arange(4) < torch.tensor([[4], [2]])).long()
    args, names = (ids, mask), ["input_ids", "attention_mask"]
    if tagger.word_shapes is not None:
        args, names = (ids, mask, _sample_shapes()), [*names, "word_shape"]
    axes = {0: "batch_size", 1: "sequence_length"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(baked, args, str(path), input_names=names,
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={name: axes for name in (*names, "logits")})
    tagger.eval()  # the exporter restores the wrapper's previous mode: make sure no dropout is left on
    shutil.copyfile(model_dir / "config.json", out / "config.json")
    return path


def _onnx_export_types(ctx: Context, out: Path) -> Path:
    """The two graphs of a types model: the prompt encoder (``prompt_encoder.onnx``: head ids + type mask ->
    keys, values, type keys, type bias) and the tagger (``model.onnx``: text ids + mask + that encoding ->
    logits for O and B-/I- of each type, under one encoding or one per row). Traced with the default prompt;
    every length, the number of types and of encodings are dynamic axes."""
    import warnings

    import torch
    from torch import nn

    from promptbert.runtime import PROMPT_ENCODER_INPUTS, PROMPT_ENCODING, TYPES_INPUTS
    class PromptGraph(nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, prompt_ids: Any, type_mask: Any) -> Any:
            return self.m.encode_prompt(prompt_ids, type_mask)

    class TagGraph(nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, keys: Any, values: Any, type_keys: Any, type_bias: Any,
                    prompt_mask: Any, word_shape: Any = None) -> Any:
            return self.m.tag(input_ids, attention_mask, keys, values, type_keys, type_bias, word_shape, prompt_mask)

    model, opset = ctx.model, ctx.config.opset
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    prompt = ctx.prompts[0]
    head = torch.tensor([prompt.head_ids])
    mask = torch.from_numpy(prompt.type_mask)
    with torch.no_grad():
        enc = model.encode_prompt(head, mask)
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0]], dtype=torch.long)
    att = (torch.arange(4) < torch.tensor([[4], [2]])).long()
    kv_axes = {2: "prompt_length"}
    # The tagger takes an encoding per row (rows: 1, or one per text when a batch mixes prompts), traced
    # with two rows, the second a shorter prompt padded to the first's length.
    keys, values, type_keys, type_bias = (torch.stack([x, x]) for x in enc)
    prompt_mask = torch.ones(2, keys.shape[3], dtype=torch.long)
    prompt_mask[1, -1] = 0
    inputs, args = list(TYPES_INPUTS), (ids, att, keys, values, type_keys, type_bias, prompt_mask)
    row_kv_axes = {0: "prompt_rows", 3: "prompt_length"}
    if model.word_shapes is not None:
        inputs, args = [*inputs, "word_shape"], (*args, _sample_shapes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(PromptGraph(model), (head, mask), str(out / C.PROMPT_ENCODER),
                          input_names=list(PROMPT_ENCODER_INPUTS), output_names=list(PROMPT_ENCODING),
                          opset_version=opset, dynamo=False,
                          dynamic_axes={"prompt_ids": {1: "prompt_length"}, "type_mask": {0: "types", 1: "prompt_length"},
                                        "keys": kv_axes, "values": kv_axes, "type_keys": {0: "labels"},
                                        "type_bias": {0: "labels"}})
        torch.onnx.export(TagGraph(model), args, str(out / "model.onnx"), input_names=inputs,
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "attention_mask": {0: "batch_size", 1: "sequence_length"},
                                        "word_shape": {0: "batch_size", 1: "sequence_length"},
                                        "keys": row_kv_axes, "values": row_kv_axes,
                                        "type_keys": {0: "prompt_rows", 1: "labels"},
                                        "type_bias": {0: "prompt_rows", 1: "labels"},
                                        "prompt_mask": {0: "prompt_rows", 1: "prompt_length"},
                                        "logits": {0: "batch_size", 1: "sequence_length", 2: "classes"}})
    model.eval()
    shutil.copyfile(ctx.model_dir / "config.json", out / "config.json")
    return out / "model.onnx"


@contextlib.contextmanager
def _gpu_target_without_gpu() -> Iterator[None]:
    """Optimizing for the GPU, ONNX Runtime opens a session on the CUDA provider. With no GPU it
    prints a red library-load error and falls back to the CPU, which writes the same graph (the fp16
    file is byte-identical either way). Silenced only where ``cuda_available()`` says there is no GPU:
    where there is one, the error is real. ORT has no getter, so its default level (2) is restored."""
    import onnxruntime as ort

    if cuda_available():
        yield
        return
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)


@contextlib.contextmanager
def _no_preprocessing_hint() -> Iterator[None]:
    """ORT's quantizer advises its pre-processing (shape inference + its own optimizations) on the root
    logger at every call; the export quantizes graphs that are ORT-optimized on purpose (or the raw
    export, deliberately), so the advice is noise in the export's report."""
    def hint(record: logging.LogRecord) -> bool:  # a callable is a filter (logging, Python 3.2+)
        return not record.getMessage().startswith("Please consider to run pre-processing before quantization")

    logging.getLogger().addFilter(hint)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(hint)


def _optimize(onnx_dir: Path, out: Path, level: int, fp16: bool = False, skip_layer_norm: bool = True) -> Path:
    """Optimum's ORT optimizer; ``skip_layer_norm=False`` leaves residual Add + LayerNorm unfused (see ExportConfig)."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    optimizer = ORTOptimizer.from_pretrained(onnx_dir, file_names=["model.onnx"])
    unfused = not (skip_layer_norm or fp16)
    conf = OptimizationConfig(optimization_level=level, optimize_for_gpu=fp16, fp16=fp16,
                              disable_skip_layer_norm_fusion=unfused, disable_bias_skip_layer_norm_fusion=unfused)
    with _gpu_target_without_gpu() if fp16 else contextlib.nullcontext():
        optimizer.optimize(conf, out)
    return out / "model_optimized.onnx"


def _fp16_keep(raw: Path, out: Path, keep: tuple[str, ...], config_json: Path) -> Path:
    """fp16 with some nodes kept in fp32: ONNX Runtime's transformer optimizer (what Optimum wraps) with a node block list."""
    from onnxruntime.transformers.optimizer import optimize_model

    hf = json.loads(config_json.read_text(encoding="utf-8"))
    with _gpu_target_without_gpu():
        model = optimize_model(str(raw), "bert", hf["num_attention_heads"], hf["hidden_size"], opt_level=1, use_gpu=True)
    block = [n.name for n in model.model.graph.node if any(k in n.name for k in keep)]
    model.convert_float_to_float16(keep_io_types=True, node_block_list=block)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model_fp16.onnx"
    model.save_model_to_file(str(path))
    return path


def quant_config(candidate: QuantCandidate, isa: str, graph: Path) -> Any:
    """Optimum's AutoQuantizationConfig for this CPU, restricted to the candidate's operators and nodes."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    exclude = kept_fp32(graph, candidate.exclude)
    make = getattr(AutoQuantizationConfig, "avx512" if isa == "avx512" else isa)
    return make(is_static=False, per_channel=candidate.per_channel, operators_to_quantize=list(candidate.operators),
                nodes_to_exclude=exclude)


def _quantize(onnx_dir: Path, out: Path, qconfig: Any) -> Path:
    from optimum.onnxruntime import ORTQuantizer

    with _no_preprocessing_hint():
        ORTQuantizer.from_pretrained(onnx_dir, file_name="model.onnx").quantize(qconfig, out)
    return out / "model_quantized.onnx"


def quantize_fused(fused: Path, out: Path, qconfig: Any, products: bool = False) -> Path:
    """Dynamic int8 of an ORT-optimized graph, with the settings of Optimum's config.

    ORTQuantizer fails on fused graphs in this version (onnx shape inference cannot type
    the outputs of com.microsoft ops: "Unable to find data type for weight_name"); ORT's
    own quantize_dynamic takes ``DefaultTensorType`` for exactly that case. ``products``: the MatMuls of
    two activations too (quantize_dynamic leaves them fp32 by default).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    path = out / "model_quantized.onnx"
    ops = [getattr(o, "value", o) for o in qconfig.operators_to_quantize]
    with _no_preprocessing_hint():
        quantize_dynamic(str(fused), str(path), per_channel=qconfig.per_channel, reduce_range=qconfig.reduce_range,
                         weight_type=QuantType.QInt8 if qconfig.weights_dtype == QuantType.QInt8 else QuantType.QUInt8,
                         op_types_to_quantize=ops, nodes_to_exclude=list(qconfig.nodes_to_exclude),
                         extra_options={"WeightSymmetric": qconfig.weights_symmetric,
                                        "ActivationSymmetric": qconfig.activations_symmetric,
                                        "DefaultTensorType": onnx.TensorProto.FLOAT,
                                        "MatMulConstBOnly": not products})
    from optimum.onnxruntime.configuration import ORTConfig

    ORTConfig(quantization=qconfig).save_pretrained(out)  # the same ort_config.json ORTQuantizer writes
    return path


def kept_fp32(path: Path, substrings: tuple[str, ...]) -> list[str]:
    """Nodes the quantizer must leave in fp32: names containing one of ``substrings``, and every MatMul
    with a constant operand that is not a 2-D weight (an isolated graph's baked head keys and values:
    per-channel weight quantization mangles them, and ORT then refuses the int8 graph at run time)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    rank = {t.name: len(t.dims) for t in graph.initializer}
    rank.update({n.output[0]: len(a.t.dims) for n in graph.node if n.op_type == "Constant"
                 for a in n.attribute if a.name == "value"})
    return [n.name for n in graph.node
            if any(s in n.name for s in substrings)
            or (n.op_type == "MatMul" and any(rank.get(i, 2) != 2 for i in n.input))]


def count_ops(path: Path) -> dict[str, int]:
    """Operator histogram of a graph (to show what really got quantized)."""
    import onnx

    hist: dict[str, int] = {}
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    return dict(sorted(hist.items()))


def _f1(tagger: Tagger, sentences: list[D.Sentence]) -> float:
    from seqeval.metrics import f1_score

    return float(f1_score([list(s.tags) for s in sentences], _tags(tagger, sentences)))


def _logits(fn: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(fn(batch), dtype=np.float32)


def _tags(tagger: Tagger, sentences: list[D.Sentence]) -> list[list[str]]:
    return [[t for t, _ in row] for row in tagger.word_tags([s.words for s in sentences], "first")]


@dataclass(frozen=True)
class Context:
    """What every stage of one export reads: the model folder loaded, the dev/test sentences, the settings."""

    model_dir: Path
    model: Any  # the PyTorch tagger
    encoder: PromptEncoder
    labels: LabelMap
    source: ModelManifest
    config: ExportConfig
    work: Path
    sample: list[D.Sentence]  # parity checks
    gate: list[D.Sentence]  # the int8 F1 gate and the scores
    test: list[D.Sentence]
    isa: str
    # types models: the prompts the parity gates run (the default first, then another), and the PyTorch
    # backend's two calls; empty for fixed-head models
    prompts: tuple[Any, ...] = ()

    @property
    def attention(self) -> str:
        return self.source.encoding.prompt_attention

    @property
    def head(self) -> str:
        return self.source.encoding.head

    def torch_fns(self) -> list[Any]:
        """PyTorch logits functions to gate against: one per prompt of ``prompts`` (one for a fixed head)."""
        from promptbert.training.evaluate import torch_logits_fn

        if self.head != "types":
            return [torch_logits_fn(self.model)]
        from promptbert.training.typed import torch_backend

        encode, tag = torch_backend(self.model)
        fns = []
        for p in self.prompts:
            enc = encode(np.asarray([p.head_ids], dtype=np.int64), p.type_mask)
            fns.append(lambda batch, enc=enc: tag(batch, enc))
        return fns

    def onnx_fns(self, tagger: Tagger) -> list[Any]:
        """The same logits functions over an ONNX tagger."""
        if self.head != "types":
            return [tagger.pipeline.logits_fn]
        return [tagger.under(p).pipeline.logits_fn for p in self.prompts]

    @property
    def skip(self) -> int:
        return len(self.encoder.head_ids) if self.attention == "isolated" else 0

    def tagger(self, path: Path, variant: str) -> Tagger:
        """An ONNX Runtime tagger over one graph file, fed as the artifact will be."""
        session = make_session(path, [CPU], self.config.threads or None)
        if self.head == "types":
            prompt_session = make_session(self.work / "onnx" / C.PROMPT_ENCODER, [CPU], self.config.threads or None)
            from promptbert.typed import PromptLimits

            prompted = ort_prompted(session, prompt_session, self.encoder, self.prompts[0].spec,
                                    PromptLimits.of(self.source.encoding))
            return Tagger.prompted_by(prompted, variant=variant, providers=[CPU], path=path)
        return Tagger(onnx_pipeline(session, self.encoder, self.labels, self.attention), variant=variant,
                      providers=[CPU], path=path)


@dataclass(frozen=True)
class VariantReport:
    """One variant built and gated: its manifest entry, its parity record, its scores (None: not scored)."""

    name: str
    file: Path
    info: dict[str, Any]
    parity_key: str
    parity: dict[str, Any]
    metrics: dict[str, float] | None = None


@dataclass(frozen=True)
class Fp32Report:
    """The reference graph: its parity with PyTorch, its scores and the word aggregation that scored best."""

    variant: VariantReport
    tagger: Tagger
    sample_tags: list[list[str]]
    by_strategy: dict[str, float]
    best_aggregation: str
    text_path: dict[str, Any]


def export_fp32(ctx: Context, report: Report) -> Path:
    """The raw ONNX graph: Optimum's exporter for a joint model, torch.onnx for an isolated one."""
    t0 = time.perf_counter()
    if ctx.head == "types":
        raw = _onnx_export_types(ctx, ctx.work / "onnx")
    elif ctx.attention == "isolated":
        raw = _onnx_export_isolated(ctx.model, ctx.model_dir, ctx.work / "onnx", ctx.config.opset)
    else:
        raw = _onnx_export(ctx.model_dir, ctx.work / "onnx", ctx.config.opset)
    report(f"export   fp32 ONNX (opset {ctx.config.opset}, prompt attention {ctx.attention})  {time.perf_counter() - t0:6.1f}s")
    return raw


def gate_fp32(ctx: Context, path: Path, report: Report) -> Fp32Report:
    """fp32 ONNX against PyTorch on the same windows (logits within atol, equal tags), then dev scores:
    F1 per aggregation, as served (raw text), on test."""
    from promptbert.training.evaluate import evaluate_as_text

    t0 = time.perf_counter()
    config = ctx.config
    windows = [w for s in ctx.sample for w in ctx.encoder.encode(list(s.words))]
    fp32 = ctx.tagger(path, "fp32")
    max_diff, tag_mismatch = 0.0, 0
    for torch_fn, onnx_fn in zip(ctx.torch_fns(), ctx.onnx_fns(fp32)):  # a types model: under each gate prompt
        for i in range(0, len(windows), 32):
            batch = batch_arrays(windows[i : i + 32], ctx.encoder.pad_id, ctx.skip)
            a, b = _logits(torch_fn, batch), _logits(onnx_fn, batch)
            mask = batch["attention_mask"].astype(bool)
            max_diff = max(max_diff, float(np.abs(a - b)[mask].max()))
            tag_mismatch += int((a.argmax(-1) != b.argmax(-1))[mask].sum())
    parity = {"sentences": len(ctx.sample), "windows": len(windows), "prompts": max(1, len(ctx.prompts)),
              "max_abs_logit_diff": max_diff,
              "tag_mismatches": tag_mismatch, "atol": config.logit_atol,
              "passed": max_diff <= config.logit_atol and tag_mismatch == 0}
    report(f"parity   fp32 vs PyTorch: max |dlogit| {max_diff:.2e}, {tag_mismatch} tag mismatches  {time.perf_counter() - t0:6.1f}s")
    if not parity["passed"]:
        raise ArtifactError(f"parity gate failed: fp32 ONNX vs PyTorch max |dlogit| {max_diff:.2e} "
                            f"(atol {config.logit_atol}), {tag_mismatch} tag mismatches")
    sample_tags = _tags(fp32, ctx.sample)

    t0 = time.perf_counter()
    from seqeval.metrics import f1_score

    gold = [list(s.tags) for s in ctx.gate]
    probs = fp32.piece_probs([s.words for s in ctx.gate])
    by_strategy = {
        st: float(f1_score(gold, [[t for t, _ in row] for row in fp32.tags_from_probs(probs, st)]))
        for st in ("first", "average", "max")
    }
    best = max(by_strategy, key=lambda k: (by_strategy[k], k == "first"))
    fp32.default_aggregation = best  # scored as served: the service's default aggregation
    as_text = evaluate_as_text(fp32, ctx.gate)
    metrics = {"dev_f1": by_strategy["first"], "dev_f1_as_text": as_text["micro avg"]["f1-score"]}
    if ctx.test:
        metrics["test_f1"] = _f1(fp32, ctx.test)
    report(f"score    fp32 dev F1 {metrics['dev_f1']:.4f}, as text {metrics['dev_f1_as_text']:.4f} ({len(ctx.gate)} sentences, "
           f"{as_text['resplit']:.1%} split back into their words)  {time.perf_counter() - t0:6.1f}s")
    if as_text["resplit"] < RESPLIT_WARNING:
        report(f"warning  the service's word splitter ({C.WORD_SPLITTER}) splits only {as_text['resplit']:.1%} of the dev "
               f"sentences back into their words: raw text is tagged on other words than the model learnt from")
    variant = VariantReport("fp32", path, {"passed": True}, "fp32_vs_pytorch", parity, metrics)
    return Fp32Report(variant, fp32, sample_tags, by_strategy, best,
                      {"word_splitter": C.WORD_SPLITTER, "dev_resplit": as_text["resplit"]})


def _tag_mismatches(ctx: Context, tagger: Tagger, reference: list[list[str]]) -> int:
    got = _tags(tagger, ctx.sample)
    return sum(x != y for g, r in zip(got, reference) for x, y in zip(g, r))


def _fused(ctx: Context) -> Path:
    """The ORT-optimized CPU graph (built once: the optimized variant and the fused int8 rung share it)."""
    fused = ctx.work / "opt" / "model_optimized.onnx"
    if not fused.is_file():
        fused = _optimize(ctx.work / "onnx", ctx.work / "opt", ctx.config.optimization_level,
                          skip_layer_norm=ctx.config.skip_layer_norm_fusion)
    return fused


def build_optimized(ctx: Context, ref: Fp32Report, report: Report) -> VariantReport:
    """ORT's transformer fusions; gate: the same word tags as fp32 on the parity sample."""
    t0 = time.perf_counter()
    path = _fused(ctx)
    mism = _tag_mismatches(ctx, ctx.tagger(path, "optimized"), ref.sample_tags)
    report(f"optimize O{ctx.config.optimization_level}: {mism} word-tag mismatches vs fp32  {time.perf_counter() - t0:6.1f}s")
    if mism:
        raise ArtifactError(f"parity gate failed: optimized vs fp32, {mism} word tags differ on {len(ctx.sample)} dev sentences")
    info = {"passed": True, "optimization_level": ctx.config.optimization_level,
            "skip_layer_norm_fusion": ctx.config.skip_layer_norm_fusion}
    return VariantReport("optimized", path, info, "optimized_vs_fp32",
                         {"sentences": len(ctx.sample), "word_tag_mismatches": mism, "passed": True})


def build_int8(ctx: Context, raw: Path, ref: Fp32Report, report: Report) -> VariantReport:
    """Dynamic int8: the quantization ladder's candidates in order until one keeps the dev F1 drop within
    ``max_int8_f1_drop`` points; none passing fails the export unless ``allow_degraded``."""
    from promptbert.training.evaluate import evaluate_as_text

    config, fp32_f1 = ctx.config, ref.variant.metrics["dev_f1"]  # type: ignore[index]
    tried: list[dict[str, Any]] = []
    attempts = []  # (candidate, quantization config, path, tagger), parallel to `tried`
    for cand in config.quant_ladder:
        t0 = time.perf_counter()
        if cand.graph == "fused":
            fused = _fused(ctx)
            qconf = quant_config(cand, ctx.isa, fused)
            qpath = quantize_fused(fused, ctx.work / f"q-{cand.name}", qconf, cand.products)
        else:
            qconf = quant_config(cand, ctx.isa, raw)
            qpath = _quantize(ctx.work / "onnx", ctx.work / f"q-{cand.name}", qconf)
        qtagger = ctx.tagger(qpath, "int8")
        f1 = _f1(qtagger, ctx.gate)
        drop = (fp32_f1 - f1) * 100
        ok = drop <= config.max_int8_f1_drop
        tried.append({"candidate": cfg.to_dict(cand), "dev_f1": f1, "f1_drop_points": drop, "passed": ok,
                      "excluded_nodes": len(qconf.nodes_to_exclude)})
        attempts.append((cand, qconf, qpath, qtagger))
        report(f"int8     {cand.name}: dev F1 {f1:.4f} (drop {drop:+.2f} points) {'PASS' if ok else 'fail'}  {time.perf_counter() - t0:6.1f}s")
        if ok:
            break
    # The passing candidate (always the last tried), else the least damaging one.
    best = len(tried) - 1 if tried[-1]["passed"] else min(range(len(tried)), key=lambda i: tried[i]["f1_drop_points"])
    if not tried[best]["passed"] and not config.allow_degraded:
        raise ArtifactError(
            f"int8 gate failed: no quantization candidate kept the dev F1 drop within "
            f"{config.max_int8_f1_drop} points (best: {tried[best]['candidate']['name']}, "
            f"{tried[best]['f1_drop_points']:.2f}); use --allow-degraded to ship it flagged, or drop int8")
    cand, qconf, qpath, int8 = attempts[best]  # the session its gate ran: scored again below, not reloaded
    f1, drop, passed = tried[best]["dev_f1"], tried[best]["f1_drop_points"], tried[best]["passed"]
    int8.default_aggregation = ref.best_aggregation
    metrics = {"dev_f1": f1, "dev_f1_as_text": evaluate_as_text(int8, ctx.gate)["micro avg"]["f1-score"]}
    if ctx.test:
        metrics["test_f1"] = _f1(int8, ctx.test)
    parity = {"sentences": len(ctx.gate), "fp32_dev_f1": fp32_f1, "int8_dev_f1": f1, "f1_drop_points": drop,
              "max_drop_points": config.max_int8_f1_drop, "passed": passed, "candidates": tried}
    info = {"passed": passed, "isa": ctx.isa, "candidate": cand.name, "ops": count_ops(qpath),
            "quantization": {"is_static": False, "per_channel": cand.per_channel, "graph": cand.graph,
                             "products": cand.products,
                             "operators": list(cand.operators), "excluded_nodes": list(qconf.nodes_to_exclude)}}
    return VariantReport("int8", qpath, info, "int8_vs_fp32", parity, metrics)


def build_fp16(ctx: Context, raw: Path, ref: Fp32Report, report: Report) -> VariantReport:
    """fp16 for the CUDA provider: the fp16 ladder's candidates (nodes kept in fp32) until one gives the
    same word tags as fp32 on the parity sample (checked on the CPU provider)."""
    attempts = []
    path, mism, keep = None, -1, ()
    for i, keep in enumerate(ctx.config.fp16_ladder):
        t0 = time.perf_counter()
        if keep:
            path = _fp16_keep(raw, ctx.work / f"fp16-{i}", keep, ctx.model_dir / "config.json")
        else:
            path = _optimize(ctx.work / "onnx", ctx.work / f"fp16-{i}", 1, fp16=True)
        mism = _tag_mismatches(ctx, ctx.tagger(path, "fp16"), ref.sample_tags)
        attempts.append({"fp32_nodes": list(keep), "word_tag_mismatches": mism})
        report(f"fp16     fp32 nodes {list(keep) or 'none'}: {mism} word-tag mismatches vs fp32 "
               f"(checked on CPU)  {time.perf_counter() - t0:6.1f}s")
        if mism == 0:
            break
    if mism:
        raise ArtifactError(f"parity gate failed: fp16 vs fp32, {mism} word tags differ on {len(ctx.sample)} dev "
                            f"sentences with every fp16 candidate tried")
    parity = {"sentences": len(ctx.sample), "word_tag_mismatches": mism, "passed": True, "provider": CPU,
              "attempts": attempts}
    return VariantReport("fp16", path, {"passed": True, "fp32_nodes": list(keep)}, "fp16_vs_fp32", parity)  # type: ignore[arg-type]


def load_context(model_dir: str | Path, config: ExportConfig, work: Path) -> Context:
    """The model folder and its data, checked against its manifest (prompt text and token count)."""
    from promptbert.training.evaluate import load_model_folder

    model_dir = Path(model_dir)
    model, encoder, labels, source = load_model_folder(model_dir)
    prompt_text = (model_dir / C.PROMPT_TEXT).read_text(encoding="utf-8")
    if fingerprint(prompt_text) != source.prompt.fingerprint:
        raise ArtifactError(f"{model_dir}: {C.PROMPT_TEXT} does not match the manifest's prompt fingerprint")
    if encoder.prompt_tokens != source.prompt.tokens:
        raise ArtifactError(f"{model_dir}: the prompt encodes to {encoder.prompt_tokens} tokens here but to "
                            f"{source.prompt.tokens} at training (train/serve skew)")
    data_dir = config.data_dir or source_data_dir(source)
    dev = canonical_split(source, data_dir, "dev")
    D.check_labels(dev, labels.entity_types)
    test: list[D.Sentence] = []
    if config.eval_test:
        try:
            test = canonical_split(source, data_dir, "test")
        except D.DataError:
            test = []
    prompts: tuple[Any, ...] = ()
    if source.encoding.head == "types":
        from promptbert.typed import PromptLimits, default_prompt, narrow, prepare

        default = default_prompt(model_dir, source.prompt.fingerprint)
        limits = PromptLimits.of(source.encoding)
        names = list(default.labels)
        other = narrow(default, names[::-1][: max(1, (len(names) + 1) // 2)])  # fewer types, another order
        prompts = tuple(prepare(p, encoder.tokenizer, encoder.cls_id, encoder.sep_id, limits) for p in (default, other))
    return Context(model_dir, model, encoder, labels, source, config, work, dev[: config.parity_sample],
                   dev[: config.gate_sentences] if config.gate_sentences else dev, test,
                   detect_isa() if config.isa == "auto" else config.isa, prompts)


def source_data_dir(source: ModelManifest) -> str:
    """The corpus a model was trained on (a multi-corpus model: its first, the default prompt's)."""
    corpora = source.config.get("corpora") or []
    return corpora[0]["data_dir"] if corpora else source.config["data_dir"]


def canonical_split(source: ModelManifest, data_dir: str | Path, split: str) -> list[D.Sentence]:
    """A split with the type names the model learnt (a corpus config may rename its types)."""
    sentences = D.load_split(data_dir, split)
    corpora = source.config.get("corpora") or []
    same = bool(corpora) and Path(corpora[0]["data_dir"]).resolve() == Path(data_dir).resolve()
    mapping = corpora[0].get("types") if same else None
    if mapping:
        from promptbert.training.typed import canonical_tags

        sentences = canonical_tags(sentences, mapping, "corpora[0]")
    return sentences


def assemble_manifest(ctx: Context, out: Path, ref: Fp32Report, variants: list[VariantReport], parity: dict[str, Any],
                      seconds: float) -> ArtifactConfig:
    """The artifact's manifest, once every variant is in ``out``: sources, variants with their hashes, gates."""
    hashes = folder_hashes(out)
    info = {v.name: {**v.info, "file": C.VARIANT_FILES[v.name], **hashes[C.VARIANT_FILES[v.name]]} for v in variants}
    return ArtifactConfig(
        created=now(),
        versions=versions(),
        source_model={"path": str(ctx.model_dir.resolve()), "fingerprint": folder_fingerprint(ctx.model_dir),
                      "base_model": ctx.source.base_model, "metrics": ctx.source.metrics},
        prompt=ctx.source.prompt,
        labels=list(ctx.labels.labels),
        encoding=ctx.source.encoding,
        opset=ctx.config.opset,
        exporter=("torch.onnx (prompt encoder + tagger)" if ctx.head == "types" else
                  "torch.onnx (prompt head baked in)" if ctx.attention == "isolated" else "optimum main_export"),
        data_dir=str(ctx.config.data_dir or source_data_dir(ctx.source)),
        variants=info,
        metrics={v.name: v.metrics for v in variants if v.metrics is not None},
        aggregation_dev_f1=ref.by_strategy,
        best_aggregation=ref.best_aggregation,
        text_path=ref.text_path,
        parity=parity,
        files=hashes,
        seconds=round(seconds, 1),
    )


def export(model_dir: str | Path, output: str | Path, config: ExportConfig, force: bool = False,
           report: Report = _quiet) -> ArtifactConfig:
    """Write the artifact; raises ArtifactError if a gate fails (unless allow_degraded for int8)."""
    t_all = time.perf_counter()
    with atomic_dir(output, force=force) as out:
        ctx = load_context(model_dir, config, out / "_work")
        raw = export_fp32(ctx, report)
        shutil.copyfile(raw, out / C.VARIANT_FILES["fp32"])
        if ctx.head == "types":
            shutil.copyfile(raw.parent / C.PROMPT_ENCODER, out / C.PROMPT_ENCODER)
        for name in SHIPPED_FROM_MODEL:
            if (ctx.model_dir / name).is_file():
                shutil.copyfile(ctx.model_dir / name, out / name)
        ref = gate_fp32(ctx, out / C.VARIANT_FILES["fp32"], report)
        built = [ref.variant]
        if "optimized" in config.variants:
            built.append(build_optimized(ctx, ref, report))
        if "int8" in config.variants:
            built.append(build_int8(ctx, raw, ref, report))
        if "fp16" in config.variants:
            built.append(build_fp16(ctx, raw, ref, report))
        for v in built[1:]:
            shutil.copyfile(v.file, out / C.VARIANT_FILES[v.name])
            if v.name == "int8" and (v.file.parent / C.QUANTIZATION_CONFIG).is_file():
                shutil.copyfile(v.file.parent / C.QUANTIZATION_CONFIG, out / C.QUANTIZATION_CONFIG)
        shutil.rmtree(ctx.work)
        cfg.dump_yaml(config, out / C.EXPORT_CONFIG)
        parity = {v.parity_key: v.parity for v in built}
        write_json(out / C.PARITY, parity)
        manifest = assemble_manifest(ctx, out, ref, built, parity, time.perf_counter() - t_all)
        manifest.write(out)
    return manifest
