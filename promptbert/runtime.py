"""Serving-side model: an artifact folder run by ONNX Runtime (no torch).

``Artifact`` checks and loads one variant into a TaggingPipeline; ``promptbert.tagger.Tagger`` wraps
it for every caller (the service, ``predict``, ``evaluate``, the export's gates).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import constants as C
from .data import file_sha256
from .encoding import PromptEncoder, default_call_cost, load_tokenizer
from .errors import ArtifactError
from .labels import LabelMap
from .manifest import ArtifactConfig
from .pipeline import TaggingPipeline

log = logging.getLogger("promptbert")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def cuda_available() -> bool:
    """Worth asking ORT for CUDA: the GPU build is installed and an NVIDIA driver is present.

    onnxruntime-gpu lists CUDAExecutionProvider even with no GPU; asking for it then
    only logs a loader error. The final word is still ``session.get_providers()``.
    """
    import glob

    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False
    return os.path.exists("/proc/driver/nvidia") or bool(glob.glob("/dev/nvidia[0-9]*"))


@dataclass(frozen=True)
class LoadedModel:
    variant: str
    providers: list[str]
    path: Path


def make_session(path: str | Path, providers: list[str], threads: int | None = None, spinning: bool = True) -> Any:
    """An ORT session; raises ArtifactError for a missing or corrupt file.

    ``spinning=False`` stops ORT's worker threads from busy-waiting after each run:
    in a server they would otherwise take CPU from the HTTP event loop.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: ONNX file not found")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types
        raise ArtifactError(f"{path}: cannot load ONNX model ({str(exc).splitlines()[0][:200]})") from None


def text_inputs(casing: str) -> tuple[str, ...]:
    """The text inputs of a prompt-isolated graph (either head): ids, mask and, with casing, word shapes."""
    return ("input_ids", "attention_mask", *(("word_shape",) if casing else ()))


def ort_logits_fn(session: Any, prompt_attention: str = "joint", casing: str = "") -> Any:
    """Logits function over an ORT session.

    A joint graph is always fed token_type_ids (ORTModel would zero-fill them); an
    isolated graph takes the text part only, its segment id and positions baked in,
    plus the word shapes of a model trained with casing.
    """
    names = {i.name for i in session.get_inputs()}
    if prompt_attention == "isolated":
        wanted: tuple[str, ...] = text_inputs(casing)
        if names != set(wanted):
            raise ArtifactError(f"ONNX graph inputs {sorted(names)} are not those of a prompt-isolated graph "
                                f"{list(wanted)} (the manifest's casing: {casing or 'none'})")
    else:
        wanted = ("input_ids", "attention_mask", "token_type_ids")
        missing = set(wanted) - names
        if missing:
            raise ArtifactError(f"ONNX graph lacks inputs {sorted(missing)}: a prompt+text pair needs token_type_ids")

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], {k: batch[k] for k in wanted})[0]

    return run


TYPES_INPUTS = ("input_ids", "attention_mask", "keys", "values", "type_keys", "type_bias", "prompt_mask")
TYPES_INPUTS_ONE_PROMPT = TYPES_INPUTS[:-1]  # a types graph that takes one encoding per call (no mixing)
PROMPT_ENCODER_INPUTS = ("prompt_ids", "type_mask")
PROMPT_ENCODING = ("keys", "values", "type_keys", "type_bias")


def _dtypes(session: Any) -> dict[str, Any]:
    return {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in session.get_inputs()}


def ort_prompt_encoder(session: Any) -> Any:
    """The prompt encoder graph as a PromptEncodeFn: head ids + type mask -> the prompt's encoding."""
    names = {i.name for i in session.get_inputs()}
    if names != set(PROMPT_ENCODER_INPUTS):
        raise ArtifactError(f"prompt encoder inputs {sorted(names)} are not {list(PROMPT_ENCODER_INPUTS)}")
    mask_type = _dtypes(session)["type_mask"]

    def encode(head_ids: np.ndarray, type_mask: np.ndarray) -> dict[str, np.ndarray]:
        outs = session.run(list(PROMPT_ENCODING), {"prompt_ids": head_ids, "type_mask": type_mask.astype(mask_type)})
        return dict(zip(PROMPT_ENCODING, outs))

    return encode


def ort_types_tagger(session: Any, casing: str = "") -> Any:
    """The tagger graph of a types model as a TagFn: text windows + a prompt's encoding (or one per row,
    ``typed.rows_encoding``) -> logits. ``tag.mixes`` says whether the graph takes one per row."""
    from .typed import as_rows

    names = {i.name for i in session.get_inputs()}
    text = text_inputs(casing)
    mixes = names == set(TYPES_INPUTS) | set(text)
    if not mixes and names != set(TYPES_INPUTS_ONE_PROMPT) | set(text):
        raise ArtifactError(f"ONNX graph inputs {sorted(names)} are not those of a types graph "
                            f"{[*TYPES_INPUTS, *text[2:]]} (the manifest's casing: {casing or 'none'})")
    dtypes = _dtypes(session)

    def tag(batch: dict[str, np.ndarray], encoding: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: batch[k] for k in text}
        if mixes:
            encoding = as_rows(encoding)
            feed["prompt_mask"] = encoding["prompt_mask"]
        elif encoding["keys"].ndim == 5:
            raise ValueError("this types graph takes one prompt per call (export it again to mix prompts)")
        for k in PROMPT_ENCODING:  # an fp16 graph takes its encoding in fp16 (the encoder runs in fp32)
            v = encoding[k]
            feed[k] = v if v.dtype == dtypes[k] else v.astype(dtypes[k])
        return session.run(["logits"], feed)[0]

    tag.mixes = mixes  # type: ignore[attr-defined]
    return tag


def ort_prompted(session: Any, prompt_session: Any, encoder: PromptEncoder, default: Any, limits: Any,
                 *args: Any, **kwargs: Any) -> Any:
    """A PromptedModel over the two graphs of a types artifact."""
    from .typed import PromptedModel

    tag = ort_types_tagger(session, encoder.casing)
    return PromptedModel(encoder, ort_prompt_encoder(prompt_session), tag, default, limits, *args,
                         mixes=tag.mixes, **kwargs)


def onnx_pipeline(session: Any, encoder: PromptEncoder, labels: LabelMap, prompt_attention: str = "joint",
                  **pipeline_kwargs: Any) -> TaggingPipeline:
    """A TaggingPipeline over an ORT session, fed the way the graph's prompt attention wants."""
    return TaggingPipeline(encoder, labels, ort_logits_fn(session, prompt_attention, encoder.casing),
                           head_cached=prompt_attention == "isolated", **pipeline_kwargs)


class Artifact:
    """An exported artifact folder: manifest, prompt text, labels, tokenizer and ONNX variants."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ArtifactError(f"{self.folder}: artifact folder not found")
        self.config = ArtifactConfig.read(self.folder)
        self.labels = LabelMap.load(self.folder / C.LABELS)
        # The rendered prompt is read, never re-rendered: that is what was trained on.
        prompt_file = self.folder / C.PROMPT_TEXT
        if not prompt_file.is_file():
            raise ArtifactError(f"{prompt_file}: not found (an artifact carries the prompt it was trained on)")
        self.prompt_text = prompt_file.read_text(encoding="utf-8")
        self.tokenizer, self.specials = load_tokenizer(self.folder)
        self.prompt_attention = self.config.encoding.prompt_attention
        self.head = self.config.encoding.head
        if self.head not in ("fixed", "types"):
            raise ArtifactError(f"{self.folder}: unknown head {self.head!r} in the manifest (a newer promptbert?)")
        if self.prompt_attention not in C.PROMPT_ATTENTION:
            raise ArtifactError(f"{self.folder}: unknown prompt_attention {self.prompt_attention!r} in the manifest")

    @property
    def variants(self) -> dict[str, Any]:
        return self.config.variants

    def encoder(self) -> PromptEncoder:
        encoding = self.config.encoding
        enc = PromptEncoder(self.tokenizer, self.prompt_text, encoding.max_length, encoding.stride, self.specials,
                            text_tokens=encoding.text_tokens or None, casing=encoding.casing,
                            context_tokens=encoding.context_tokens)
        expected = self.config.prompt.tokens
        if enc.prompt_tokens != expected:
            raise ArtifactError(f"{self.folder}: the prompt encodes to {enc.prompt_tokens} tokens but the model was "
                                f"trained with {expected} (train/serve skew)")
        return enc

    def choose(self, variant: str = "auto", device: str = "auto") -> tuple[str, list[str]]:
        """Variant and providers: CUDA + fp16/fp32 when a GPU is there, else CPU + int8 (if it passed its gate).
        A variant named with device auto runs where it was built for: int8 on the CPU even beside a GPU."""
        use_cuda = device == "cuda" or (device == "auto" and cuda_available())
        if variant != "auto":
            if variant not in C.VARIANT_FILES:
                raise ArtifactError(f"variant: unknown {variant!r} (one of {', '.join(C.VARIANT_FILES)})")
            if variant not in self.variants:
                raise ArtifactError(f"{self.folder}: has no {variant!r} variant (has {', '.join(self.variants)})")
            if device == "auto" and variant in C.CPU_ONLY_VARIANTS:
                use_cuda = False
            return variant, ([CUDA, CPU] if use_cuda else [CPU])
        prefs = ["fp16", "fp32"] if use_cuda else ["int8", "optimized", "fp32"]
        for v in prefs:
            info = self.variants.get(v)
            if info and info.get("passed", True):
                return v, ([CUDA, CPU] if use_cuda else [CPU])
        raise ArtifactError(f"{self.folder}: no usable variant (have {', '.join(self.variants) or 'none'})")

    def check(self, variant: str = "auto", device: str = "auto") -> tuple[str, list[str], Path, PromptEncoder]:
        """Everything ``pipeline`` would refuse short of loading the model: the variant (``choose``), its
        file and the manifest's sha256 of it, and the prompt against its trained length (``encoder``).
        Returns the variant, the providers to ask for, the ONNX file and the encoder."""
        name, providers = self.choose(variant, device)
        path = self.folder / C.VARIANT_FILES[name]
        if not path.is_file():
            raise ArtifactError(f"{path}: ONNX file not found (variant {name})")
        expected = self.variants[name].get("sha256")
        if expected and file_sha256(path) != expected:
            raise ArtifactError(f"{path}: does not match the manifest's sha256 (corrupt or modified file)")
        return name, providers, path, self.encoder()

    def pipeline(
        self, variant: str = "auto", device: str = "auto", threads: int | None = None, spinning: bool = True,
        cache_entries: int = 256, cache_bytes: int = 256 << 20, **pipeline_kwargs: Any,
    ) -> tuple[Any, LoadedModel]:
        """Load one variant into a TaggingPipeline (a types artifact: a PromptedModel over its two graphs, its
        prompt cache bounded by ``cache_entries`` and ``cache_bytes``); reports the providers ORT really gave."""
        name, providers, path, encoder = self.check(variant, device)
        if CUDA in providers:
            _preload_cuda()
        session = make_session(path, providers, threads, spinning)
        got = session.get_providers()
        if CUDA in providers and CUDA not in got:
            log.warning("CUDAExecutionProvider did not come up; running %s on %s", name, got)
            if variant == "auto":  # fp16 on CPU is slow: fall back to the CPU choice
                return self.pipeline("auto", "cpu", threads, spinning, cache_entries, cache_bytes, **pipeline_kwargs)
        if "call_cost" not in pipeline_kwargs:  # how a batch is cut into ORT calls depends on the device
            pipeline_kwargs["call_cost"] = default_call_cost(gpu=CUDA in got)
        if self.head == "types":
            prompted = ort_prompted(session, self.prompt_session(got, threads, spinning), encoder, self.default_spec(),
                                    self.limits(), cache_entries, cache_bytes, **pipeline_kwargs)
            return prompted, LoadedModel(name, list(got), path)
        pipe = onnx_pipeline(session, encoder, self.labels, self.prompt_attention, **pipeline_kwargs)
        return pipe, LoadedModel(name, list(got), path)

    def prompt_session(self, providers: list[str], threads: int | None, spinning: bool) -> Any:
        """The prompt encoder of a types artifact (fp32, run once per distinct prompt), hash-checked."""
        path = self.folder / C.PROMPT_ENCODER
        expected = self.config.files.get(C.PROMPT_ENCODER, {}).get("sha256")
        if not path.is_file():
            raise ArtifactError(f"{path}: ONNX file not found (a types artifact needs its prompt encoder)")
        if expected and file_sha256(path) != expected:
            raise ArtifactError(f"{path}: does not match the manifest's sha256 (corrupt or modified file)")
        return make_session(path, providers, threads, spinning)

    def default_spec(self) -> Any:
        from .typed import default_prompt

        return default_prompt(self.folder, self.config.prompt.fingerprint)

    def limits(self) -> Any:
        from .typed import PromptLimits

        return PromptLimits.of(self.config.encoding)


def _preload_cuda() -> None:
    """Load CUDA/cuDNN from the nvidia-* pip wheels (the bento's way of shipping CUDA 13), if present."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # missing wheels: ORT falls back to the system libraries
            log.info("onnxruntime.preload_dlls() failed: %s", exc)

