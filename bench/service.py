r"""Service overhead: in-process ONNX Runtime vs the HTTP service at 1, 8, 32 concurrent clients.

    python bench/service.py --artifact artifacts/conll2003_iso --data path/to/conll2003 --split test \
        --limit 0 --out bench/results/service.json

Each client sends one sentence per /tag request (``--per-request N``: N sentences), back to back
(closed loop) on its own keep-alive connection; all clients run in one separate process, a bare
asyncio HTTP client whose CPU time is reported (it shares the cores with the server here). The
clients go through the stream ``--passes`` times. Throughput is reported twice: over the whole run,
and over its steady part -- from the moment every client has had its first answer (connections
open, workers warm) to the moment the last request goes out (after it clients only drop away: a
finite benchmark's drain, which a service under continuous load never sees). The ratios use the
steady figure.

References, no HTTP, same artifact and variant, each the faster of two layouts (one process with
ORT's default threads; the service's workers x ORT threads, as processes working in parallel):
- best: the whole stream at once, sorted by length into batches of 32 -- more than any online
  service can batch, the ceiling;
- same in flight: the stream tagged clients x per-request sentences at a time in arrival order --
  what an in-process caller with as much work outstanding as the clients does.
With several processes a reference is the sum of each process's own rate (no drain either).
Server CPU (serve process and workers) and client CPU per sentence are reported. Clients and
server share this machine's cores, so on 2 cores the ratios are lower bounds.
Meanwhile a thread polls ``/livez`` every ``--livez-every`` seconds on a fresh connection, as an
orchestrator's probe does, and reports its latency: the workers' event loops also run the model.
``--serve-env KEY=VALUE`` sets service settings (e.g. PROMPTBERT_WORKERS=1). Prints a table, writes JSON.

A/B mode (``--b-env KEY=VALUE`` and/or ``--b-checkout PATH``): two versions of the service, A (this
checkout with ``--serve-env``) and B (other settings, or another checkout, e.g. a ``git worktree`` of
an older commit), run interleaved for ``--rounds`` rounds, a fresh serve each run, the order flipped
every round; ``--b-env PROMPTBERT_ARTIFACT=PATH`` serves another artifact as B. This machine's speed
drifts by 10-30% within an hour, so only such side-by-side runs compare two versions; it prints one
value per round for each arm:

    git worktree add /tmp/base HEAD~1
    python bench/service.py --artifact artifacts/conll2003_iso --data path/to/conll2003 --limit 0 \
        --clients 8,32 --per-request 1,8 --passes 2 --b-checkout /tmp/base --out bench/results/ab.json
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptbert.data import load_split  # noqa: E402
from promptbert.launch import ROOT, ServedArtifact, metric_sums, post_json, serving_stats  # noqa: E402
from promptbert.manifest import now, versions, write_json  # noqa: E402


async def _read_response(reader: Any) -> tuple[int, bool]:
    """(status, server asked to close) of one HTTP/1.1 response; the body is read and dropped."""
    status = int((await reader.readline()).split(b" ", 2)[1])
    length, chunked, close = 0, False, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and value == b"chunked":
            chunked = True
        elif name == b"connection" and value == b"close":
            close = True
    if not chunked:
        await reader.readexactly(length)
        return status, close
    while size := int((await reader.readline()).strip(), 16):
        await reader.readexactly(size + 2)
    await reader.readline()
    return status, close


def steady_rate(finished: list[tuple[float, int]], warm: float, drain: float) -> float | None:
    """Sentences/s answered after ``warm`` and up to ``drain``: the part of a closed-loop run where
    exactly ``clients`` requests are outstanding. None when that window is empty or holds too few
    answers to mean anything (a tiny run)."""
    inside = [n for t, n in finished if warm < t <= drain]
    if drain <= warm or len(inside) < 2:
        return None
    return sum(inside) / (drain - warm)


def _client_main(url: str, texts: list[str], clients: int, per_request: int, prompts: list[Any] | None,
                 conn: Any) -> None:
    """Closed-loop clients, each on its own keep-alive connection, in their own process.

    A bare asyncio HTTP/1.1 client with the request bodies encoded before the clock starts:
    the load generator shares the server's cores here, so it should take as little CPU as it
    can (aiohttp took ~0.75 ms of CPU a request, ~14% of 2 cores at 8 clients). Its own CPU
    time is reported. ``prompts``: request i carries prompts[i % len(prompts)] (a types model's
    request-time prompt; None: the artifact's default).
    """
    import asyncio
    import json
    import resource

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    requests = []  # (request bytes, sentences in it)
    for i in range(0, len(texts), per_request):
        chunk = texts[i : i + per_request]
        prompt = prompts[(i // per_request) % len(prompts)] if prompts else None
        body = json.dumps({"texts": chunk, **({"prompt": prompt} if prompt is not None else {})}).encode()
        requests.append((b"POST /tag HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (host.encode(), len(body), body), len(chunk)))

    async def run() -> dict:
        lat: list[float] = []
        finished: list[tuple[float, int]] = []  # (answered at, sentences)
        first_answer: list[float] = []  # per client
        per_client: list[int] = []  # requests answered, per client: equal when the workers share the load fairly
        errors = reconnects = done = 0
        nxt = 0
        drain = 0.0  # when the last request went out

        async def worker() -> None:
            nonlocal nxt, errors, reconnects, done, drain
            reader = writer = None
            mine = 0
            while nxt < len(requests):
                request, size = requests[nxt]
                nxt += 1
                t0 = time.perf_counter()
                if nxt == len(requests):
                    drain = t0
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(request)
                    status, close = await asyncio.wait_for(_read_response(reader), 120)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
                    status, close = 0, True
                if status == 200:
                    t1 = time.perf_counter()
                    lat.append(t1 - t0)
                    finished.append((t1, size))
                    done += size
                    mine += 1
                    if mine == 1:
                        first_answer.append(t1)
                else:
                    errors += 1
                if close and writer is not None:
                    writer.close()
                    reader = writer = None
                    reconnects += 1
            if writer is not None:
                writer.close()
            per_client.append(mine)

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        total = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        steady = steady_rate(finished, max(first_answer, default=t0), drain)
        return {"clients": clients, "texts_per_request": per_request, "sentences_per_s": steady or done / total,
                "whole_run_sentences_per_s": done / total, "steady": steady is not None,
                "requests_per_s": len(lat) / total, "p50_ms": float(np.percentile(lat, 50) * 1000),
                "p95_ms": float(np.percentile(lat, 95) * 1000), "p99_ms": float(np.percentile(lat, 99) * 1000),
                "client_requests_min_max": [min(per_client), max(per_client)], "errors": errors, "reconnects": reconnects,
                "seconds": total, "client_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)}

    conn.send(asyncio.run(run()))


def _in_processes(target: Any, args: list[tuple]) -> list[Any]:
    """Run ``target(*a, conn)`` for each ``a`` in its own spawned process; what each sends back, in order."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for a in args:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(*a, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results = [c.recv() for c in pipes]
    for proc in procs:
        proc.join()
    return results


class HealthProbe:
    """``with HealthProbe(url, every):`` polls ``/livez`` on a fresh connection every ``every`` seconds
    (as an orchestrator's probe does) while the block runs: how long a health check waits on loaded
    workers, whose event loops also run the model. At least one probe completes."""

    def __init__(self, url: str, every: float) -> None:
        import threading

        self.url, self.every = url, every
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import urllib.request

        while True:
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.url}/livez", timeout=30) as r:
                    r.read()
                self.latencies.append(time.perf_counter() - t0)
            except OSError:  # URLError and timeouts included: a failed probe is what an SRE must see
                self.failures += 1
            if self.stop.wait(self.every):
                return

    def __enter__(self) -> HealthProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def summary(self) -> dict[str, float]:
        ms = np.asarray(self.latencies or [np.nan]) * 1000
        return {"livez_probes": len(self.latencies), "livez_failures": self.failures,
                "livez_p50_ms": float(np.percentile(ms, 50)), "livez_p99_ms": float(np.percentile(ms, 99)),
                "livez_max_ms": float(ms.max())}


def load_clients(url: str, texts: list[str], clients: int, per_request: int = 1, prompts: list[Any] | None = None) -> dict:
    """Run the clients in a separate process (their CPU is not the server's GIL) and wait for the result."""
    return _in_processes(_client_main, [(url, texts, clients, per_request, prompts)])[0]


def _in_process_worker(artifact: str, variant: str, threads: int, texts: list[str], chunk: int, barrier: Any,
                       conn: Any) -> None:
    """One in-process tagger: its share of the stream, timed from a start shared with its siblings,
    with the time its ONNX Runtime calls took (the service's /metrics counts the same)."""
    from promptbert.tagger import Tagger

    calls = {"seconds": 0.0, "calls": 0, "rows": 0}

    def on_call(arrays: dict, elapsed: float) -> None:
        calls["seconds"] += elapsed
        calls["calls"] += 1
        calls["rows"] += len(arrays["attention_mask"])

    # As a service worker runs it: ORT threads not spinning, the artifact's default aggregation.
    tagger = Tagger.from_pretrained(artifact, variant, threads=threads or None, spinning=False,
                                    max_batch_items=32 if chunk == 0 else None)
    tagger.predict(texts[:8])
    barrier.wait()
    tagger.pipeline.on_call = on_call
    t0 = time.perf_counter()
    if chunk == 0:
        tagger.predict(texts)  # the whole share at once: sorted by length, batches of 32
    else:
        for i in range(0, len(texts), chunk):
            tagger.predict(texts[i : i + chunk])
    conn.send({"wall": time.perf_counter() - t0, **calls})


def in_process(artifact: str, variant: str, texts: list[str], procs: int, threads: int, chunk: int) -> dict:
    """Sentences/s of ``procs`` processes with ``threads`` ORT threads each (0: ORT's default), no HTTP:
    the sum of each process's own rate, so one finishing first does not count as a drain; and the
    milliseconds per sentence spent in ONNX Runtime calls, and rows per call.

    ``chunk`` 0: each takes its share at once, sorted into batches of 32 (the best regime);
    else each tags its share ``chunk`` sentences at a time in arrival order (that many in flight).
    """
    import multiprocessing as mp

    barrier = mp.get_context("spawn").Barrier(procs)
    shares = [texts[k::procs] for k in range(procs)]
    got = _in_processes(_in_process_worker, [(artifact, variant, threads, share, chunk, barrier) for share in shares])
    return {"per_s": sum(len(share) / g["wall"] for share, g in zip(shares, got)),
            "model_ms_per_sentence": 1000 * sum(g["seconds"] for g in got) / len(texts),
            "rows_per_ort_call": sum(g["rows"] for g in got) / max(1, sum(g["calls"] for g in got))}


class Reference:
    """In-process ONNX Runtime throughput, the strongest of two layouts: one process with ORT's
    default threads, and the service's own (its workers, each with its ORT threads)."""

    def __init__(self, artifact: str, variant: str, texts: list[str], workers: int, threads: int) -> None:
        self.args = (artifact, variant, texts)
        self.layouts = sorted({(1, 0), (workers, threads)})
        self.cache: dict[int, dict[str, dict]] = {}

    def __call__(self, chunk: int) -> tuple[float, str, dict]:
        """(sentences/s, layout, what in_process measured) of the faster layout."""
        if chunk not in self.cache:  # p processes with c in flight: c // p each (a layout needs one per process)
            self.cache[chunk] = {f"{p}x{t or 'default'}": in_process(*self.args, p, t, chunk // p)
                                 for p, t in self.layouts if chunk == 0 or chunk >= p}
        best = max(self.cache[chunk], key=lambda layout: self.cache[chunk][layout]["per_s"])
        return self.cache[chunk][best]["per_s"], best, self.cache[chunk][best]


def server_cpu_s(pid: int) -> float:
    """CPU seconds used so far by the serve process and all its children (the workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(served: ServedArtifact, url: str, texts: list[str], clients: int, per_request: int,
            livez_every: float) -> dict:
    """One closed-loop run against a live service, with the server's side of it: CPU per sentence
    (serve process and workers), requests merged per batch, and from the service's own /metrics the
    time its ONNX Runtime calls took, rows per call and padding; /livez latency."""
    m0 = metric_sums(url)
    cpu0 = server_cpu_s(served.proc.pid)  # type: ignore[union-attr]
    probe = HealthProbe(url, livez_every) if livez_every > 0 else None
    with probe or contextlib.nullcontext():
        r = load_clients(url, texts, clients, per_request)
    if probe:
        r.update(probe.summary())
    cpu = server_cpu_s(served.proc.pid) - cpu0  # type: ignore[union-attr]
    r.update(serving_stats(m0, metric_sums(url)))
    r.update({"server_cpu_ms_per_sentence": 1000 * cpu / len(texts),
              "client_cpu_ms_per_sentence": 1000 * r["client_cpu_s"] / len(texts),
              "model_ms_per_sentence": None if r["model_seconds"] is None else 1000 * r["model_seconds"] / len(texts)})
    return r


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in pairs)


def _run_line(r: dict) -> str:
    return (f"p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  requests/client {r['client_requests_min_max']}  "
            f"{r['mean_batch_requests']:.1f} requests/call  CPU ms/sentence server {r['server_cpu_ms_per_sentence']:.2f} "
            f"client {r['client_cpu_ms_per_sentence']:.2f}"
            + (f" (in ORT calls {r['model_ms_per_sentence']:.2f}: {r['rows_per_ort_call']:.1f} rows/call, "
               f"{100 * r['padding_share']:.0f}% padding)" if r.get("model_ms_per_sentence") is not None else "")
            + f"  reconnects {r['reconnects']}  errors {r['errors']}"
            + (f"  /livez p50/p99/max {r['livez_p50_ms']:.1f}/{r['livez_p99_ms']:.1f}/{r['livez_max_ms']:.1f} ms"
               f" ({r['livez_failures']} failed)" if "livez_p50_ms" in r else ""))


def overhead(a: argparse.Namespace, texts: list[str], cases: list[tuple[int, int]]) -> dict:
    """The service against in-process ONNX Runtime: one serve, every case in turn."""
    rows = []
    served = ServedArtifact(a.artifact, env=_env(a.serve_env), wait_all_workers=not a.at_first_ready)
    with served as url:
        post_json(f"{url}/tag", {"texts": texts[:4]})
        meta = post_json(f"{url}/metadata", {})
        workers = int(meta["workers"])
        threads = meta["ort_threads_per_worker"] if isinstance(meta["ort_threads_per_worker"], int) else 0
        print(f"service: {meta['variant']} on {meta['providers']}, {workers} workers x {threads or 'default'} ORT threads, "
              f"{len(texts)} sentences", flush=True)
        reference = Reference(a.artifact, meta["variant"], texts, workers, threads)
        best, best_layout, best_info = (0.0, "-", {}) if a.empty else reference(0)
        if best:
            print(f"in-process best (sorted batches of 32, {best_layout} processes x threads): {best:.1f} sentences/s"
                  f" ({best_info['model_ms_per_sentence']:.2f} ms a sentence in ORT calls, {best_info['rows_per_ort_call']:.1f}"
                  " rows/call)", flush=True)
        for c, per in cases:
            r = measure(served, url, texts * a.passes, c, per, a.livez_every)
            same, same_layout, same_info = (0.0, "-", {}) if a.empty else reference(c * per)
            r.update({"in_process_best_per_s": best or None, "in_process_best_layout": best_layout,
                      "ratio_vs_best": r["sentences_per_s"] / best if best else None,
                      "in_process_same_in_flight_per_s": same or None, "in_process_same_in_flight_layout": same_layout,
                      "ratio_vs_same_in_flight": r["sentences_per_s"] / same if same else None,
                      "in_process_best_model_ms_per_sentence": best_info.get("model_ms_per_sentence"),
                      "in_process_same_in_flight_model_ms_per_sentence": same_info.get("model_ms_per_sentence"),
                      "in_process_same_in_flight_rows_per_ort_call": same_info.get("rows_per_ort_call")})
            rows.append(r)
            versus = (f" = {r['ratio_vs_best'] * 100:5.1f}% of in-process best, {r['ratio_vs_same_in_flight'] * 100:5.1f}% "
                      f"of in-process with {c * per} in flight ({same:.1f}, {same_layout}; "
                      f"{same_info['model_ms_per_sentence']:.2f} ms a sentence in ORT calls, "
                      f"{same_info['rows_per_ort_call']:.1f} rows/call)" if best else "")
            print(f"{c:>3} clients x {per}: {r['sentences_per_s']:7.1f} sent/s "
                  + ("" if r["steady"] else "(too short for a steady window) ")
                  + f"(whole run {r['whole_run_sentences_per_s']:.1f}){versus}  " + _run_line(r), flush=True)
    return {"variant": meta["variant"], "providers": meta["providers"], "serving_versions": meta.get("serving_versions"),
            "workers": workers,
            "ort_threads_per_worker": threads, "in_process_best_per_s": best or None,
            "in_process_layouts": reference.cache, "service": rows}


AB_COLUMNS = (("sentences/s", "sentences_per_s", "{:.1f}"), ("p95 ms", "p95_ms", "{:.1f}"), ("p99 ms", "p99_ms", "{:.1f}"),
              ("requests per call", "mean_batch_requests", "{:.1f}"),
              ("server CPU ms/sentence", "server_cpu_ms_per_sentence", "{:.2f}"),
              ("ORT ms/sentence", "model_ms_per_sentence", "{:.2f}"), ("rows per ORT call", "rows_per_ort_call", "{:.1f}"),
              ("/livez p50 ms", "livez_p50_ms", "{:.1f}"), ("reconnects", "reconnects", "{}"))


def ab(a: argparse.Namespace, texts: list[str], cases: list[tuple[int, int]]) -> dict:
    """Arm A against arm B, interleaved: each round runs every case on both arms back to back, a fresh
    serve each run, the order flipped every round (A B, then B A) so that the machine's drift
    within the hour falls on both arms alike. No in-process references: the arms are each other's."""
    base = _env(a.serve_env)
    arms = {"A": (base, None), "B": ({**base, **_env(a.b_env)}, Path(a.b_checkout).resolve() if a.b_checkout else None)}
    for name, (env, root) in arms.items():
        print(f"arm {name}: {root or ROOT} {' '.join(f'{k}={v}' for k, v in env.items()) or '(defaults)'}", flush=True)
    runs = []
    for k in range(a.rounds):
        for c, per in cases:
            for name in ("A", "B") if k % 2 == 0 else ("B", "A"):
                env, root = arms[name]
                served = ServedArtifact(a.artifact, env=env, root=root, wait_all_workers=not a.at_first_ready)
                with served as url:
                    post_json(f"{url}/tag", {"texts": texts[:4]})
                    meta = post_json(f"{url}/metadata", {})
                    r = measure(served, url, texts * a.passes, c, per, a.livez_every)
                r.update({"arm": name, "round": k,  # what this arm's serve said it runs
                          "served": {key: meta.get(key) for key in ("variant", "providers", "workers", "limits", "gc")}})
                runs.append(r)
                print(f"round {k} {c:>3} x {per} {name}: {r['sentences_per_s']:7.1f} sent/s  " + _run_line(r), flush=True)
    columns = [col for col in AB_COLUMNS if col[1] != "livez_p50_ms" or a.livez_every > 0]
    head = ["clients x sentences per request", *(name for name, _, _ in columns)]
    print("\n| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for c, per in cases:
        mine = [r for r in runs if (r["clients"], r["texts_per_request"]) == (c, per)]
        cells = [f"{c} x {per}"]
        for _, key, fmt in columns:
            arm = {n: " / ".join("-" if r.get(key) is None else fmt.format(r[key]) for r in mine if r["arm"] == n)
                   for n in ("A", "B")}
            cells.append(f"{arm['A']} → {arm['B']}")
        print("| " + " | ".join(cells) + " |")
    print("(A → B, one value per round)")
    return {"mode": "ab", "rounds": a.rounds,
            "arms": {n: {"serve_env": env, "checkout": str(root or ROOT)} for n, (env, root) in arms.items()},
            "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data" / "demo"))
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--variant", default="auto")
    p.add_argument("--per-request", default="1", help="sentences per /tag request; a list (1,8) runs each")
    p.add_argument("--passes", type=int, default=3, help="times the clients go through the stream")
    p.add_argument("--livez-every", type=float, default=0.05,
                   help="seconds between /livez probes during each run (0: none); each costs the server ~0.5 ms of CPU")
    p.add_argument("--serve-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--b-env", action="append", default=[], metavar="KEY=VALUE",
                   help="A/B mode: arm B's settings on top of --serve-env (arm A: --serve-env alone)")
    p.add_argument("--b-checkout", metavar="PATH",
                   help="A/B mode: serve arm B from this checkout of the project (e.g. one made with "
                        "`git worktree add /tmp/base HEAD~1`); arm A is this one")
    p.add_argument("--rounds", type=int, default=2, help="A/B mode: interleaved rounds")
    p.add_argument("--at-first-ready", action="store_true",
                   help="start the clients at the first 200 from /readyz, as a load balancer would, while other "
                        "workers may still be loading (default: once every worker is ready)")
    p.add_argument("--empty", action="store_true",
                   help="send empty texts (no model run): what HTTP and BentoML alone cost a request; no references")
    p.add_argument("--out", default="bench/results/service.json")
    a = p.parse_args()
    try:
        clients = [int(x) for x in a.clients.split(",")]
        pers = [int(x) for x in a.per_request.split(",")]
    except ValueError:
        p.error("--clients and --per-request take comma-separated integers")
    if not all("=" in kv for kv in a.serve_env + a.b_env):
        p.error("--serve-env and --b-env take KEY=VALUE")
    if a.passes < 1 or a.rounds < 1 or min(clients + pers) < 1:
        p.error("--passes, --rounds, --clients and --per-request must be >= 1")
    if a.b_checkout and not (Path(a.b_checkout) / "service.py").is_file():
        p.error(f"--b-checkout: {a.b_checkout} has no service.py (not a checkout of this project)")
    if a.variant != "auto":
        a.serve_env.append(f"PROMPTBERT_VARIANT={a.variant}")

    sentences = load_split(a.data, a.split, a.limit or None)
    texts = ["" if a.empty else " ".join(s.words) for s in sentences]
    cases = [(c, per) for per in pers for c in clients]
    result = ab(a, texts, cases) if a.b_env or a.b_checkout else overhead(a, texts, cases)
    out = {"date": now(), "versions": versions(), "artifact": a.artifact, "data": a.data, "split": a.split,
           "sentences": len(texts), **result, "serve_env": a.serve_env, "per_request": pers, "passes": a.passes,
           "empty_texts": a.empty}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, out)
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
