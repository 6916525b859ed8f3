r"""Where a long request-time prompt's time goes: ONNX Runtime's per-operator kernel time of a types artifact's
tagger graph under a short and a long prompt.

    python bench/profile_ops.py --artifact artifacts/multi --data path/to/conll2003 --split test --limit 300 \
        --lengths 20,256 --out bench/results/profile_ops.json

The tagger graph runs in an ORT session with profiling on, as the Tagger calls it (same batching, the prompt's
encoding cached), ``--rounds`` passes per prompt, interleaved; the prompt encoder is not profiled (it runs once per prompt). Prints, per
operator type, milliseconds of kernel time per pass over the sentences under each prompt and the difference;
writes JSON. Kernel times exclude what ORT spends between kernels, so their sum is under the wall time.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prompts import add_run_args, prompt_of_length  # noqa: E402

from promptbert.data import load_split  # noqa: E402
from promptbert.errors import InputError, PromptBertError  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402


def profiled_tagger(artifact: str, variant: str, threads: int, prefix: str) -> tuple[Any, Any]:
    """A Tagger over the artifact whose tagger-graph session records a profile; returns (tagger, session)."""
    import onnxruntime as ort

    from promptbert.encoding import default_call_cost
    from promptbert.errors import ArtifactError
    from promptbert.runtime import CPU, Artifact, ort_prompted
    from promptbert.tagger import Tagger

    art = Artifact(artifact)
    if art.head != "types":
        raise ArtifactError(f"{artifact}: a types artifact is needed (head: {art.head})")
    name, providers, path, encoder = art.check(variant, "cpu")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = prefix
    session = ort.InferenceSession(str(path), sess_options=opts, providers=[CPU])
    prompted = ort_prompted(session, art.prompt_session([CPU], threads, True), encoder, art.default_spec(),
                            art.limits(), 256, 256 << 20, call_cost=default_call_cost(gpu=False))  # as Artifact.pipeline on CPU
    return Tagger.prompted_by(prompted, art.config, name, [CPU], path), session


def op_times(profile: Path) -> collections.Counter[str]:
    """Kernel microseconds per operator type in an ORT profile."""
    by: collections.Counter[str] = collections.Counter()
    for e in json.loads(profile.read_text(encoding="utf-8")):
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            by[e["args"]["op_name"]] += e["dur"]
    return by


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p, 300, "20,256")
    p.add_argument("--rounds", type=int, default=4, help="passes over the sentences per prompt, interleaved")
    p.add_argument("--top", type=int, default=14, help="operator types listed")
    p.add_argument("--out", default="bench/results/profile_ops.json")
    a = p.parse_args()
    try:
        a.lengths = [int(x) for x in a.lengths.split(",")]
    except ValueError:
        p.error(f"--lengths: expected comma-separated token counts, got {a.lengths!r}")
    try:
        rows = profile(a)
    except PromptBertError as exc:  # a wrong path or a fixed-head artifact: one line, exit 2
        print(f"promptbert: {exc}", file=sys.stderr)
        return 2
    return report(a, rows)


def profile(a: argparse.Namespace) -> dict[int, dict[str, Any]]:
    """Each prompt's row: its tokens, wall and kernel ms, kernel ms per operator type."""
    sentences = [s.words for s in load_split(a.data, a.split, a.limit or None)]
    if not sentences:
        raise InputError(f"--data: {a.data} has no sentences in its {a.split} split")
    rows: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for n in a.lengths:
            tagger, session = profiled_tagger(a.artifact, a.variant, a.threads, str(Path(tmp) / f"p{n}"))
            spec = prompt_of_length(tagger.prompted.default_spec, n, lambda s, t=tagger: t.prepare(s).tokens)
            runs[n] = (tagger.under(spec), session, tagger.prepare(spec).tokens)
            rows[n] = {"tokens": runs[n][2], "wall_ms": 0.0, "sentences": len(sentences), "rounds": a.rounds}
        for r in range(a.rounds):  # interleaved, the order reversed every round: this machine drifts
            for n in (a.lengths if r % 2 == 0 else a.lengths[::-1]):
                t0 = time.perf_counter()
                runs[n][0].word_tags(sentences)
                rows[n]["wall_ms"] += (time.perf_counter() - t0) * 1000 / a.rounds
        for n, (_, session, _) in runs.items():
            by = op_times(Path(session.end_profiling()))
            rows[n]["kernel_ms"] = sum(by.values()) / 1000 / a.rounds
            rows[n]["ops_ms"] = {k: v / 1000 / a.rounds for k, v in by.most_common()}
    return rows


def report(a: argparse.Namespace, rows: dict[int, dict[str, Any]]) -> int:
    lengths = list(rows)
    first, last = rows[lengths[0]], rows[lengths[-1]]
    sentences = first["sentences"]
    print(f"{a.artifact} [{a.variant}, {a.threads} thread(s)], {sentences} sentences of {a.data} {a.split}: "
          f"kernel ms per pass under each prompt (share of its kernel time), mean of {a.rounds} interleaved passes")
    print(f"{'operator':<28}" + "".join(f"{str(rows[n]['tokens']) + ' tokens':>22}" for n in lengths) + f"{'difference':>12}")
    ops = sorted(set().union(*(r["ops_ms"] for r in rows.values())), key=lambda o: -last["ops_ms"].get(o, 0.0))
    for op in ops[: a.top]:
        cells = "".join(f"{r['ops_ms'].get(op, 0.0):>13.1f} ({r['ops_ms'].get(op, 0.0) / r['kernel_ms'] * 100:4.1f}%)"
                        for r in (rows[n] for n in lengths))
        print(f"{op:<28}{cells}{last['ops_ms'].get(op, 0.0) - first['ops_ms'].get(op, 0.0):>+12.1f}")
    print(f"{'all kernels':<28}" + "".join(f"{rows[n]['kernel_ms']:>22.1f}" for n in lengths)
          + f"{last['kernel_ms'] - first['kernel_ms']:>+12.1f}")
    print(f"{'wall ms (profiling on)':<28}" + "".join(f"{rows[n]['wall_ms']:>22.1f}" for n in lengths)
          + f"{last['wall_ms'] - first['wall_ms']:>+12.1f}")
    write_json(Path(a.out), {"created": now(), "versions": versions(), "command": " ".join(sys.argv),
                             "artifact": a.artifact, "data": a.data, "split": a.split, "sentences": sentences,
                             "rows": {str(n): r for n, r in rows.items()}})
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
