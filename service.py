"""promptbert NER service: raw text in, entities out.

    PROMPTBERT_ARTIFACT=artifacts/demo bentoml serve service:PromptBertNER --port 3000

Serves one artifact folder (``artifacts/serve`` beside this file unless PROMPTBERT_ARTIFACT says
otherwise; a built bento carries its own copy there) with ONNX Runtime: CUDA + fp16 when a GPU
really comes up, else CPU + int8. POST /tag (batchable: a list of texts), POST /tag_text (one text,
with the Hugging Face pipeline's options), POST /metadata; BentoML's own /livez, /readyz and /metrics.
Settings: PROMPTBERT_* variables (promptbert/serving.py, docs/serving.md).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from bentoml.validators import ContentType
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.responses import JSONResponse

from promptbert.bentoml_workarounds import CLIENT_ERROR_LINE, ClientErrorLog, run_in_steps, with_keepalive_budget
from promptbert.constants import WORD_SPLITTER
from promptbert.errors import InputError, PromptBertError
from promptbert.manifest import versions
from promptbert.pipeline import check_text
from promptbert.serving import mark_worker_ready, model_call_metrics, prompt_cache_metrics, settings, tune_gc
from promptbert.tagger import Entity as EntityDict
from promptbert.tagger import FIXED_HEAD, Tagger
from promptbert.typed import PreparedPrompt

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "serve"
EXAMPLE = "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget."
WORKER_INDEX = bentoml.server_context.worker_index  # 1.. in a worker of `bentoml serve`, None elsewhere
try:  # read once, in the serve process and in each worker: a bad setting or artifact stops the serve with one line
    CONFIG, WORKERS = settings(DEFAULT_ARTIFACT, in_worker=bool(WORKER_INDEX))
except PromptBertError as exc:
    print(f"promptbert: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
JSON = ContentType("application/json")  # said once: BentoML would derive it from the schema on every response
log = logging.getLogger("bentoml.service.promptbert")

Text = Annotated[str, Field(max_length=CONFIG.max_chars, description="raw text; empty returns no entities"),
                 AfterValidator(check_text)]
# The worker's loaded tagger, for the input models' validators: a request's prompt is checked against the
# model (its tokenizer, its prompt-length and type limits) while the request is parsed, so that a bad
# prompt is a 400 of its own request and never fails a batch it would have joined.
LOADED: dict[str, Tagger] = {}


# Bounds on a prompt's parts, before it is tokenized: generous for any prompt that fits a model's prompt-length
# limit (381 tokens with the embedded model), tight enough that a huge one is refused without tokenizing it.
PromptText = Annotated[str, Field(max_length=4000)]
PromptList = Annotated[list[PromptText], Field(max_length=64)]


class PromptDetailsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: PromptList = []
    examples: PromptList = []
    tips: PromptList = []


class TypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(max_length=200)]
    description: PromptText


class PromptIn(BaseModel):
    """A prompt of a types model, the fields of ``prompts/*.yaml``: what to tag, and how."""

    model_config = ConfigDict(extra="forbid")
    role: PromptText
    task: PromptText
    requirements: PromptList | PromptText = []
    details: PromptDetailsIn = PromptDetailsIn()
    labels: Annotated[dict[str, PromptText] | Annotated[list[TypeIn], Field(max_length=256)],
                      Field(description="entity type name -> description", max_length=256)]
    name: PromptText = ""


def prepare_prompt(prompt: PromptIn | None, entity_types: list[str] | None = None) -> PreparedPrompt | None:
    """The request's prompt made ready for the model (None: the default). InputError names the field."""
    tagger = LOADED["tagger"]  # set by the worker's __init__, before it serves
    if tagger.prompted is None:
        if prompt is not None:
            raise InputError(FIXED_HEAD)
        return None
    if prompt is None and entity_types is None:
        return None
    return tagger.prepare(prompt.model_dump(exclude_unset=True) if prompt is not None else None, entity_types)


class PromptedText(str):
    """A text of /tag carrying its request's prompt through BentoML's batching (which merges the texts of
    concurrent requests into one list, and takes one argument only)."""

    prompt: PreparedPrompt | None = None


def _prompted(text: str, prompt: PreparedPrompt | None) -> PromptedText:
    out = PromptedText(text)
    out.prompt = prompt
    return out


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its $defs written in place (to nest it in another model's schema)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


class TagInput(bentoml.IODescriptor):
    """POST /tag: texts, and (types models) an optional prompt for all of them. Unknown fields are refused:
    a misspelt field must not yield a default answer."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda schema: schema["properties"].update(
        prompt={"anyOf": [_inline_schema(PromptIn), {"type": "null"}], "default": None,
                "description": "types models: the prompt that decides what is tagged (default: the artifact's)"}))
    texts: Annotated[list[Text], Field(min_length=1, max_length=CONFIG.max_items, examples=[[EXAMPLE]])]

    @model_validator(mode="wrap")
    @classmethod
    def with_prompt(cls, data: Any, handler: Any) -> TagInput:
        """``prompt`` is parsed here, not as a field: the batched endpoint takes exactly one argument, so each
        text carries its request's prompt instead (PromptedText)."""
        raw = None
        if isinstance(data, dict) and "prompt" in data:
            data = dict(data)
            raw = data.pop("prompt")
        out = handler(data)
        if raw is not None:
            try:
                prepared = prepare_prompt(PromptIn.model_validate(raw))
            except ValidationError as exc:  # named from the request's root, as for the other fields
                first = exc.errors()[0]
                where = ".".join(str(p) for p in ("prompt", *first["loc"]))
                raise ValueError(f"{where}: {first['msg']}") from None
            except InputError as exc:
                raise ValueError(str(exc)) from None
            out.texts = [_prompted(t, prepared) for t in out.texts]
        return out

    @model_validator(mode="after")
    def fits_one_request(self) -> TagInput:
        """PROMPTBERT_MAX_CHARS bounds a whole request too: 64 texts of the limit would run for minutes."""
        total = sum(len(t) for t in self.texts)
        if total > CONFIG.max_chars:
            raise ValueError(f"texts: {total} characters in all, more than the {CONFIG.max_chars} one request may carry")
        return self


class TagTextInput(bentoml.IODescriptor):
    """POST /tag_text: one text and the HF pipeline's options."""

    model_config = ConfigDict(extra="forbid")
    text: Annotated[Text, Field(examples=[EXAMPLE])]
    aggregation_strategy: Literal["simple", "first", "average", "max"] | None = None
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    entity_types: list[str] | None = None
    prompt: PromptIn | None = None


class Entity(BaseModel):
    """One entity in the Hugging Face pipeline shape; text[start:end] == word."""

    entity_group: str
    score: float
    word: str
    start: int
    end: int


@with_keepalive_budget(CONFIG.keepalive_requests, WORKERS, WORKER_INDEX)
@bentoml.service(
    name="promptbert",
    workers=WORKERS,
    traffic={"timeout": CONFIG.timeout_s, "max_concurrency": CONFIG.max_concurrency},
    logging={"access": {"enabled": CONFIG.access_log}},
    **({} if CONFIG.tracing_enabled else {"tracing": {"excluded_urls": [".*"]}}),
)
class PromptBertNER:
    def __init__(self) -> None:
        t0 = time.perf_counter()
        ClientErrorLog.install()
        cost = CONFIG.batch_cost()  # None: the device's own, from the providers ORT really gave
        self.tagger = Tagger.from_pretrained(
            CONFIG.artifact, CONFIG.variant, CONFIG.device, threads=CONFIG.resolved_threads(WORKERS) or None,
            spinning=CONFIG.ort_spinning, max_batch_tokens=CONFIG.max_batch_tokens, max_batch_items=None,
            split_sentences=CONFIG.split_sentences, cache_entries=CONFIG.prompt_cache_entries,
            cache_bytes=CONFIG.prompt_cache_mb << 20, **({} if cost is None else {"call_cost": cost}),
        )
        if CONFIG.aggregation:
            self.tagger.default_aggregation = CONFIG.aggregation
        self.tagger.predict([EXAMPLE])  # warm-up: /readyz turns green only after a real inference
        self.tagger.observe(model_call_metrics(), prompt_cache_metrics())  # after the warm-up: requests only
        LOADED["tagger"] = self.tagger
        self.serving_versions = versions()
        self.batch_sizes: Counter[int] = Counter()
        self._lock = threading.Lock()
        self.gc_state = tune_gc(CONFIG.gc_threshold if WORKER_INDEX else 0)  # not in to_asgi() callers
        self.ready = True
        mark_worker_ready()
        log.info("promptbert: %s on %s, loaded and warmed up in %.1fs; tracing %s", self.tagger.variant,
                 self.tagger.providers, time.perf_counter() - t0, "on" if CONFIG.tracing_enabled else "off")

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    # PROMPTBERT_MAX_BATCH_SIZE=1 turns adaptive batching off (BentoML itself requires a size > 1).
    @bentoml.api(batchable=CONFIG.max_batch_size > 1, max_batch_size=max(2, CONFIG.max_batch_size),
                 max_latency_ms=CONFIG.max_latency_ms, input_spec=TagInput)
    async def tag(self, texts: list[str]) -> Annotated[list[list[Entity]], JSON]:
        """Entities for each text (adaptive batching merges concurrent requests, whatever their prompts)."""
        with self._lock:
            self.batch_sizes[len(texts)] += 1
        return await self._infer(texts)  # type: ignore[return-value]

    @bentoml.api(input_spec=TagTextInput)
    async def tag_text(self, text: str, aggregation_strategy: str | None = None, min_score: float = 0.0,
                       entity_types: list[str] | None = None, prompt: PromptIn | None = None
                       ) -> Annotated[list[Entity], JSON]:
        """Entities for one text, with the options of the HF pipeline (and, types models, a prompt)."""
        try:
            prepared = prepare_prompt(prompt, entity_types)
            if self.tagger.prompted is not None:
                entity_types = None  # the prompt names them: the model is asked for just those
            (ents,) = await self._infer([_prompted(text, prepared)], aggregation_strategy, min_score, entity_types)
        except InputError as exc:  # answered here: BentoML's own 4xx body is a one-item list, not the {"error"} object
            log.warning(CLIENT_ERROR_LINE, "POST", "/tag_text", 400, exc)
            return JSONResponse({"error": str(exc)}, status_code=400)  # type: ignore[return-value]
        return ents  # type: ignore[return-value]

    async def _infer(self, texts: list[str], *options: Any) -> list[list[EntityDict]]:
        return await run_in_steps(lambda part: self._by_prompt(part, *options), texts,
                                  CONFIG.inline_chars, CONFIG.gather_yields)

    def _by_prompt(self, texts: list[str], *options: Any) -> list[list[EntityDict]]:
        """Texts each under its own request's prompt (a batch may merge requests with different ones): a
        types model tags them in shared calls, every row fed its own prompt's encoding."""
        return self.tagger.predict_each(texts, [getattr(t, "prompt", None) for t in texts], *options)

    @bentoml.api
    def metadata(self) -> Annotated[dict[str, Any], JSON]:
        """What is being served: model, prompt, labels, variant, provider, versions, batching."""
        m = self.tagger.config
        pipe = self.tagger.pipeline
        with self._lock:
            sizes = dict(sorted(self.batch_sizes.items()))
        return {
            "artifact": str(CONFIG.artifact),
            "variant": self.tagger.variant,
            "providers": self.tagger.providers,
            "base_model": m.base_model,
            "prompt": {"fingerprint": m.prompt.fingerprint, "tokens": m.prompt.tokens, "kind": m.prompt.kind},
            "head": m.encoding.head,  # types: a request may bring its own prompt (and types)
            "casing": m.encoding.casing or None,  # the word-shape scheme the model reads (uncased encoders)
            "context_tokens": m.encoding.context_tokens,  # neighbouring words each sentence is tagged with
            **({"prompt_limits": {"max_prompt_tokens": m.encoding.max_prompt_tokens, "max_types": m.encoding.max_types},
                "prompt_cache": dataclasses.asdict(self.tagger.prompted.cache.stats())}
               if self.tagger.prompted is not None else {}),
            "labels": m.labels,
            "entity_types": list(self.tagger.entity_types),
            "metrics": m.metrics,
            "default_aggregation": self.tagger.default_aggregation,
            "word_splitter": WORD_SPLITTER,  # how raw text is cut into words here (the manifest's: at training)
            "split_sentences": CONFIG.split_sentences,
            "versions": m.versions,  # where the artifact was exported
            "serving_versions": self.serving_versions,  # what runs it here, the loaded onnxruntime build included
            "workers": WORKERS,
            "tracing": CONFIG.tracing_enabled,
            "access_log": CONFIG.access_log,
            "ort_threads_per_worker": CONFIG.resolved_threads(WORKERS) or "ORT default",
            "gc": self.gc_state,
            "limits": {"max_batch_size": CONFIG.max_batch_size, "max_latency_ms": CONFIG.max_latency_ms,
                       "max_items": CONFIG.max_items, "max_chars": CONFIG.max_chars, "inline_chars": CONFIG.inline_chars,
                       "max_concurrency": CONFIG.max_concurrency, "timeout_s": CONFIG.timeout_s,
                       "gather_yields": CONFIG.gather_yields,
                       "keepalive_requests": CONFIG.keepalive_requests if WORKERS > 1 else 0},
            # what the pipeline really uses; null: each call filled up to max_batch_tokens (the GPU's default)
            "call_cost": dataclasses.asdict(pipe.call_cost) if pipe.call_cost else None,
            "batch_sizes_seen": sizes,
        }

