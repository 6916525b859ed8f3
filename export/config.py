"""ExportConfig: how a model folder becomes a serving artifact, saved inside the artifact."""

from __future__ import annotations

from dataclasses import dataclass

from promptbert.constants import VARIANT_FILES
from promptbert.errors import ConfigError

ISAS = ("auto", "avx512_vnni", "avx512", "avx2", "arm64")


@dataclass(frozen=True)
class QuantCandidate:
    """One dynamic-int8 configuration to try (ORT dynamic quantization through Optimum)."""

    name: str
    operators: tuple[str, ...] = ("MatMul",)
    per_channel: bool = True
    # Substrings of node names kept in fp32 (e.g. the classifier head).
    exclude: tuple[str, ...] = ("classifier",)
    # "raw": quantize the plain export; "fused": quantize the ORT-optimized graph (fused GELU and
    # LayerNorm; only weight MatMuls get quantized there unless ``products``).
    graph: str = "raw"
    # fused graph: also quantize the attention products (MatMuls of two activations: queries by keys,
    # probabilities by values; a types model's words by its type vectors), the cached prompt keys and
    # values included. The raw graph's quantizer (Optimum) always does.
    products: bool = False

    def __post_init__(self) -> None:
        if self.graph not in ("raw", "fused"):
            raise ConfigError(f"quant_ladder: graph must be 'raw' or 'fused', got {self.graph!r}")
        if self.products and self.graph != "fused":
            raise ConfigError("quant_ladder: products applies to graph: fused (a raw graph's are always quantized)")


# Tried in order until one passes the int8 gate: fastest first, more fp32 later.
# Naive (all operators incl. Gather, per-tensor) loses ~0.5 F1 points on CoNLL dev (docs/benchmarks.md, int8).
DEFAULT_LADDER = (
    QuantCandidate("fused-matmul-perchannel-fp32head", graph="fused"),
    QuantCandidate("matmul-perchannel-fp32head"),
    QuantCandidate("matmul-perchannel-fp32head-fp32ffnout", exclude=("classifier", "output/dense")),
    QuantCandidate("matmul-perchannel-fp32head-fp32layer0+5", exclude=("classifier", "layer.0/", "layer.5/")),
)


@dataclass(frozen=True)
class ExportConfig:
    """ONNX export, optimization, quantization and the parity gates that guard them."""

    variants: tuple[str, ...] = ("fp32", "optimized", "int8", "fp16")
    opset: int = 18
    optimization_level: int = 2  # ORT transformer fusions for the "optimized" variant (O1-O3 as in Optimum)
    # Fuse residual Add + LayerNorm into SkipLayerNormalization in the CPU graphs (optimized, fused int8).
    # Off: ONNX Runtime 1.31.1's CPU kernel for it is several times slower than the Add and
    # LayerNormalization it replaces (int8 CoNLL model, 8 x 20 tokens: 16.3 -> 12.5 ms a call; docs/benchmarks.md).
    # The fp16 (CUDA) graph keeps every fusion.
    skip_layer_norm_fusion: bool = False
    isa: str = "auto"  # instruction set for AutoQuantizationConfig; auto = detected from the CPU
    quant_ladder: tuple[QuantCandidate, ...] = DEFAULT_LADDER
    # fp16 candidates, tried in order: node-name substrings kept in fp32 ("" entries: none, Optimum's own fp16).
    fp16_ladder: tuple[tuple[str, ...], ...] = ((), ("classifier",), ("classifier", "layer.5/"))
    data_dir: str = ""  # dev split for the gates; empty = the model's training data_dir
    parity_sample: int = 200  # dev sentences for fp32-vs-PyTorch and fp16-vs-fp32 checks
    gate_sentences: int = 0  # dev sentences for the int8 F1 gate; 0 = the full dev split
    logit_atol: float = 1e-3
    max_int8_f1_drop: float = 0.3  # F1 points, int8 vs fp32 on dev
    eval_test: bool = True  # also score fp32 and int8 on the test split when it exists
    allow_degraded: bool = False  # keep a failing int8 variant, flagged, instead of failing the export
    threads: int = 0  # ORT intra-op threads for the checks (0 = ORT default)

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANT_FILES]
        if unknown:
            raise ConfigError(f"variants: unknown {unknown[0]!r} (choose from {', '.join(VARIANT_FILES)})")
        if not self.variants:
            raise ConfigError("variants: at least one is required")
        if self.isa not in ISAS:
            raise ConfigError(f"isa: must be one of {', '.join(ISAS)}, got {self.isa!r}")
        if self.optimization_level not in (1, 2, 3, 99):
            raise ConfigError(f"optimization_level: must be 1, 2, 3 or 99, got {self.optimization_level}")
        if "int8" in self.variants and not self.quant_ladder:
            raise ConfigError("quant_ladder: at least one candidate is needed for int8")


def detect_isa() -> str:
    """The best quantization target of this CPU (from /proc/cpuinfo or the machine type)."""
    import platform

    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return "avx2"
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"
