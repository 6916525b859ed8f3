"""Service overhead: in-process ONNX Runtime vs the HTTP service at 1, 8, 32 concurrent clients.

    python bench/service.py --artifact artifacts/conll2003 --data ../shared/data/conll2003 --split test \
        --limit 1000 --out bench/results/service.json

Each client sends one sentence per /tag request, back to back (closed loop). The in-process
reference tags the same sentences with the same artifact and variant, in batches of 32 sorted by
length (the best in-process regime). Clients and server share this machine's cores: on 2 cores
the client threads cost the server some CPU, so the ratio is a lower bound. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert.data import load_split  # noqa: E402
from promptbert.launch import ServedArtifact, post_json  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402


def load_clients(url: str, texts: list[str], clients: int) -> dict:
    lock = threading.Lock()
    nxt = [0]
    lat: list[float] = []
    errors = [0]

    def worker() -> None:
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(texts):
                return
            t0 = time.perf_counter()
            try:
                post_json(f"{url}/tag", {"texts": [texts[i]]}, timeout=120)
            except Exception:
                with lock:
                    errors[0] += 1
                continue
            with lock:
                lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - t0
    return {"clients": clients, "sentences_per_s": len(lat) / total, "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p95_ms": float(np.percentile(lat, 95) * 1000), "errors": errors[0], "seconds": total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data" / "demo"))
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--variant", default="auto")
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
    del pipe
    print(f"in-process {loaded.variant} on {loaded.providers}: {inproc:.1f} sentences/s ({len(texts)} sentences)", flush=True)

    env = dict(kv.split("=", 1) for kv in a.serve_env)
    if a.variant != "auto":
        env["PROMPTBERT_VARIANT"] = a.variant
    rows = []
    with ServedArtifact(a.artifact, env=env) as url:
        post_json(f"{url}/tag", {"texts": texts[:4]})
        for c in [int(x) for x in a.clients.split(",")]:
            before = post_json(f"{url}/metadata", {})["batch_sizes_seen"]
            r = load_clients(url, texts, c)
            after = post_json(f"{url}/metadata", {})
            seen = {k: v - before.get(k, 0) for k, v in after["batch_sizes_seen"].items() if v - before.get(k, 0) > 0}
            calls = sum(seen.values())
            r.update({"ratio_vs_in_process": r["sentences_per_s"] / inproc, "batch_sizes_seen": seen,
                      "mean_batch": sum(int(k) * v for k, v in seen.items()) / calls if calls else 0.0,
                      "providers": after["providers"], "variant": after["variant"]})
            rows.append(r)
            print(f"{c:>3} clients: {r['sentences_per_s']:7.1f} sent/s ({r['ratio_vs_in_process'] * 100:5.1f}% of in-process)  "
                  f"p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  mean batch {r['mean_batch']:.1f}  errors {r['errors']}", flush=True)
    out = {"date": now(), "versions": versions(), "artifact": a.artifact, "data": a.data, "split": a.split,
           "sentences": len(texts), "variant": loaded.variant, "in_process_sentences_per_s": inproc, "service": rows,
           "serve_env": a.serve_env}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, out)
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
