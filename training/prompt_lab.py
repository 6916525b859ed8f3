"""Prompt lab: does *this* prompt help, by how much, at what serving cost?

    promptbert prompts compare --config configs/conll2003.yaml --prompts prompts/conll2003.yaml prompts/conll2003_full.yaml \
        --train-sizes 100,500 --seeds 3 --steps 150 --dev-limit 1000 --out runs/lab

Every prompt is trained alongside two controls under the same data, seeds and
step budget: no prompt, and a same-length prefix of unrelated words (one per
prompt). A prompt's value is what it adds over its same-length control.
"""

from __future__ import annotations

import csv
import logging
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from promptbert import config as cfg
from promptbert.data import load_split
from promptbert.encoding import plain_tokenizer
from promptbert.errors import ConfigError
from promptbert.manifest import now, write_json
from promptbert.prompt import MIN_TEXT_TOKENS, LABELS_PLACEHOLDER, PromptSpec, render, resolve

from .config import TrainConfig
from .train import base_tokenizer

log = logging.getLogger("promptbert")


def arms_for(prompts: list[str]) -> list[tuple[str, str]]:
    """(label, prompt setting): no prompt, then each prompt followed by its same-length control."""
    arms = [("none", "none")]
    for p in prompts:
        stem = Path(p).stem
        arms.append((stem, p))
        arms.append((f"control({stem})", f"control:{p}"))
    return arms


def measure_cost(config: TrainConfig, settings: list[str], sentences: int = 200) -> dict[str, float]:
    """Seconds to tag the same dev sentences with each prompt (batch 32, sorted), relative to no prompt.

    Cost depends on sequence length, not on weights, so the base model with a fresh head is enough.
    """
    from promptbert.labels import LabelMap

    from .evaluate import torch_pipeline
    from .train import load_base, make_encoder

    labels = LabelMap.from_types(config.entity_types)
    tokenizer, model, _ = load_base(config, labels)
    model.eval()
    dev = load_split(config.data_dir, "dev", sentences)
    seconds = {}
    for setting in settings:
        prompt = resolve(setting, config.entity_types, tokenizer.backend_tokenizer)
        # The plain HF model on whole windows: no word-shape input (its cost is not the prompt's anyway).
        encoder = make_encoder(tokenizer, prompt, replace(config, casing="never"))
        pipe = torch_pipeline(model, encoder, labels, max_batch_items=32)
        pipe.word_tags([dev[0].words])
        t0 = time.perf_counter()
        pipe.word_tags([s.words for s in dev])
        seconds[setting] = time.perf_counter() - t0
    base = seconds.get("none") or min(seconds.values())
    return {k: v / base for k, v in seconds.items()}


def train_arm(config: TrainConfig, setting: str, size: int, seed: int, steps: int, dev_limit: int, work: Path) -> dict[str, Any]:
    from .train import train

    run = replace(config, prompt=setting, train_limit=size, seed=config.seed + seed, control_seed=seed, max_steps=steps,
                  dev_limit=dev_limit, eval_test=False, early_stopping_patience=0, report_to=("none",), progress=False,
                  time_budget_minutes=0.0, output_dir=str(work / "model"))
    t0 = time.perf_counter()
    manifest = train(run, force=True)
    shutil.rmtree(work / "model", ignore_errors=True)
    return {"dev_f1": manifest.metrics["dev"]["f1"], "prompt_tokens": manifest.prompt.tokens,
            "fingerprint": manifest.prompt.fingerprint, "seconds": time.perf_counter() - t0}


def compare(config: TrainConfig, prompts: list[str], sizes: list[int], seeds: int, steps: int, dev_limit: int,
            out: Path, say: Any = log.info) -> dict[str, Any]:
    """Train every arm at every size and seed; write results.json, results.csv and f1_vs_size.png."""
    if not prompts:
        raise ConfigError("--prompts: give at least one prompt YAML")
    try:  # the plot is drawn last: a missing extra must fail before hours of training, not after
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("prompts compare draws its plot with matplotlib: pip install 'promptbert[lab]'") from None
    for p in prompts:
        PromptSpec.from_yaml(p)  # fail before hours of training, not after
    arms = arms_for(prompts)
    out.mkdir(parents=True, exist_ok=True)
    cost = measure_cost(config, [s for _, s in arms])
    rows = []
    for size in sizes:
        for seed in range(seeds):
            for label, setting in arms:
                r = train_arm(config, setting, size, seed, steps, dev_limit, out / "_work")
                r.update({"arm": label, "setting": setting, "train_size": size or "all", "seed": seed,
                          "cost_vs_none": cost[setting]})
                rows.append(r)
                say(f"size {size or 'all':>5}  seed {seed}  {label:<28} dev F1 {r['dev_f1']:.4f}  "
                    f"{r['prompt_tokens']:>4} tokens  {r['seconds']:.0f}s")
    summary = summarize(rows)
    result = {"date": now(), "config": cfg.to_dict(config), "prompts": prompts, "train_sizes": sizes, "seeds": seeds,
              "budget": {"steps": steps, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                         "dev_limit": dev_limit}, "runs": rows, "summary": summary}
    write_json(out / "results.json", result)
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["arm", "train_size", "seed", "dev_f1", "prompt_tokens", "cost_vs_none", "seconds", "setting", "fingerprint"])
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in w.fieldnames})
    plot(summary, out / "f1_vs_size.png", steps)
    return result


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread of dev F1 per (arm, size), with the gain over the arm's same-length control."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["train_size"]), []).append(r)
    out = []
    for (arm, size), rs in groups.items():
        f1s = [r["dev_f1"] for r in rs]
        out.append({"arm": arm, "train_size": size, "runs": len(rs), "f1_mean": statistics.fmean(f1s),
                    "f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0, "f1_min": min(f1s), "f1_max": max(f1s),
                    "prompt_tokens": rs[0]["prompt_tokens"], "cost_vs_none": rs[0]["cost_vs_none"]})
    by_key = {(s["arm"], s["train_size"]): s for s in out}
    for s in out:
        ctrl = by_key.get((f"control({s['arm']})", s["train_size"]))
        none = by_key.get(("none", s["train_size"]))
        s["gain_vs_control"] = s["f1_mean"] - ctrl["f1_mean"] if ctrl else None
        s["gain_vs_none"] = s["f1_mean"] - none["f1_mean"] if none else None
    return out


def format_table(summary: list[dict[str, Any]]) -> str:
    lines = [f"{'size':>6} {'arm':<30}{'dev F1':>8}{'+-':>7}{'runs':>5}{'tokens':>7}{'cost':>6}{'vs ctrl':>9}{'vs none':>9}"]
    for s in sorted(summary, key=lambda s: (str(s["train_size"]).zfill(8), s["arm"] != "none", s["arm"])):
        vc = f"{s['gain_vs_control'] * 100:+.2f}" if s["gain_vs_control"] is not None else ""
        vn = f"{s['gain_vs_none'] * 100:+.2f}" if s["gain_vs_none"] is not None and s["arm"] != "none" else ""
        lines.append(f"{str(s['train_size']):>6} {s['arm']:<30}{s['f1_mean']:8.4f}{s['f1_std']:7.4f}{s['runs']:5d}"
                     f"{s['prompt_tokens']:7d}{s['cost_vs_none']:6.2f}{vc:>9}{vn:>9}")
    lines.append("vs ctrl / vs none: dev F1 points over the same-length control / over no prompt; cost: inference time vs no prompt")
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    arms = sorted({s["arm"] for s in summary})
    sizes = sorted({s["train_size"] for s in summary}, key=lambda v: float("inf") if v == "all" else v)
    xs = {v: i for i, v in enumerate(sizes)}
    for arm in arms:
        pts = sorted((xs[s["train_size"]], s["f1_mean"], s["f1_std"]) for s in summary if s["arm"] == arm)
        style = "--" if arm.startswith("control") else (":" if arm == "none" else "-")
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], label=arm, linestyle=style,
                    marker="o", capsize=3)
    ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_xlabel("training sentences")
    ax.set_ylabel("dev entity F1")
    ax.set_title(f"Prompt vs controls ({steps} steps per run; mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- render / lint ---------------------------------------------------------------------------


def tokenizer_for(base_model: str) -> Any:
    """The tokenizer that counts a prompt's tokens, with no special tokens, truncation or padding added."""
    return plain_tokenizer(base_tokenizer(base_model).backend_tokenizer)


DEFAULT_TYPES = ("PER", "ORG", "LOC", "MISC")


def lint(path: str, entity_types: tuple[str, ...], max_length: int, tokenizer: Any) -> tuple[list[str], str, int]:
    """Problems of a prompt file (empty list: clean), its rendered text and token count. No
    ``entity_types``: the prompt's own labels (else the CoNLL four)."""
    spec = PromptSpec.from_yaml(path)
    entity_types = entity_types or tuple(spec.labels) or DEFAULT_TYPES
    text = render(spec, entity_types)
    n = len(tokenizer.encode(text, add_special_tokens=False).ids)
    problems = []
    left = max_length - n - 3
    if left < MIN_TEXT_TOKENS:
        problems.append(f"too long: {n} tokens leave {left} of max_length {max_length} for the text (need >= {MIN_TEXT_TOKENS})")
    missing = [t for t in entity_types if t not in text]
    if missing:
        problems.append(f"labels not mentioned: {', '.join(missing)} (add {LABELS_PLACEHOLDER} to the task)")
    extra = [t for t in spec.labels if t not in entity_types]
    if extra:
        problems.append(f"label descriptions for types the model does not have: {', '.join(extra)}")
    return problems + spec.empty_parts(), text, n


# ---- optimize ----------------------------------------------------------------------------------


def variants(spec: PromptSpec) -> list[tuple[str, PromptSpec]]:
    """Single edits of a spec: drop a part, fewer examples, shorter role, reversed requirements, no label descriptions."""
    out: list[tuple[str, PromptSpec]] = []
    d = spec.details
    if spec.requirements:
        out.append(("drop requirements", replace(spec, requirements=())))
        if len(spec.requirements) > 1:
            out.append(("reverse requirements", replace(spec, requirements=tuple(reversed(spec.requirements)))))
    for part in ("steps", "examples", "tips"):
        if getattr(d, part):
            out.append((f"drop details.{part}", replace(spec, details=replace(d, **{part: ()}))))
    if len(d.examples) > 1:
        out.append(("one example", replace(spec, details=replace(d, examples=d.examples[:1]))))
    short_role = " ".join(spec.role.split()[:4]).rstrip(".,") + "."
    if short_role != spec.role:
        out.append(("shorter role", replace(spec, role=short_role)))
    if spec.labels:
        out.append(("no label descriptions", replace(spec, labels={})))
    return out


def optimize(config: TrainConfig, base_path: str, size: int, steps: int, seeds: int, dev_limit: int, budget: int,
             tolerance: float, out_yaml: Path, work: Path, say: Any = log.info) -> dict[str, Any]:
    """Greedy search: keep the cheapest variant whose dev F1 is within ``tolerance`` points of the best seen.

    ``budget`` caps the number of trainings (seeds x variants). Rounds repeat from the
    current winner until no edit helps or the budget is spent.
    """
    work.mkdir(parents=True, exist_ok=True)
    tok = tokenizer_for(config.base_model)

    def score(spec: PromptSpec) -> tuple[float, int]:
        path = work / "candidate.yaml"
        cfg.dump_yaml(spec, path)
        f1s = [train_arm(config, str(path), size, s, steps, dev_limit, work)["dev_f1"] for s in range(seeds)]
        return statistics.fmean(f1s), len(tok.encode(render(spec, config.entity_types), add_special_tokens=False).ids)

    base = PromptSpec.from_yaml(base_path)
    used = seeds
    best_f1, best_tokens = score(base)
    history = [{"edit": "base", "dev_f1": best_f1, "tokens": best_tokens}]
    say(f"base: dev F1 {best_f1:.4f}, {best_tokens} tokens")
    current, top_f1 = base, best_f1
    while used + seeds <= budget:
        improved = False
        for edit, cand in variants(current):
            if used + seeds > budget:
                break
            f1, n = score(cand)
            used += seeds
            history.append({"edit": edit, "dev_f1": f1, "tokens": n})
            say(f"  {edit:<24} dev F1 {f1:.4f}, {n} tokens")
            top_f1 = max(top_f1, f1)
            if f1 >= top_f1 - tolerance / 100 and (n < best_tokens or f1 > best_f1 + tolerance / 100):
                current, best_f1, best_tokens, improved = cand, f1, n, True
                break
        if not improved:
            break
    winner = replace(current, name=f"{base.name}-optimized")
    header = (f"# promptbert prompts optimize from {base_path}: dev F1 {best_f1:.4f} with {best_tokens} tokens "
              f"(base {history[0]['dev_f1']:.4f}, {history[0]['tokens']} tokens);\n# train size {size or 'all'}, "
              f"{steps} steps, {seeds} seed(s), dev sentences {dev_limit or 'all'}, {used} trainings, {now()}\n")
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_yaml.with_suffix(".tmp")
    cfg.dump_yaml(winner, tmp)
    tmp.write_text(header + tmp.read_text(encoding="utf-8"), encoding="utf-8")
    tmp.replace(out_yaml)
    result = {"winner": str(out_yaml), "dev_f1": best_f1, "tokens": best_tokens, "history": history, "trainings": used}
    write_json(out_yaml.with_suffix(".json"), result)
    return result
