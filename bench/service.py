"""Service overhead: in-process ONNX Runtime vs the HTTP service at 1, 8, 32 concurrent clients.

    python bench/service.py --artifact artifacts/conll2003 --data ../shared/data/conll2003 --split test \
        --limit 1000 --out bench/results/service.json

Each client sends one sentence per /tag request (``--per-request N``: N sentences), back to back
(closed loop), as an asyncio task with a keep-alive connection; all clients run in one separate
process. The in-process reference tags the same sentences with the same artifact and variant, in
batches of 32 sorted by length (the best in-process regime); a second reference runs the same stream in-process cut into
the batches the service formed (its mean batch, arrival order): the cost of HTTP alone. Clients and server share this machine's
cores, so on 2 cores the ratio is a lower bound. ``--serve-env KEY=VALUE`` sets service settings
(e.g. PROMPTBERT_WORKERS=2 PROMPTBERT_THREADS=1). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert.data import load_split  # noqa: E402
from promptbert.launch import ServedArtifact, adaptive_batches, post_json  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402


def _client_main(url: str, texts: list[str], clients: int, per_request: int, conn: Any) -> None:
    """Closed-loop asyncio clients with keep-alive connections, in their own process."""
    import asyncio

    import aiohttp

    async def run() -> dict:
        lat: list[float] = []
        errors = 0
        nxt = 0
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

            async def worker() -> None:
                nonlocal nxt, errors
                while nxt < len(texts):
                    chunk = texts[nxt : nxt + per_request]
                    nxt += per_request
                    t0 = time.perf_counter()
                    try:
                        async with session.post(f"{url}/tag", json={"texts": chunk}) as r:
                            await r.read()
                            ok = r.status == 200
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        ok = False
                    if ok:
                        lat.append(time.perf_counter() - t0)
                    else:
                        errors += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            total = time.perf_counter() - t0
        done = len(lat) * per_request
        return {"clients": clients, "texts_per_request": per_request, "sentences_per_s": done / total,
                "requests_per_s": len(lat) / total, "p50_ms": float(np.percentile(lat, 50) * 1000),
                "p95_ms": float(np.percentile(lat, 95) * 1000), "errors": errors, "seconds": total}

    conn.send(asyncio.run(run()))


def load_clients(url: str, texts: list[str], clients: int, per_request: int = 1) -> dict:
    """Run the clients in a separate process (their CPU is not the server's GIL) and wait for the result."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_client_main, args=(url, texts, clients, per_request, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data" / "demo"))
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--variant", default="auto")
    p.add_argument("--per-request", type=int, default=1, help="sentences per /tag request")
    p.add_argument("--serve-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="bench/results/service.json")
    a = p.parse_args()

    from promptbert.runtime import Artifact

    sentences = load_split(a.data, a.split, a.limit or None)
    texts = [" ".join(s.words) for s in sentences]
    pipe, loaded = Artifact(a.artifact).pipeline(a.variant, "auto", max_batch_items=32)
    pipe.entities(texts[:8])
    t0 = time.perf_counter()
    pipe.entities(texts)
    inproc = len(texts) / (time.perf_counter() - t0)
    print(f"in-process {loaded.variant} on {loaded.providers}: {inproc:.1f} sentences/s ({len(texts)} sentences)", flush=True)
    pipe.max_batch_items = None  # as in the service: one call per batch, grouped under a token budget

    def matched(chunk: int) -> float:
        """In-process on the same stream cut into the batches the service formed (arrival order, no HTTP)."""
        t = time.perf_counter()
        for i in range(0, len(texts), chunk):
            pipe.entities(texts[i : i + chunk])
        return len(texts) / (time.perf_counter() - t)

    env = dict(kv.split("=", 1) for kv in a.serve_env)
    if a.variant != "auto":
        env["PROMPTBERT_VARIANT"] = a.variant
    rows = []
    with ServedArtifact(a.artifact, env=env) as url:
        post_json(f"{url}/tag", {"texts": texts[:4]})
        for c in [int(x) for x in a.clients.split(",")]:
            calls0, items0 = adaptive_batches(url)
            r = load_clients(url, texts, c, a.per_request)
            calls1, items1 = adaptive_batches(url)
            after = post_json(f"{url}/metadata", {})
            calls = calls1 - calls0
            mean_batch = (items1 - items0) / calls if calls else 1.0  # requests merged per model call
            same = matched(max(1, round(mean_batch * a.per_request)))
            r.update({"ratio_vs_in_process": r["sentences_per_s"] / inproc, "model_calls": calls,
                      "mean_batch": mean_batch, "in_process_same_batches_per_s": same,
                      "ratio_vs_same_batches": r["sentences_per_s"] / same,
                      "providers": after["providers"], "variant": after["variant"]})
            rows.append(r)
            print(f"{c:>3} clients: {r['sentences_per_s']:7.1f} sent/s ({r['ratio_vs_in_process'] * 100:5.1f}% of in-process, "
                  f"{r['ratio_vs_same_batches'] * 100:5.1f}% of in-process in the same batches)  p50 {r['p50_ms']:7.1f} ms  "
                  f"p95 {r['p95_ms']:7.1f} ms  mean batch {mean_batch:.1f} requests  errors {r['errors']}", flush=True)
    out = {"date": now(), "versions": versions(), "artifact": a.artifact, "data": a.data, "split": a.split,
           "sentences": len(texts), "variant": loaded.variant, "in_process_sentences_per_s": inproc, "service": rows,
           "serve_env": a.serve_env, "per_request": a.per_request}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, out)
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
