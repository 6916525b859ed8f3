"""Out-of-domain F1: models trained on one corpus, scored on others' test splits (types mapped onto theirs).

    python bench/out_of_domain.py --model before=artifacts/a --model after=artifacts/b \
        --corpus conll=path/to/conll2003 --corpus conll-lowercase=path/to/conll2003:lower \
        --corpus sec=path/to/sec_filings --corpus wnut=path/to/wnut17:person=PER,location=LOC \
        --out bench/results/out_of_domain.json

A corpus spec is ``NAME=DIR[:MAP][:lower]``. ``MAP`` renames the corpus's types onto the model's
(``person=PER,location=LOC``): gold entities of unmapped types count as O, and so do predicted
entities of types no mapping names. ``lower`` lowercases every word (text that carries no case).
The models run one after another on the same sentences; prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert.data import Sentence, load_split  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402


def parse_corpus(spec: str) -> tuple[str, str, dict[str, str] | None, bool]:
    name, _, rest = spec.partition("=")
    parts = rest.split(":")
    folder, mapping, lower = parts[0], None, False
    for p in parts[1:]:
        if p == "lower":
            lower = True
        elif p:
            mapping = dict(pair.split("=", 1) for pair in p.split(","))
    if not name or not folder:
        raise SystemExit(f"--corpus: expected NAME=DIR[:MAP][:lower], got {spec!r}")
    return name, folder, mapping, lower


def mapped(sentences: list[Sentence], mapping: dict[str, str] | None, lower: bool) -> list[Sentence]:
    out = []
    for s in sentences:
        tags = s.tags
        if mapping is not None:
            tags = tuple(t if t == "O" else (f"{t[:2]}{mapping[t[2:]]}" if t[2:] in mapping else "O") for t in s.tags)
        words = tuple(w.lower() for w in s.words) if lower else s.words
        out.append(replace(s, words=words, tags=tags))
    return out


def score(tagger: Any, sentences: list[Sentence], keep: set[str] | None) -> dict[str, Any]:
    from promptbert.training.evaluate import report

    contexts = tagger.pipeline.encoder.document_contexts(sentences)
    pred = [[t if keep is None or t == "O" or t[2:] in keep else "O" for t, _ in row]
            for row in tagger.word_tags([s.words for s in sentences], None, contexts)]
    return report([list(s.tags) for s in sentences], pred)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH: an artifact or a model folder")
    ap.add_argument("--corpus", action="append", required=True, help="NAME=DIR[:MAP][:lower]")
    ap.add_argument("--split", default="test")
    ap.add_argument("--variant", default="auto", help="ONNX variant of artifacts (model folders run in PyTorch)")
    ap.add_argument("--out", default="bench/results/out_of_domain.json")
    a = ap.parse_args(argv)

    from promptbert.tagger import Tagger

    corpora = {}
    for spec in a.corpus:
        name, folder, mapping, lower = parse_corpus(spec)
        corpora[name] = (mapped(load_split(folder, a.split), mapping, lower), set(mapping.values()) if mapping else None)
    results: dict[str, dict[str, Any]] = {}
    for spec in a.model:
        name, _, path = spec.partition("=")
        tagger = Tagger.from_pretrained(path, a.variant, "cpu")
        results[name] = {"path": path, "variant": tagger.variant}
        for cname, (sents, keep) in corpora.items():
            rep = score(tagger, sents, keep)
            types = sorted(k for k in rep if not k.endswith("avg") and isinstance(rep[k], dict) and "support" in rep[k])
            results[name][cname] = {"f1": rep["micro avg"]["f1-score"], **{t: rep[t]["f1-score"] for t in types}}
    names = list(corpora)
    print(f"{'model':<12}" + "".join(f"{n:>18}" for n in names))
    for m, r in results.items():
        print(f"{m:<12}" + "".join(f"{r[n]['f1']:>18.4f}" for n in names))
    for n in names:
        per = sorted(k for k in next(iter(results.values()))[n] if k != "f1")
        if len(per) > 1:
            print(f"\n{n} per type: " + "  ".join(f"{m}: " + ", ".join(f"{t} {results[m][n][t]:.4f}" for t in per)
                                                for m in results))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, {"created": now(), "versions": versions(), "split": a.split, "argv": sys.argv[1:], "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
