"""``promptbert train`` with ``head: types``: a label-semantic model trained on one or several corpora."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from promptbert import config as cfg
from promptbert import constants as C
from promptbert.encoding import PromptEncoder
from promptbert.errors import ConfigError
from promptbert.labels import LabelMap
from promptbert.manifest import EncodingInfo, ModelManifest, PromptInfo, atomic_dir, file_sha256, now, versions, write_json
from promptbert.prompt import MIN_TEXT_TOKENS, fingerprint
from promptbert.typed import PromptLimits, prepare, render_typed

from .config import CorpusConfig, TrainConfig
from .train import (device_and_precision, load_base, log, run_trainer, tokenizer_specials, training_args,
                    training_callbacks, training_casing)
from .typed import HEAD_WEIGHTS, BatchCollator, PromptDraws, TypedTagger, TypedTrainer, corpus_tagger, load_corpus, make_batches


def limits_for(config: TrainConfig, positions: int) -> PromptLimits:
    """A window is ``[CLS] prompt [SEP] text [SEP]`` within the position table: what is left for the prompt."""
    left = positions - config.text_tokens - 3
    if left < MIN_TEXT_TOKENS:
        raise ConfigError(f"text_tokens: {config.text_tokens} leaves {left} of the base model's {positions} positions "
                          f"for the prompt (need >= {MIN_TEXT_TOKENS}); lower text_tokens")
    return PromptLimits(left, config.max_types)


def check_draws(corpus: Any, encoder: PromptEncoder, limits: PromptLimits) -> None:
    """The longest prompt training may draw for a corpus (every type with its longest phrasing, the negatives
    it has room for) fits the limits, and so does its default prompt; no negative is one of its own types."""
    from dataclasses import replace

    from promptbert.errors import InputError

    own = {t.lower() for t in corpus.types}
    clash = [n for n in corpus.negatives if n.lower() in own]
    if clash:
        raise ConfigError(f"corpora[{corpus.name}].negatives: {clash[0]!r} is one of the corpus's own types")
    labels = {t: max(corpus.phrasings[t], key=len) for t in corpus.types}
    room = max(0, limits.max_types - len(labels))
    labels.update(dict(list(corpus.negatives.items())[:room]))
    try:
        for spec in (replace(corpus.spec, labels=labels), corpus.full_spec()):
            prepare(spec, encoder.tokenizer, encoder.cls_id, encoder.sep_id, limits, f"corpora[{corpus.name}] prompt")
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def train_types(config: TrainConfig, config_path: str | None = None, force: bool = False) -> ModelManifest:
    from .evaluate import evaluate_sentences

    tokenizer, base, base_path = load_base(config, None)
    positions = int(getattr(base.config, "max_position_embeddings", 512))
    limits = limits_for(config, positions)
    corpus_configs = config.corpora or (CorpusConfig(data_dir=config.data_dir, prompt=config.prompt),)
    specials = tokenizer_specials(tokenizer)
    casing = training_casing(config, tokenizer)
    probe = PromptEncoder(tokenizer.backend_tokenizer, "", positions, config.stride, specials, text_tokens=config.text_tokens,
                          casing=casing)
    corpora = [load_corpus(c, i, config, probe) for i, c in enumerate(corpus_configs)]
    names = [c.name for c in corpora]
    if len(set(names)) != len(names):
        raise ConfigError(f"corpora: two corpora are named alike ({', '.join(names)}); give each a name")
    for c in corpora:  # a prompt the collator may draw must fit: a failure hours into training is no use
        check_draws(c, probe, limits)
    default = corpora[0].full_spec()
    default_text, _ = render_typed(default)
    encoder = PromptEncoder(tokenizer.backend_tokenizer, default_text, positions, config.stride, specials,
                            text_tokens=config.text_tokens, casing=casing)
    model = TypedTagger(base, casing=casing)
    if (Path(base_path) / HEAD_WEIGHTS).is_file():  # a types model folder as the base: its head too (fine-tuning it)
        model.load_head(Path(base_path))
        log.info("base model %s: its label-semantic head is fine-tuned too", base_path)
    batches = make_batches(corpora, config.batch_size, config.seed)
    device, precision = device_and_precision(config)
    for c in corpora:
        log.info("corpus %s: %d windows, types %s", c.name, len(c.rows), ", ".join(c.types))

    with atomic_dir(config.output_dir, force=force) as out:
        work = out / "_trainer"
        args = training_args(config, out, device, precision, per_device_train_batch_size=1, group_by_length=False,
                             remove_unused_columns=False)
        callbacks, budget = training_callbacks(config)
        # eval_dataset: the Trainer wants one to evaluate at all; TypedTrainer.evaluate scores the corpora instead
        trainer = TypedTrainer(model=model, args=args, train_dataset=batches, eval_dataset=batches[:1],
                               data_collator=BatchCollator(corpora, PromptDraws(config, config.seed), encoder, limits),
                               callbacks=callbacks, corpora=corpora, encoder=encoder, limits=limits)
        run = run_trainer(trainer, config, model.base)
        tokens = sum(len(r["input_ids"]) for c in corpora for r in c.rows)

        model.save(out)
        tokenizer.save_pretrained(str(out))
        default_labels = LabelMap.from_types(tuple(default.labels))
        default_labels.save(out / C.LABELS)
        (out / C.PROMPT_TEXT).write_text(default_text, encoding="utf-8")
        cfg.dump_yaml(default, out / C.PROMPT_SPEC)
        cfg.dump_yaml(config, out / C.TRAIN_CONFIG)

        model.eval()
        metrics: dict[str, Any] = {"corpora": {}}
        for c in corpora:
            tagger = corpus_tagger(model, encoder, c, limits)
            per = {"dev": evaluate_sentences(tagger, c.dev)}
            if c.test:
                per["test"] = evaluate_sentences(tagger, c.test)
            metrics["corpora"][c.name] = per
        metrics.update(metrics["corpora"][corpora[0].name])  # dev/test: the default prompt's corpus
        write_json(out / C.METRICS, metrics)
        shutil.rmtree(work, ignore_errors=True)
        summary = {split: {"f1": m["micro avg"]["f1-score"], "token_accuracy": m["token_accuracy"]}
                   for split, m in metrics.items() if split in ("dev", "test")}
        for name, per in metrics["corpora"].items():
            for split, m in per.items():
                summary[f"{split}:{name}"] = {"f1": m["micro avg"]["f1-score"], "token_accuracy": m["token_accuracy"]}
        manifest = ModelManifest(
            created=now(),
            versions=versions(),
            base_model=config.base_model,
            base_model_path=base_path,
            data_files={str(p): file_sha256(p) for c in corpora for p in c.files},
            prompt=PromptInfo("spec", str(corpus_configs[0].prompt or config.prompt), fingerprint(default_text),
                              len(encoder.prompt_ids)),
            labels=list(default_labels.labels),
            encoding=EncodingInfo(positions, config.stride, C.WORD_SPLITTER, encoder.text_type, "isolated",
                                  len(encoder.head_ids), head="types", text_tokens=config.text_tokens,
                                  max_prompt_tokens=limits.max_prompt_tokens, max_types=limits.max_types,
                                  casing=casing),
            config=cfg.to_dict(config),
            config_path=config_path,
            training=run.record(device, precision, tokens, budget, corpora={
                c.name: {"windows": len(c.rows), "types": list(c.types), "weight": c.weight} for c in corpora},
                train_windows=sum(len(c.rows) for c in corpora)),
            metrics=summary,
        )
        manifest.write(out)
    return manifest

