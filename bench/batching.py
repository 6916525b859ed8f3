"""How a batch is cut into model calls: fit the call cost, then measure the policies in process.

    python bench/batching.py --artifact artifacts/conll2003_iso --data path/to/conll2003 --split test \
        --out bench/results/batching.json

1. Times one ONNX Runtime call over a grid of (rows, tokens per row) and fits
   ms = per_call + rows x per_row + rows x tokens x per_token; prints the fit in padded
   tokens, the units of ``promptbert.encoding.CallCost`` (PROMPTBERT_CALL_COST,
   PROMPTBERT_ROW_COST). Run it on the serving machine: on a GPU a call's fixed cost
   weighs far more against a token than on a CPU.
2. Tags the split in arrival-order chunks (what a service gets from concurrent clients)
   with each policy of cutting a chunk into calls: one call per chunk up to the token
   budget, the earlier rule (a text longer than 1.5x the shortest of its call starts a
   new one), the default cost model and the fitted one. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert import encoding  # noqa: E402
from promptbert.data import load_split  # noqa: E402
from promptbert.encoding import DEFAULT_CALL_COST, CallCost  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402

ROWS = (1, 2, 4, 8, 16, 32)
TOKENS = (4, 8, 16, 32, 64)


def pad_ratio_batches(lengths: list[int], max_tokens: int, max_items: int | None = None,
                      ratio: float = 1.5) -> list[list[int]]:
    """The rule before the cost model, kept here as the comparison."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        cur = batches[-1] if batches else None
        if cur and (len(cur) + 1) * lengths[i] <= max_tokens and not (max_items and len(cur) >= max_items) \
                and lengths[i] <= ratio * lengths[cur[0]]:
            cur.append(i)
        else:
            batches.append([i])
    return batches


def fit_call_cost(logits_fn, repeats: int) -> tuple[CallCost, dict[str, float], list[dict]]:
    """Median time of one call per grid point; least squares on relative error.

    Returns the fit in padded tokens, the fit in ms, and the grid with each point's fitted time."""
    rng = np.random.default_rng(0)
    grid = []
    for rows in ROWS:
        for tokens in TOKENS:
            ids = rng.integers(1000, 20000, size=(rows, tokens)).astype(np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.ones_like(ids)}
            for _ in range(2):
                logits_fn(feed)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                logits_fn(feed)
                times.append(time.perf_counter() - t0)
            grid.append({"rows": rows, "tokens": tokens, "ms": float(np.median(times)) * 1000})
    r = np.array([g["rows"] for g in grid], dtype=float)
    t = np.array([g["tokens"] for g in grid], dtype=float)
    y = np.array([g["ms"] for g in grid])
    x = np.c_[np.ones_like(r), r, r * t]
    (a, b, c), *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
    for g, pred in zip(grid, x @ np.array([a, b, c])):
        g["fit_ms"] = float(pred)
        g["error"] = abs(g["fit_ms"] - g["ms"]) / g["ms"]
    per_token = max(float(c), 1e-9)
    fitted = CallCost(per_call=round(max(float(a), 0.0) / per_token, 1), per_row=round(max(float(b), 0.0) / per_token, 1))
    return fitted, {"per_call": float(a), "per_row": float(b), "per_token": float(c)}, grid


def throughput(pipe, texts: list[str], chunk: int, policy) -> float:
    """Sentences/s with ``policy(lengths, max_tokens, max_items)`` cutting each chunk into calls."""
    def batches(windows):
        return policy([len(w.input_ids) - pipe.skip for w in windows], pipe.max_batch_tokens, pipe.max_batch_items)

    pipe._batches = batches  # this instance only: the policy under test instead of the configured one
    pipe.entities(texts[:16])
    t0 = time.perf_counter()
    for i in range(0, len(texts), chunk):
        pipe.entities(texts[i : i + chunk])
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data" / "demo"))
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--variant", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="ORT threads (the service runs 1 per worker on CPU)")
    p.add_argument("--chunks", default="1,4,8,32,64")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default="bench/results/batching.json")
    a = p.parse_args()

    from promptbert.runtime import Artifact

    pipe, loaded = Artifact(a.artifact).pipeline(a.variant, a.device, a.threads or None, max_batch_items=None)
    fitted, ms, grid = fit_call_cost(pipe.logits_fn, a.repeats)
    errors = [g["error"] for g in grid]
    print(f"{loaded.variant} on {loaded.providers}, {a.threads or 'default'} ORT threads")
    print(f"one call = {ms['per_call']:.3f} ms + {ms['per_row']:.3f} ms a row + {ms['per_token']:.4f} ms a "
          f"padded token  ->  CallCost(per_call={fitted.per_call}, per_row={fitted.per_row}) in padded tokens "
          f"(default {DEFAULT_CALL_COST.per_call}, {DEFAULT_CALL_COST.per_row})")
    print(f"fit over {len(grid)} shapes: worst error {100 * max(errors):.0f}%, mean {100 * np.mean(errors):.0f}%\n")

    texts = [" ".join(s.words) for s in load_split(a.data, a.split, a.limit or None)]
    policies = {
        "one call": functools.partial(encoding.token_budget_batches, cost=None),
        "pad ratio 1.5": pad_ratio_batches,
        "default cost": functools.partial(encoding.token_budget_batches, cost=DEFAULT_CALL_COST),
        "fitted cost": functools.partial(encoding.token_budget_batches, cost=fitted),
    }
    chunks = [int(c) for c in a.chunks.split(",")]
    header = f"{'chunk':>6}" + "".join(f"{name:>15}" for name in policies) + f"{'default vs 1.5':>16}"
    print(f"sentences/s, {len(texts)} sentences of {a.split}, tagged a chunk at a time in arrival order")
    print(header)
    print("-" * len(header))
    rows = []
    for chunk in chunks:
        row = {"chunk": chunk, **{name: throughput(pipe, texts, chunk, pol) for name, pol in policies.items()}}
        rows.append(row)
        gain = row["default cost"] / row["pad ratio 1.5"] - 1
        print(f"{chunk:>6}" + "".join(f"{row[name]:>15.1f}" for name in policies) + f"{100 * gain:>+15.1f}%",
              flush=True)
    out = {"date": now(), "versions": versions(), "artifact": a.artifact, "data": a.data, "split": a.split,
           "sentences": len(texts), "variant": loaded.variant, "providers": loaded.providers,
           "threads": a.threads or "default", "fitted": {"per_call": fitted.per_call, "per_row": fitted.per_row}, "fit_ms": ms,
           "default": {"per_call": DEFAULT_CALL_COST.per_call, "per_row": DEFAULT_CALL_COST.per_row},
           "grid": grid, "sentences_per_s": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, out)
    print(f"\nwritten: {a.out}")


if __name__ == "__main__":
    main()
