"""The ``promptbert`` command. Library code raises; this is the only place that prints errors.

Every PromptBertError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from promptbert.errors import ConfigError, PromptBertError


def _overrides(items: list[str] | None) -> dict[str, Any]:
    from promptbert.config import parse_override

    return dict(parse_override(i) for i in items or [])


def cmd_train(a: argparse.Namespace) -> int:
    from promptbert.config import load

    from promptbert.training.config import TrainConfig
    from promptbert.training.train import train

    over = _overrides(a.set)
    for key, value in (("data_dir", a.data), ("base_model", a.base_model), ("output_dir", a.output), ("prompt", a.prompt)):
        if value is not None:
            over[key] = value
    if a.config:
        config = load(TrainConfig, a.config, over)
    else:
        from promptbert.config import from_dict

        config = from_dict(TrainConfig, over)
    if a.data is not None and config.corpora:
        raise ConfigError("--data: this config lists corpora, each with its own data_dir; set those instead")
    manifest = train(config, a.config, force=a.force)
    t = manifest.training
    print(f"model folder: {config.output_dir}")
    print(f"trained {t['steps']} steps ({t['epochs']:.2f} epochs) in {t['seconds']:.0f}s on {t['device']} "
          f"({t['precision']}), {t['tokens_per_second']} tokens/s")
    for split, m in manifest.metrics.items():
        print(f"{split}: entity F1 {m['f1']:.4f}  token accuracy {m['token_accuracy']:.4f}")
    return 0


def _types(arg: str | None) -> list[str] | None:
    return [t.strip() for t in arg.split(",") if t.strip()] if arg else None


def _prompt_file(path: str | None) -> Any:
    """A --prompt YAML as a PromptSpec (None: the model's default)."""
    if not path:
        return None
    from promptbert.prompt import PromptSpec, find_file

    return PromptSpec.from_yaml(find_file(path))


def cmd_evaluate(a: argparse.Namespace) -> int:
    from pathlib import Path

    from promptbert import data as D
    from promptbert.errors import InputError
    from promptbert.manifest import write_json
    from promptbert.tagger import Tagger
    from promptbert.training.evaluate import backend_name, evaluate_as_text, evaluate_sentences, format_report

    tagger = Tagger.from_pretrained(a.model, a.variant, split_sentences=not a.whole_text)
    sentences = D.load_split(a.data, a.split, a.limit or None)
    types = _types(a.types)
    if a.prompt or types:  # a types model under another prompt: gold entities of types it does not name become O
        if tagger.prompted is None:
            raise InputError(f"--prompt/--types: {a.model} has a fixed label set (head: fixed); score it on its own "
                             f"types, or evaluate a model trained with head: types")
        tagger = tagger.under(_prompt_file(a.prompt), types)
        sentences = D.only_types(sentences, tagger.entity_types)
    D.check_labels(sentences, tagger.entity_types)
    strategy = a.aggregation or tagger.default_aggregation
    if a.as_text:
        rep = evaluate_as_text(tagger, sentences, strategy, a.as_text)
    else:
        rep = evaluate_sentences(tagger, sentences, strategy)
    backend = backend_name(tagger)
    path = f"as text, {a.as_text}" if a.as_text else "gold words"
    print(format_report(rep, f"{a.model} [{backend}, {strategy}] on {a.data} {a.split}, {path}"))
    out = Path(a.output) if a.output else None
    if out:
        write_json(out, {"model": str(a.model), "backend": backend, "data": str(a.data), "split": a.split,
                         "aggregation": strategy, "as_text": a.as_text or False, "report": rep})
        print(f"written: {out}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    import time

    from promptbert.config import from_dict, load

    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export

    over = _overrides(a.set)
    if a.variants:
        over["variants"] = [v.strip() for v in a.variants.split(",") if v.strip()]
    if a.data:
        over["data_dir"] = a.data
    if a.allow_degraded:
        over["allow_degraded"] = True
    config = load(ExportConfig, a.config, over) if a.config else from_dict(ExportConfig, over)
    t0 = time.perf_counter()
    manifest = export(a.model, a.output, config, force=a.force, report=print)
    print(f"artifact: {a.output}  ({time.perf_counter() - t0:.0f}s)")
    for name, v in manifest.variants.items():
        m = manifest.metrics.get(name, {})
        score = "  ".join(f"{k} {val:.4f}" for k, val in m.items())
        flag = "" if v.get("passed", True) else "  [FAILED GATE, shipped with --allow-degraded]"
        print(f"  {name:<10}{v['file']:<24}{v['bytes'] / 1e6:7.1f} MB  {score}{flag}")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from promptbert.errors import InputError
    from promptbert.tagger import Tagger

    texts = list(a.texts)
    if a.file:
        try:
            with open(a.file, encoding="utf-8") as f:
                texts.extend(line.rstrip("\n") for line in f if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--file {a.file}: cannot read it as UTF-8 text ({exc.__class__.__name__}: "
                             f"{getattr(exc, 'strerror', None) or exc})") from None
    if not texts:
        raise InputError("give at least one text (arguments or --file)")
    tagger = Tagger.from_pretrained(a.artifact, a.variant, a.device, split_sentences=not a.whole_text)
    results = tagger.predict(texts, a.aggregation, a.min_score, _types(a.types), _prompt_file(a.prompt))
    if a.json:
        print(json.dumps(results, ensure_ascii=False))
        return 0
    print(f"# {tagger.variant} on {', '.join(tagger.providers)}")
    for text, ents in zip(texts, results):
        print(text)
        for e in ents:
            print(f"  {e['entity_group']:<6}{e['score']:.3f}  [{e['start']}:{e['end']}]  {e['word']}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from promptbert.launch import ROOT

    from .demo import run_demo

    over = _overrides(a.set)
    if a.base_model:
        over["base_model"] = a.base_model
    if a.budget is not None:
        over["time_budget_minutes"] = a.budget
    run_demo(a.config or ROOT / "configs" / "demo.yaml", over, a.artifact or ROOT / "artifacts" / "demo", a.port, a.once)
    return 0


def _lab_config(a: argparse.Namespace) -> Any:
    from promptbert.config import from_dict, load

    from promptbert.training.config import TrainConfig

    over = _overrides(getattr(a, "set", None))
    if getattr(a, "data", None):
        over["data_dir"] = a.data
    return load(TrainConfig, a.config, over) if a.config else from_dict(TrainConfig, over)


def _sizes(text: str, flag: str = "--train-sizes") -> list[int]:
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not parts or not all(s == "all" or s.isdigit() for s in parts):
        raise ConfigError(f"{flag}: expected numbers or 'all', got {text!r}")
    return [0 if s == "all" else int(s) for s in parts]


def _check_against(a: argparse.Namespace) -> int:
    """render/lint --model: the prompt file read as a request's prompt and checked by the code that answers a client's
    bad prompt with a 400 (an InputError here: exit 2), with that model's tokenizer and limits."""
    from promptbert.config import read_yaml
    from promptbert.tagger import Tagger

    tagger = Tagger.from_pretrained(a.model)
    prepared = tagger.prepare(read_yaml(a.file), _types(a.types))  # a fixed-head model is refused here, as in a request
    limits = tagger.prompted.limits  # type: ignore[union-attr]
    print(prepared.text)
    print(f"--- {prepared.tokens} tokens, {len(prepared.types)} types ({a.model} takes up to "
          f"{limits.max_prompt_tokens} tokens and {limits.max_types} types)")
    if a.action == "render":
        return 0
    problems = prepared.spec.empty_parts()
    for p in problems:
        print(f"problem: {p}")
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_prompts(a: argparse.Namespace) -> int:
    from pathlib import Path

    if a.action == "obey":
        return _obey(a)
    if a.action in ("render", "lint") and a.model:
        return _check_against(a)
    from promptbert.training import prompt_lab as lab

    if a.action in ("render", "lint"):
        types = tuple(t.strip() for t in a.types.split(",") if t.strip()) if a.types else ()
        tok = lab.tokenizer_for(a.base_model)
        problems, text, n = lab.lint(a.file, types, a.max_length, tok)
        print(text)
        # A types model renders and limits a prompt its own way (a Types: line, max_prompt_tokens): --model shows that.
        print(f"--- {n} tokens as a fixed-head model takes it (max_length {a.max_length} leaves {a.max_length - n - 3} "
              f"for the text); for a types model, add --model ART")
        if a.action == "lint":
            for p in problems:
                print(f"problem: {p}")
            print("ok" if not problems else f"{len(problems)} problem(s)")
            return 1 if problems else 0
        return 0
    config = _lab_config(a)
    if a.action == "compare":
        result = lab.compare(config, a.prompts, _sizes(a.train_sizes), a.seeds, a.steps, a.dev_limit, Path(a.out), say=print)
        print(lab.format_table(result["summary"]))
        print(f"written: {a.out}/results.json, results.csv, f1_vs_size.png")
        return 0
    sizes = _sizes(a.train_size, "--train-size")
    if len(sizes) != 1:
        raise ConfigError(f"--train-size: one size, got {a.train_size!r}")
    result = lab.optimize(config, a.prompt, sizes[0], a.steps, a.seeds, a.dev_limit, a.budget, a.tolerance,
                          Path(a.out), Path(a.out).parent / "_optimize_work", say=print)
    print(f"winner: {result['winner']}  dev F1 {result['dev_f1']:.4f}, {result['tokens']} tokens, {result['trainings']} trainings")
    return 0


def _obey(a: argparse.Namespace) -> int:
    from pathlib import Path

    from promptbert import data as D
    from promptbert.errors import InputError
    from promptbert.manifest import write_json
    from promptbert.tagger import Tagger
    from promptbert.training.evaluate import obedience

    tagger = Tagger.from_pretrained(a.model, a.variant)
    if tagger.prompted is None:
        raise InputError(f"{a.model}: a fixed-head model tags its trained types whatever the prompt (obey needs head: types)")
    if a.prompt:
        tagger = tagger.under(_prompt_file(a.prompt))
    sentences = D.only_types(D.load_split(a.data, a.split, a.limit or None), tagger.entity_types)
    rep = obedience(tagger, sentences, a.draws, a.seed)
    print(f"{a.model} on {a.data} {a.split} ({rep['sentences']} sentences): all {len(rep['types'])} types, F1 {rep['f1_full']:.4f}")
    print(f"{'prompt names':<48}{'F1':>8}{'F1 full':>9}{'delta':>8}{'P':>8}{'P full':>8}{'R':>8}{'R full':>8}{'unnamed':>9}")
    for r in rep["draws"]:
        print(f"{', '.join(r['types'])[:46]:<48}{r['f1']:>8.4f}{r['f1_full_prompt']:>9.4f}"
              f"{(r['f1'] - r['f1_full_prompt']) * 100:>+8.2f}{r['precision']:>8.4f}{r['precision_full_prompt']:>8.4f}"
              f"{r['recall']:>8.4f}{r['recall_full_prompt']:>8.4f}{r['unnamed_entities']:>9}")
    if a.output:
        write_json(Path(a.output), {"model": str(a.model), "data": str(a.data), "split": a.split, **rep})
        print(f"written: {a.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptbert", description="Prompt-conditioned BERT NER: train, export, serve, load-test.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune on a CoNLL corpus and write a model folder")
    t.add_argument("--config", help="TrainConfig YAML (e.g. configs/conll2003.yaml)")
    t.add_argument("--data", help="CoNLL folder (train/dev/test files); overrides data_dir")
    t.add_argument("--base-model", help="'embedded', a local folder or a Hugging Face id")
    t.add_argument("--output", help="model folder to write; overrides output_dir")
    t.add_argument("--prompt", help="prompt YAML, 'none' or 'control:<yaml>'")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any TrainConfig field (repeatable)")
    t.add_argument("--force", action="store_true", help="replace an existing output folder")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="seqeval report of a model folder or an artifact on a split")
    e.add_argument("model", help="model folder (promptbert train) or artifact folder (promptbert export)")
    e.add_argument("--data", required=True, help="CoNLL folder")
    e.add_argument("--split", default="test", help="train, dev or test")
    e.add_argument("--variant", default="auto", help="artifact variant: auto, fp32, optimized, int8, fp16")
    e.add_argument("--aggregation", help="word aggregation: first, average, max (default: an artifact's best on dev, as served)")
    e.add_argument("--limit", type=int, default=0, help="first N sentences only")
    e.add_argument("--as-text", nargs="?", const="sentences", choices=["sentences", "documents", "paragraphs", "wrapped"],
                   help="F1 as served: tag raw text (words joined by spaces, split again as the service splits), each "
                        "sentence (default), or each document's sentences one a line (documents) or run together "
                        "(paragraphs), also hard-wrapped at 72 characters (wrapped); entities are mapped back onto "
                        "the gold words")
    e.add_argument("--whole-text", action="store_true", help="with --as-text: tag each text as one sequence, not "
                   "sentence by sentence (the service's PROMPTBERT_SPLIT_SENTENCES=0)")
    e.add_argument("--prompt", help="prompt YAML (types models): score under it, e.g. zero-shot on a new corpus; gold "
                   "entities of types it does not name count as O")
    e.add_argument("--types", help="comma list (types models): score under the prompt naming only these types")
    e.add_argument("--output", help="write the report as JSON here")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="model folder -> ONNX artifact (fp32, optimized, int8, fp16) with parity gates")
    x.add_argument("model", help="model folder written by promptbert train")
    x.add_argument("--output", required=True, help="artifact folder to write")
    x.add_argument("--variants", help="comma list of fp32,optimized,int8,fp16 (fp32 is always written)")
    x.add_argument("--data", help="CoNLL folder whose dev split runs the gates (default: the training data)")
    x.add_argument("--config", help="ExportConfig YAML")
    x.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any ExportConfig field")
    x.add_argument("--allow-degraded", action="store_true", help="ship an int8 variant that failed its gate, flagged")
    x.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("predict", help="entities for texts, from an artifact (ONNX Runtime) or a model folder (PyTorch)")
    r.add_argument("artifact", help="artifact folder (promptbert export) or model folder (promptbert train)")
    r.add_argument("texts", nargs="*", help="texts to tag")
    r.add_argument("--file", help="one text per line")
    r.add_argument("--variant", default="auto", help="auto, fp32, optimized, int8, fp16")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--aggregation", help="simple, first, average, max (default: the artifact's best on dev, as served)")
    r.add_argument("--min-score", type=float, default=0.0)
    r.add_argument("--whole-text", action="store_true",
                   help="tag each text as one sequence, not sentence by sentence (the service's PROMPTBERT_SPLIT_SENTENCES=0)")
    r.add_argument("--types", help="comma list of entity types: a types model is asked for just these, a fixed-head "
                   "model's answer is filtered")
    r.add_argument("--prompt", help="prompt YAML (types models): its labels decide what is tagged")
    r.add_argument("--json", action="store_true", help="print one JSON list (one entity list per text)")
    r.set_defaults(func=cmd_predict)

    d = sub.add_parser("demo", help="the main job: train on the demo corpus, export int8, serve, send a sample request")
    d.add_argument("--config", help="TrainConfig YAML (default configs/demo.yaml)")
    d.add_argument("--base-model", help="'embedded' (default), a folder or a Hugging Face id")
    d.add_argument("--budget", type=float, help="training wall-time budget in minutes")
    d.add_argument("--artifact", help="artifact folder to write (default artifacts/demo)")
    d.add_argument("--port", type=int, default=3000)
    d.add_argument("--once", action="store_true", help="stop the service after the sample request")
    d.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a TrainConfig field")
    d.set_defaults(func=cmd_demo)

    pr = sub.add_parser("prompts", help="prompt lab: render, lint, compare against controls, optimize")
    psub = pr.add_subparsers(dest="action", required=True)
    for name, helptext in (("render", "show the exact text and token count the model sees"),
                           ("lint", "flag problems: too long, labels not mentioned, empty parts (exit 1 if any)")):
        q = psub.add_parser(name, help=helptext)
        q.add_argument("file")
        q.add_argument("--types", help="comma list of entity types (default: the prompt's own labels, else PER,ORG,LOC,MISC; "
                       "with --model: the prompt narrowed to these, as a request's entity_types)")
        q.add_argument("--base-model", default="embedded", help="whose tokenizer counts the tokens (not with --model)")
        q.add_argument("--max-length", type=int, default=192, help="a fixed-head model's window (not with --model)")
        q.add_argument("--model", help="a types model or artifact: check the prompt as that model takes it in a request "
                       "(its tokenizer, its limits)")
        q.set_defaults(func=cmd_prompts)
    ob = psub.add_parser("obey", help="types models: F1 under prompts naming a random half of the types, against "
                         "the full prompt, and entities of unnamed types returned (should be none)")
    ob.add_argument("model", help="artifact or model folder of a types model")
    ob.add_argument("--data", required=True, help="CoNLL folder")
    ob.add_argument("--split", default="test")
    ob.add_argument("--prompt", help="prompt YAML whose types are drawn from (default: the model's)")
    ob.add_argument("--variant", default="auto")
    ob.add_argument("--draws", type=int, default=5)
    ob.add_argument("--seed", type=int, default=0)
    ob.add_argument("--limit", type=int, default=0, help="first N sentences only")
    ob.add_argument("--output", help="write the report as JSON here")
    ob.set_defaults(func=cmd_prompts)
    c = psub.add_parser("compare", help="train each prompt with no-prompt and same-length controls; table, JSON/CSV, PNG")
    c.add_argument("--config", help="TrainConfig YAML (data, base model, learning rate, batch size)")
    c.add_argument("--data", help="CoNLL folder")
    c.add_argument("--prompts", nargs="+", required=True)
    c.add_argument("--train-sizes", default="100,500", help="comma list; 'all' for the whole train split")
    c.add_argument("--seeds", type=int, default=3)
    c.add_argument("--steps", type=int, default=150, help="optimizer steps per run: the budget, equal for every arm")
    c.add_argument("--dev-limit", type=int, default=1000, help="dev sentences scored per run (0: all)")
    c.add_argument("--out", default="runs/prompt_lab")
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.set_defaults(func=cmd_prompts)
    o = psub.add_parser("optimize", help="greedy search over prompt edits for the best dev F1 per token")
    o.add_argument("--config")
    o.add_argument("--data")
    o.add_argument("--prompt", required=True, help="starting prompt YAML")
    o.add_argument("--train-size", default="500")
    o.add_argument("--seeds", type=int, default=1)
    o.add_argument("--steps", type=int, default=150)
    o.add_argument("--dev-limit", type=int, default=1000)
    o.add_argument("--budget", type=int, default=8, help="most trainings in total")
    o.add_argument("--tolerance", type=float, default=0.5, help="F1 points a cheaper prompt may lose and still win")
    o.add_argument("--out", default="runs/prompt_lab/optimized.yaml", help="winner YAML (with its numbers)")
    o.add_argument("--set", action="append", metavar="KEY=VALUE")
    o.set_defaults(func=cmd_prompts)

    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a, extra = parser.parse_known_args(argv)
    if extra and getattr(a, "command", None) == "predict" and not any(x.startswith("-") for x in extra):
        # argparse fills a '*' positional at its first place only: texts given after the options land here
        a.texts = [*a.texts, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(a.func(a) or 0)
    except PromptBertError as exc:
        print(f"promptbert {a.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a stage's extra not installed (a core-only install serves, it does not train)
        print(f"promptbert {a.command}: error: {exc.name} is not installed; this command needs "
              f"pip install 'promptbert[all]'", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user gave that cannot be read or written
        print(f"promptbert {a.command}: error: {exc.strerror or exc}"
              f"{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"promptbert {a.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
