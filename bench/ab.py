"""In-process A/B of artifacts: sentences/s and F1 on the same sentences, arms interleaved round by round.

    python bench/ab.py --arm before=artifacts/a --arm after=artifacts/b --arm ctx32=artifacts/b:context=32 \
        --data path/to/conll2003 --split test --rounds 3 --out bench/results/ab.json

An arm is ``NAME=ARTIFACT[:context=N]``; ``context=N`` tags each sentence with up to N tokens of its
document's neighbours on each side, whatever the artifact was trained with: the cost of document context
on a graph of the same size (its F1 is meaningful only for a model trained with that context). Each
round runs every arm once (order flipped every other round: this machine drifts 10-30% within an hour)
over the whole split in sorted batches of ``--batch``, the way a bulk caller tags a corpus, and once
more one sentence per call (``--single`` sentences). Prints one value per round and the median; writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert.data import load_split  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402


def parse_arm(spec: str) -> tuple[str, str, int | None]:
    name, _, rest = spec.partition("=")
    path, _, opt = rest.partition(":")
    context = None
    if opt:
        key, _, value = opt.partition("=")
        if key != "context" or not value.isdigit():
            raise SystemExit(f"--arm: expected NAME=ARTIFACT[:context=N], got {spec!r}")
        context = int(value)
    if not name or not path:
        raise SystemExit(f"--arm: expected NAME=ARTIFACT[:context=N], got {spec!r}")
    return name, path, context


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", action="append", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (1: as one service worker runs)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--single", type=int, default=300, help="sentences tagged one per call per round (0: skip)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/ab.json")
    a = ap.parse_args(argv)

    from seqeval.metrics import f1_score

    from promptbert.tagger import Tagger

    sentences = load_split(a.data, a.split, a.limit or None)
    words = [list(s.words) for s in sentences]
    gold = [list(s.tags) for s in sentences]
    arms: dict[str, Any] = {}
    for spec in a.arm:
        name, path, context = parse_arm(spec)
        tagger = Tagger.from_pretrained(path, a.variant, "cpu", threads=a.threads, max_batch_items=a.batch)
        if context is not None:
            tagger.pipeline.encoder.context_tokens = context
        encoder = tagger.pipeline.encoder
        arms[name] = {"tagger": tagger, "path": path, "context_tokens": encoder.context_tokens,
                      "contexts": encoder.document_contexts(sentences)}
    rows: dict[str, dict[str, list[float]]] = {n: {"bulk": [], "single": []} for n in arms}
    f1: dict[str, float] = {}
    for r in range(a.rounds):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for name in order:
            arm = arms[name]
            tagger, contexts = arm["tagger"], arm["contexts"]
            t0 = time.perf_counter()
            tags = tagger.word_tags(words, None, contexts)
            rows[name]["bulk"].append(len(words) / (time.perf_counter() - t0))
            f1[name] = float(f1_score(gold, [[t for t, _ in row] for row in tags]))
            if a.single:
                t0 = time.perf_counter()
                for i in range(min(a.single, len(words))):
                    tagger.word_tags([words[i]], None, [contexts[i]] if contexts else None)
                rows[name]["single"].append(min(a.single, len(words)) / (time.perf_counter() - t0))
            print(f"round {r} {name:<12} bulk {rows[name]['bulk'][-1]:8.1f} sent/s"
                  + (f"  one per call {rows[name]['single'][-1]:7.1f} sent/s" if a.single else "")
                  + f"  F1 {f1[name]:.4f}", flush=True)
    first = next(iter(arms))
    print(f"\n{len(words)} sentences, {a.variant}, {a.threads} ORT thread(s), {a.rounds} rounds interleaved (median)")
    print(f"| arm | context tokens | bulk sent/s | vs {first} | one per call sent/s | vs {first} | F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for name, arm in arms.items():
        bulk = statistics.median(rows[name]["bulk"])
        single = statistics.median(rows[name]["single"]) if a.single else None
        base_b = statistics.median(rows[first]["bulk"])
        base_s = statistics.median(rows[first]["single"]) if a.single else None
        summary[name] = {"path": arm["path"], "context_tokens": arm["context_tokens"], "bulk": rows[name]["bulk"],
                         "single": rows[name]["single"], "bulk_median": bulk, "single_median": single, "f1": f1[name]}
        print(f"| {name} | {arm['context_tokens']} | {bulk:.1f} | {bulk / base_b:.2f} | "
              + (f"{single:.1f} | {single / base_s:.2f}" if single else "- | -") + f" | {f1[name]:.4f} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, {"created": now(), "versions": versions(), "argv": sys.argv[1:], "sentences": len(words),
                       "variant": a.variant, "threads": a.threads, "rounds": a.rounds, "arms": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
