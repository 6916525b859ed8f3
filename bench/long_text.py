r"""How long one long text takes, in process, as one service worker runs it (one ORT thread).

    python bench/long_text.py --artifact artifacts/conll2003 --data path/to/conll2003 \
        --chars 10000,50000,100000 --out bench/results/long_text.json

The texts are CoNLL test sentences, one a line, concatenated (and repeated) until each length is
reached. Each length is tagged ``--repeats`` times; the table gives the median and the slowest.
This is what sizes ``PROMPTBERT_MAX_CHARS`` against ``PROMPTBERT_TIMEOUT_S``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from promptbert.data import load_split
from promptbert.errors import PromptBertError
from promptbert.manifest import now, versions, write_json
from promptbert.tagger import Tagger


def document_text(sentences: list, chars: int) -> str:
    """CoNLL test sentences one a line, repeated until ``chars`` characters."""
    if not sentences:
        raise PromptBertError("the test split has no sentences")
    lines: list[str] = []
    size = 0
    while size < chars:
        for s in sentences:
            line = " ".join(s.words)
            lines.append(line)
            size += len(line) + 1
            if size >= chars:
                break
    return "\n".join(lines)[:chars]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True)
    p.add_argument("--data", required=True, help="CoNLL folder (its test split is the text)")
    p.add_argument("--chars", default="10000,50000,100000")
    p.add_argument("--variant", default="auto")
    p.add_argument("--threads", type=int, default=1, help="ORT threads (a service worker on a multi-core CPU: 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/results/long_text.json")
    a = p.parse_args()
    try:
        lengths = [int(x) for x in a.chars.split(",") if x.strip()]
    except ValueError:
        print(f"promptbert: --chars: expected comma-separated integers, got {a.chars!r}", file=sys.stderr)
        return 2
    try:
        tagger = Tagger.from_pretrained(a.artifact, a.variant, threads=a.threads, spinning=False, max_batch_items=None)
        sentences = load_split(a.data, "test")
        rows = []
        for n in lengths:
            text = document_text(sentences, n)
            tagger.predict(text)  # warm-up: word pieces cached, sessions sized
            times = []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                ents = tagger.predict(text)
                times.append(time.perf_counter() - t0)
            rows.append({"chars": len(text), "words": len(text.split()), "entities": len(ents),
                         "median_s": statistics.median(times), "max_s": max(times)})
    except PromptBertError as exc:
        print(f"promptbert: {exc}", file=sys.stderr)
        return 2
    print(f"{tagger.variant} on {tagger.providers}, {a.threads} ORT thread(s)")
    print("| characters | words | entities | median s | slowest s |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['chars']:,} | {r['words']:,} | {r['entities']:,} | {r['median_s']:.2f} | {r['max_s']:.2f} |")
    write_json(a.out, {"created": now(), "versions": versions(), "artifact": a.artifact, "variant": tagger.variant,
                       "providers": tagger.providers, "threads": a.threads, "results": rows})
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
