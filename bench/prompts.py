r"""What a request-time prompt costs a types model: prompt length, distinct prompts, a new prompt.

    python bench/prompts.py --artifact artifacts/multi --data path/to/conll2003 --split test \
        --lengths 20,64,128,256 --clients 8,32 --out bench/results/prompts.json

1. In process (int8 by default, 1 ORT thread): sentences/s on the split under prompts of about
   ``--lengths`` tokens -- the artifact's default prompt's types and descriptions, shortened to a
   bare role and task or lengthened with worked examples -- and under the default prompt, beside a
   fixed-head artifact (``--fixed``) and another export of the same model (``--beside``, under the
   same prompts), interleaved over ``--rounds`` rounds (this machine drifts), each prompt's
   encoding cached as in serving; and the time to encode each prompt once (what a
   request bringing a new prompt adds).
2. Through the service (a real ``bentoml serve``): closed-loop clients sending one sentence per
   /tag request under no prompt (the default), one explicit prompt, and 16 distinct prompts in
   rotation, interleaved; and the latency of a /tag_text whose prompt is new against one whose
   prompt is cached.
3. In process, texts under one prompt against 16 prompts mixed in the same calls (``Tagger.predict_each``).
Prints tables, writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert.data import load_split  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402
from promptbert.prompt import PromptDetails, PromptSpec  # noqa: E402

EXAMPLES = [
    "Angela Merkel (PER) met officials of the European Union (ORG) in Brussels (LOC).",
    "The Dutch (MISC) team Ajax (ORG) won in Amsterdam (LOC) on Sunday.",
    "Shares of Apple (ORG) rose after Tim Cook (PER) spoke in California (LOC).",
    "The World Cup (MISC) final was played in Berlin (LOC) before 70,000 fans.",
    "Reuters (ORG) reported that Vladimir Putin (PER) visited Beijing (LOC).",
    "Italian (MISC) striker Roberto Baggio (PER) joined Juventus (ORG) in Turin (LOC).",
]


def bare_prompt(default: PromptSpec) -> PromptSpec:
    """The default prompt's types and descriptions under a bare role and task: the shortest prompt."""
    return PromptSpec(role="You tag names.", task="Label names as {labels}.", labels=dict(default.labels))


def prompt_of_length(default: PromptSpec, target: int, count: Any) -> PromptSpec:
    """``bare_prompt``, with worked examples added until about ``target`` tokens (``count(spec) -> tokens``)."""
    bare = bare_prompt(default)
    if count(bare) >= target:
        return bare
    spec, examples = bare, []
    i = 0
    while count(spec) < target:
        examples.append(EXAMPLES[i % len(EXAMPLES)])
        i += 1
        spec = dataclasses.replace(bare, details=PromptDetails(examples=tuple(examples)))
        if count(spec) > target and len(examples) > 1:  # overshoot: trim the last example to words that fit
            words = examples[-1].split()
            while words and count(spec) > target:
                words.pop()
                examples[-1] = " ".join(words) or "."
                spec = dataclasses.replace(bare, details=PromptDetails(examples=tuple(examples)))
            break
    return spec


def in_process(a: argparse.Namespace, sentences: list[tuple[str, ...]]) -> dict[str, Any]:
    from promptbert.tagger import Tagger

    tagger = Tagger.from_pretrained(a.artifact, a.variant, "cpu", threads=a.threads or None)
    count = lambda spec: tagger.prepare(spec).tokens  # noqa: E731
    default = tagger.prompted.default_spec
    lengths = [int(x) for x in a.lengths.split(",")]
    specs = {n: prompt_of_length(default, n, count) for n in lengths}
    rows: dict[Any, dict[str, Any]] = {}
    for n, spec in specs.items():
        prepared = tagger.prepare(spec)
        t0 = time.perf_counter()
        for _ in range(5):  # encode cost: the prompt encoder alone, mean of 5
            tagger.prompted.cache.encode(np.asarray([prepared.head_ids]), prepared.type_mask)
        encode_ms = (time.perf_counter() - t0) / 5 * 1000
        rows[n] = {"name": f"about {n} tokens", "tokens": prepared.tokens, "encode_ms": encode_ms, "rates": []}
    views: dict[Any, Any] = {n: tagger.under(spec) for n, spec in specs.items()}
    views["default"] = tagger  # the artifact's own prompt, pre-encoded: a request without a prompt
    rows["default"] = {"name": "default (types)", "tokens": tagger.config.prompt.tokens, "encode_ms": None, "rates": []}
    if a.fixed:  # a fixed-head artifact (prompt baked into the graph) beside it: what a types model costs
        views["fixed"] = Tagger.from_pretrained(a.fixed, a.variant, "cpu", threads=a.threads or None)
        rows["fixed"] = {"name": "fixed-head artifact", "tokens": views["fixed"].config.prompt.tokens,
                         "encode_ms": None, "rates": []}
    if a.beside:  # another export of a types model (e.g. other quantization), under the same prompts
        other = Tagger.from_pretrained(a.beside, a.variant, "cpu", threads=a.threads or None)
        for n, spec in specs.items():  # each against the beside artifact's own shortest prompt
            views[f"beside {n}"] = other.under(spec)
            rows[f"beside {n}"] = {"name": f"beside, about {n} tokens", "tokens": other.prepare(spec).tokens,
                                   "encode_ms": None, "rates": [], "relative_to": f"beside {lengths[0]}"}
    for v in views.values():
        v.word_tags(sentences[:32])  # warm
    arms = list(views)
    for r in range(a.rounds):
        for n in (arms if r % 2 == 0 else arms[::-1]):
            t0 = time.perf_counter()
            views[n].word_tags(sentences)
            rows[n]["rates"].append(len(sentences) / (time.perf_counter() - t0))
    for n in arms:
        rows[n]["sentences_per_s"] = statistics.mean(rows[n]["rates"])
    for n in arms:
        shortest = rows[rows[n].get("relative_to", lengths[0])]
        rows[n]["vs_shortest"] = rows[n]["sentences_per_s"] / shortest["sentences_per_s"]
    print(f"\nin process, {tagger.variant} on {tagger.providers}, {len(sentences)} sentences, {a.rounds} rounds interleaved")
    print(f"{'prompt':>22}{'tokens':>8}{'sentences/s (per round)':>36}{'vs shortest':>13}{'encode ms':>11}")
    for n in arms:
        r = rows[n]
        per = " / ".join(f"{x:.1f}" for x in r["rates"])
        enc = f"{r['encode_ms']:.2f}" if r["encode_ms"] is not None else "-"
        print(f"{r['name']:>22}{r['tokens']:>8}{per:>36}{r['vs_shortest']:>13.2f}{enc:>11}")
    mixed = mixed_prompts(tagger, [" ".join(w) for w in sentences], a.rounds)
    return {"variant": tagger.variant, "providers": tagger.providers, "sentences": len(sentences),
            "rows": {str(k): v for k, v in rows.items()}, "specs": {str(k): v.to_dict() for k, v in specs.items()},
            "mixed": mixed}


def distinct_prompts(default: PromptSpec, n: int = 16) -> list[PromptSpec]:
    """``n`` prompts alike but for their role: distinct encodings of one length (the service arm's too)."""
    base = bare_prompt(default)
    return [dataclasses.replace(base, role=f"You tag names in text number {i}.") for i in range(n)]


def mixed_prompts(tagger: Any, texts: list[str], rounds: int, chunk: int = 8) -> dict[str, Any]:
    """Texts through ``predict_each`` under one prompt against 16 in rotation mixed in the same calls, and
    the 16 prompt by prompt (what a backend that cannot mix does): all texts in one call (bulk), and in
    calls of ``chunk`` texts (what a service batch of small requests is)."""
    prompts = [tagger.prepare(p) for p in distinct_prompts(tagger.prompted.default_spec)]
    for p in prompts:
        tagger.prompted.cache.get(p)  # encoded before the clock starts
    one, rotation = [prompts[0]] * len(texts), [prompts[i % 16] for i in range(len(texts))]
    mixes = tagger.prompted.mixes  # a graph with one encoding per call cannot mix: its arm is left out
    arms = {"1 prompt": (one, mixes), **({"16 prompts, mixed": (rotation, True)} if mixes else {}),
            "16 prompts, one by one": (rotation, False)}
    rates: dict[str, dict[str, list[float]]] = {mode: {k: [] for k in arms} for mode in ("bulk", f"calls of {chunk}")}
    for r in range(rounds):
        for mode, size in (("bulk", len(texts)), (f"calls of {chunk}", chunk)):
            for name in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
                given, tagger.prompted.mixes = arms[name]
                t0 = time.perf_counter()
                for i in range(0, len(texts), size):
                    tagger.predict_each(texts[i : i + size], given[i : i + size])
                rates[mode][name].append(len(texts) / (time.perf_counter() - t0))
    tagger.prompted.mixes = mixes
    print(f"\nin process, {len(texts)} texts through predict_each, texts/s per round (vs 1 prompt)")
    for mode, by_arm in rates.items():
        base = statistics.mean(by_arm["1 prompt"])
        for name, r in by_arm.items():
            print(f"{mode:>12}{name:>26}{' / '.join(f'{x:.1f}' for x in r):>24}{statistics.mean(r) / base:>8.2f}")
    return {"texts": len(texts), "chunk": chunk, "rates": rates, "graph_mixes": mixes}


def service(a: argparse.Namespace, texts: list[str], default: PromptSpec) -> dict[str, Any]:
    from bench.service import load_clients

    from promptbert.launch import ServedArtifact, post_json

    base = bare_prompt(default)  # one explicit prompt
    distinct = distinct_prompts(default)
    arms = {"no prompt": None, "1 prompt": [_body(base)], "16 prompts": [_body(p) for p in distinct]}
    clients = [int(c) for c in a.clients.split(",")]
    env = {f"PROMPTBERT_{k}": v for k, v in (("VARIANT", a.variant),)}
    out: dict[str, Any] = {"arms": list(arms), "clients": {}}
    with ServedArtifact(a.artifact, env=env) as url:
        for p in arms["16 prompts"]:  # every prompt encoded once before the clock starts
            post_json(f"{url}/tag_text", {"text": "warm up", "prompt": p})
        for c in clients:
            res: dict[str, list[float]] = {k: [] for k in arms}
            for r in range(a.rounds):
                names = list(arms) if r % 2 == 0 else list(arms)[::-1]
                for name in names:
                    got = load_clients(url, texts, c, 1, arms[name])
                    if got["errors"]:
                        raise SystemExit(f"{name} at {c} clients: {got['errors']} errors")
                    res[name].append(got["sentences_per_s"])
            out["clients"][str(c)] = res
        # The latency a new prompt adds: a /tag_text with a never-seen prompt against the same one again.
        new_ms, cached_ms = [], []
        for i in range(a.new_prompts):
            body = {"text": texts[i % len(texts)], "prompt": _body(dataclasses.replace(base, role=f"Fresh prompt {i}."))}
            t0 = time.perf_counter()
            post_json(f"{url}/tag_text", body)
            new_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            post_json(f"{url}/tag_text", body)
            cached_ms.append((time.perf_counter() - t0) * 1000)
        out["new_prompt_ms"] = {"median": statistics.median(new_ms), "all": new_ms}
        out["cached_prompt_ms"] = {"median": statistics.median(cached_ms), "all": cached_ms}
        out["metadata"] = post_json(f"{url}/metadata", {})
    print(f"\nservice, {out['metadata']['variant']}, {out['metadata']['workers']} workers, 1 sentence per /tag request, "
          f"{len(texts)} sentences per run, {a.rounds} rounds interleaved (sentences/s)")
    print(f"{'clients':>8}" + "".join(f"{name:>30}" for name in arms) + f"{'16 vs 1':>9}")
    for c, res in out["clients"].items():
        cells = "".join(f"{' / '.join(f'{x:.1f}' for x in res[name]):>30}" for name in arms)
        ratio = statistics.mean(res["16 prompts"]) / statistics.mean(res["1 prompt"])
        print(f"{c:>8}{cells}{ratio:>9.2f}")
    print(f"/tag_text with a new prompt: median {out['new_prompt_ms']['median']:.1f} ms; the same prompt again: "
          f"{out['cached_prompt_ms']['median']:.1f} ms ({a.new_prompts} prompts)")
    return out


def _body(spec: PromptSpec) -> dict[str, Any]:
    d = spec.to_dict()
    d.pop("name", None)
    return d


def add_run_args(p: argparse.ArgumentParser, limit: int, lengths: str) -> None:
    """The options every types-model prompt benchmark shares: what runs, on which sentences, under which lengths."""
    p.add_argument("--artifact", required=True, help="a types artifact")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=limit, help="first N sentences (0: all)")
    p.add_argument("--variant", default="int8")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lengths", default=lengths, help="prompt lengths in tokens (about)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p, 0, "20,64,128,256")
    p.add_argument("--fixed", help="a fixed-head artifact to run beside it in process (same data, variant, threads)")
    p.add_argument("--beside", help="another export of the same types model, run under the same prompts in process")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", default="8,32")
    p.add_argument("--service-limit", type=int, default=1000, help="sentences per service run")
    p.add_argument("--new-prompts", type=int, default=10)
    p.add_argument("--skip-service", action="store_true")
    p.add_argument("--skip-in-process", action="store_true")
    p.add_argument("--out", default="bench/results/prompts.json")
    a = p.parse_args()
    sents = load_split(a.data, a.split, a.limit or None)
    result: dict[str, Any] = {"created": now(), "versions": versions(), "command": " ".join(sys.argv),
                              "artifact": a.artifact, "data": a.data, "split": a.split}
    if not a.skip_in_process:
        result["in_process"] = in_process(a, [s.words for s in sents])
    if not a.skip_service:
        from promptbert.runtime import Artifact

        default = Artifact(a.artifact).default_spec()
        texts = [" ".join(s.words) for s in sents[: a.service_limit]]
        result["service"] = service(a, texts, default)
    write_json(Path(a.out), result)
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
