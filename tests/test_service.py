"""Service tests in three tiers: pure config, in-process ASGI validation, and a real `bentoml serve`."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from promptbert.casing import CASING_SCHEME
from promptbert.constants import VARIANT_FILES, WORD_SPLITTER
from promptbert.encoding import DEFAULT_CALL_COST, CallCost, default_call_cost
from promptbert.errors import ConfigError
from promptbert.runtime import CPU, CUDA, Artifact, cuda_available
from promptbert.bentoml_workarounds import inline_steps
from promptbert.serving import ServeConfig

TEXTS = ["John Smith visited Paris.", "Mary Jones met the Acme Corp team in London.", "", "Zürich — naïve café"]


def test_serve_config_from_env():
    c = ServeConfig.from_env({"PROMPTBERT_MAX_CHARS": "50", "PROMPTBERT_VARIANT": "fp32", "PROMPTBERT_LOADTEST_WAIT": "x",
                              "OTHER_MAX_CHARS": "y"})
    assert c.max_chars == 50 and c.variant == "fp32"
    # A misspelt setting is refused by name, not silently ignored; the load test's variables are not ours.
    with pytest.raises(ConfigError, match="PROMPTBERT_MAX_CHAR: unknown setting .*PROMPTBERT_MAX_CHARS"):
        ServeConfig.from_env({"PROMPTBERT_MAX_CHAR": "50"})
    with pytest.raises(ConfigError, match="PROMPTBERT_MAX_ITEMS: expected int"):
        ServeConfig.from_env({"PROMPTBERT_MAX_ITEMS": "lots"})
    with pytest.raises(ConfigError, match="device"):
        ServeConfig.from_env({"PROMPTBERT_DEVICE": "tpu"})
    # Booleans are parsed, not bool("0") == True.
    assert ServeConfig.from_env({"PROMPTBERT_ORT_SPINNING": "0"}).ort_spinning is False
    assert ServeConfig.from_env({"PROMPTBERT_ACCESS_LOG": "off"}).access_log is False and ServeConfig().access_log
    assert ServeConfig.from_env({"PROMPTBERT_ORT_SPINNING": "true"}).ort_spinning is True
    with pytest.raises(ConfigError, match="PROMPTBERT_ORT_SPINNING: expected a boolean"):
        ServeConfig.from_env({"PROMPTBERT_ORT_SPINNING": "maybe"})
    with pytest.raises(ConfigError, match="workers"):
        ServeConfig.from_env({"PROMPTBERT_WORKERS": "-1"})
    # Auto: one worker per core with one ORT thread each on CPU; four sharing a GPU; explicit values win.
    auto = ServeConfig()
    cores = min(os.cpu_count() or 1, 8)
    assert auto.resolved_workers(gpu=False) == cores and auto.resolved_workers(gpu=True) == min(cores, 4)
    assert auto.resolved_threads(cores) == (1 if cores > 1 else 0) and auto.resolved_threads(1) == 0
    fixed = ServeConfig(workers=3, threads=2)
    assert fixed.resolved_workers(gpu=True) == 3 and fixed.resolved_threads(3) == 2
    with pytest.raises(ConfigError, match="keepalive_requests"):
        ServeConfig(keepalive_requests=-1)
    with pytest.raises(ConfigError, match="gc_threshold"):
        ServeConfig.from_env({"PROMPTBERT_GC_THRESHOLD": "-5"})


def test_tune_gc_freezes_the_heap_or_leaves_python_alone():
    """In a fresh interpreter (the collector's state is per process): a threshold freezes what exists and
    raises the young generation's threshold; 0 changes nothing."""
    code = ("import gc, json; from promptbert.serving import tune_gc; before = gc.get_threshold(); "
            "frozen = gc.get_freeze_count(); off = tune_gc(0); on = tune_gc(5000); print(json.dumps([before, frozen, off, on]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    before, frozen, off, on = json.loads(r.stdout)  # frozen: what the interpreter's start-up froze (0 on most)
    assert off == {"frozen_objects": frozen, "thresholds": before}
    assert on["frozen_objects"] > frozen + 1000 and on["thresholds"] == [5000, *before[1:]]
    assert ServeConfig.from_env({"PROMPTBERT_GATHER_YIELDS": "0"}).gather_yields == 0 and ServeConfig().gather_yields > 0
    with pytest.raises(ConfigError, match="gather_yields"):
        ServeConfig(gather_yields=-1)
    # Tracing costs CPU per request even without an exporter: off unless asked for.
    assert not ServeConfig().tracing_enabled and ServeConfig(tracing=True).tracing_enabled
    # A boolean like every other: each spelling the docs list, and one line for anything else.
    for raw, on in (("on", True), ("yes", True), ("1", True), ("true", True), ("off", False), ("no", False), ("0", False)):
        assert ServeConfig.from_env({"PROMPTBERT_TRACING": raw}).tracing_enabled is on
    with pytest.raises(ConfigError, match=r"PROMPTBERT_TRACING: expected a boolean \(1/0, true/false, yes/no, on/off\)"):
        ServeConfig.from_env({"PROMPTBERT_TRACING": "maybe"})
    # The cost model that cuts a batch into ORT calls: per call and per row, in padded tokens.
    # Auto (unset): none set, so the pipeline takes the device's own (on a GPU no cut below the token budget);
    # one value set completes the CPU's.
    set_both = ServeConfig.from_env({"PROMPTBERT_CALL_COST": "200", "PROMPTBERT_ROW_COST": "0"})
    assert set_both.batch_cost() == CallCost(200.0, 0.0)
    assert ServeConfig().batch_cost() is None
    assert default_call_cost(gpu=False) == DEFAULT_CALL_COST and default_call_cost(gpu=True) is None
    assert ServeConfig(call_cost=20).batch_cost() == CallCost(20.0, DEFAULT_CALL_COST.per_row)
    with pytest.raises(ConfigError, match="call_cost: must be >= 0, or -1 for auto"):
        ServeConfig.from_env({"PROMPTBERT_CALL_COST": "-2"})


def test_keepalive_budget_closes_about_one_connection_in_n():
    import asyncio

    from promptbert.bentoml_workarounds import KeepAliveBudget

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def closes(mw, n, kind="http"):
        sent = []

        async def send(message):
            sent.append(message)

        async def run():
            for _ in range(n):
                await mw({"type": kind}, None, send)

        asyncio.run(run())
        starts = [m for m in sent if m["type"] == "http.response.start"]
        assert len(starts) == n and all(m["status"] == 200 for m in starts)
        return sum((b"connection", b"close") in m["headers"] for m in starts)

    assert closes(KeepAliveBudget(app, every=1), 20) == 20
    assert closes(KeepAliveBudget(app, every=0), 20) == 0
    assert 400 < closes(KeepAliveBudget(app, every=4, seed=0), 2000) < 600
    assert closes(KeepAliveBudget(app, every=1), 5, kind="lifespan-like") == 0


def test_keepalive_budget_sheds_connections_in_proportion_to_the_worker_load():
    """A request arriving at a worker that holds k requests closes its connection with probability k/N:
    a crowded worker sheds more connections, so an uneven split of keep-alive clients evens out."""
    import asyncio

    from promptbert.bentoml_workarounds import KeepAliveBudget

    async def run(concurrent: int, every: int) -> tuple[list[bool], int]:
        gate = asyncio.Event()

        async def app(scope, receive, send):
            await gate.wait()  # hold every request until all have arrived
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        mw = KeepAliveBudget(app, every=every, seed=1)
        closed = [False] * concurrent

        async def one(i: int) -> None:
            async def send(message):
                if message["type"] == "http.response.start":
                    closed[i] = (b"connection", b"close") in message["headers"]

            await mw({"type": "http"}, None, send)

        tasks = [asyncio.create_task(one(i)) for i in range(concurrent)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
        return closed, mw.in_flight

    closed, left = asyncio.run(run(8, every=4))
    assert all(closed[3:]) and left == 0  # the 4th to 8th arrived with >= 4 in flight: always closed
    closed, _ = asyncio.run(run(1000, every=1000))  # arrival k closes with probability k/1000: about half
    assert 400 < sum(closed) < 600 and sum(closed[:100]) < sum(closed[-100:])


def test_inline_steps_bound_each_step_and_keep_every_text_once():
    """A batch on the event loop is cut into steps of at most `budget` characters, short texts
    first; a text over the budget is a step alone (it runs in a thread)."""
    lengths = [30, 5, 120, 40, 0, 60, 35, 10]
    steps = inline_steps(lengths, 100)
    assert sorted(i for step in steps for i in step) == list(range(len(lengths)))
    assert [[lengths[i] for i in step] for step in steps] == [[0, 5, 10, 30, 35], [40, 60], [120]]
    assert all(sum(lengths[i] for i in step) <= 100 for step in steps if len(step) > 1)
    assert inline_steps([], 100) == [] and inline_steps([7], 1) == [[0]]
    with pytest.raises(ValueError):
        inline_steps([1], 0)


def test_shared_load_is_one_table_per_serve(tmp_path):
    """Workers of one serve (same parent process) map one table; tables of dead serves are removed."""
    from promptbert.bentoml_workarounds import SharedLoad

    (tmp_path / "promptbert-load-99999999").write_bytes(b"\0" * 16)  # beyond any pid: a dead serve
    (tmp_path / f"promptbert-load-{os.getpid()}").write_bytes(b"\0" * 16)  # a live process
    (tmp_path / "promptbert-load-notes").write_text("not ours")
    a = SharedLoad.for_worker(2, 0, tmp_path)
    b = SharedLoad.for_worker(2, 1, tmp_path)
    assert a.path == b.path == tmp_path / f"promptbert-load-{os.getppid()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"promptbert-load-{os.getppid()}", f"promptbert-load-{os.getpid()}", "promptbert-load-notes"])
    a.set(6)
    b.set(2)
    assert a.mean() == b.mean() == 4.0
    with pytest.raises(ValueError):
        SharedLoad(a.path, 2, 2)


def test_keepalive_budget_with_shared_load_sheds_only_the_excess(tmp_path):
    """Worker A holds 6 keep-alive connections, worker B 2: A closes connections until both hold 4,
    then neither closes more than one in N (here never: N = 10**9)."""
    import asyncio
    import time

    from promptbert.bentoml_workarounds import KeepAliveBudget, SharedLoad

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    a_load, b_load = SharedLoad(tmp_path / "t", 2, 0), SharedLoad(tmp_path / "t", 2, 1)
    a = KeepAliveBudget(app, every=10**9, seed=0, load=a_load)
    b = KeepAliveBudget(app, every=10**9, seed=0, load=b_load)
    where = {port: (a if port < 6 else b) for port in range(8)}  # client port -> its worker
    for worker, load in ((a, a_load), (b, b_load)):  # the connections each worker has seen so far
        worker.seen = {("10.0.0.1", port): time.monotonic() for port, w in where.items() if w is worker}
        load.set(len(worker.seen))
    closes = 0

    async def request(port: int) -> None:
        nonlocal closes
        closed = []

        async def send(message):
            if message["type"] == "http.response.start":
                closed.append((b"connection", b"close") in message["headers"])

        await where[port]({"type": "http", "client": ("10.0.0.1", port)}, None, send)
        if closed[0]:  # the client reconnects at once; here it lands on the other worker
            closes += 1
            where[port] = b if where[port] is a else a
            await request(port)

    async def rounds(n: int) -> None:
        for _ in range(n):
            for port in range(8):
                await request(port)

    asyncio.run(rounds(30))
    assert sum(w is a for w in where.values()) == 4 and closes == 2
    assert len(a.seen) == len(b.seen) == 4 and a_load.mean() == 4.0
    asyncio.run(rounds(100))
    assert closes == 2  # balanced: only the 1-in-N budget, here never

    async def probes(n: int) -> None:  # one request per connection: health probes, one-off callers
        for port in range(1000, 1000 + n):
            where[port] = a
            await request(port)

    asyncio.run(probes(50))
    assert len(a.seen) == 4 and a_load.mean() == 4.0  # they do not count as A's connections
    asyncio.run(rounds(20))
    assert closes == 2


@pytest.fixture(scope="module")
def client(tiny_artifact):
    """The service in-process (validation and batching run as in production)."""
    from starlette.testclient import TestClient

    mp = pytest.MonkeyPatch()
    mp.setenv("PROMPTBERT_ARTIFACT", str(tiny_artifact))
    mp.setenv("PROMPTBERT_MAX_CHARS", "300")
    mp.setenv("PROMPTBERT_MAX_ITEMS", "8")
    mp.setenv("PROMPTBERT_WORKERS", "2")  # the import-time wiring of several workers (ASGI runs in this process)
    mp.setenv("PROMPTBERT_KEEPALIVE_REQUESTS", "1")  # every response closes its connection: visible below
    mp.setenv("PROMPTBERT_CALL_COST", "20")  # reaches the pipeline: /metadata says so
    import service

    importlib.reload(service)  # settings are read at import
    with TestClient(service.PromptBertNER.to_asgi()) as c:
        yield c
    mp.undo()


def test_tag_returns_pipeline_shape(client):
    r = client.post("/tag", json={"texts": TEXTS})
    assert r.status_code == 200
    out = r.json()
    assert len(out) == len(TEXTS) and out[2] == []
    for text, ents in zip(TEXTS, out):
        for e in ents:
            assert set(e) == {"entity_group", "score", "word", "start", "end"} and text[e["start"] : e["end"]] == e["word"]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/tag", b"not json", "Invalid JSON"),
        ("/tag", {"texts": "a string"}, "valid array"),
        ("/tag", {"texts": [1, 2]}, "valid string"),
        ("/tag", {"texts": []}, "at least 1 item"),
        ("/tag", {"texts": ["a"] * 9}, "at most 8 items"),
        ("/tag", {"texts": ["a" * 301]}, "at most 300 characters"),
        ("/tag_text", {"text": "John", "aggregation_strategy": "mean"}, "'simple', 'first', 'average' or 'max'"),
        ("/tag_text", {"text": "John", "min_score": 1.5}, "less than or equal to 1"),
        ("/tag_text", {"text": "John", "entity_types": ["DATE"]}, "unknown type 'DATE'"),
        ("/tag", {"text": ["John"]}, "Field required"),  # misspelt field: never a default answer
        ("/tag", {"texts": ["John"], "min_scor": 0.5}, "Extra inputs are not permitted"),
        ("/tag_text", {"text": "John", "min_scor": 0.5}, "Extra inputs are not permitted"),
        ("/tag_text", {}, "Field required"),
    ],
)
def test_bad_requests_are_4xx_with_message_and_service_keeps_serving(client, path, body, needle):
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.post(path, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert needle in r.text and isinstance(r.json(), dict) and "error" in r.json()  # one body shape for every 400
    assert client.post("/tag", json={"texts": ["John met Mary"]}).status_code == 200


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00\x01\x02", "\u200b\u200b", "é" * 300, "🙂 Paris 🙂 " * 20])
def test_odd_texts_get_correct_answers(client, text):
    r = client.post("/tag_text", json={"text": text[:300]})
    assert r.status_code == 200
    for e in r.json():
        assert text[e["start"] : e["end"]] == e["word"] and e["word"].strip()
    if not text.strip() or text.startswith("\x00") or text.startswith("\u200b"):
        assert r.json() == []


def test_tag_text_options(client):
    text = "John Smith visited Paris with Mary."
    everything = client.post("/tag_text", json={"text": text, "aggregation_strategy": "simple"}).json()
    only_loc = client.post("/tag_text", json={"text": text, "aggregation_strategy": "simple", "entity_types": ["LOC"]}).json()
    assert only_loc == [e for e in everything if e["entity_group"] == "LOC"]
    high = client.post("/tag_text", json={"text": text, "min_score": 0.99}).json()
    assert all(e["score"] >= 0.99 for e in high)


def approx(rows):
    """Entities with scores compared to 1e-4: dynamic int8 depends slightly on what shares a call."""
    return [[{**e, "score": pytest.approx(e["score"], abs=1e-4)} for e in row] for row in rows]


def test_inline_and_threaded_inference_agree(client, monkeypatch):
    """A batch runs on the event loop, in steps, or in a thread: the same answers, in order, either way."""
    import dataclasses

    import service

    body = {"texts": TEXTS}
    inline = client.post("/tag", json=body).json()
    monkeypatch.setattr(service, "CONFIG", dataclasses.replace(service.CONFIG, inline_chars=0))
    threaded = client.post("/tag", json=body).json()
    one = client.post("/tag_text", json={"text": TEXTS[1]}).json()
    assert inline == threaded and any(threaded)
    assert approx([one]) == [threaded[1]]  # int8: its scale spans the call, and alone it is another call
    # Budget 26: three steps, sorted by length; the 44-character text is over it and runs in a thread.
    monkeypatch.setattr(service, "CONFIG", dataclasses.replace(service.CONFIG, inline_chars=26))
    stepped = client.post("/tag", json=body).json()
    assert approx(stepped) == threaded and [e["word"] for e in stepped[0]] == [e["word"] for e in threaded[0]]


@pytest.fixture(scope="module")
def instance(client):
    """A second PromptBertNER instance under the client fixture's settings (the tiny artifact)."""
    import service

    return service.PromptBertNER.inner()


def test_every_api_answers_json_by_declaration(client):
    """Each API declares its media type (BentoML would otherwise derive it from the schema per response)."""
    import service

    assert {name: api.output_spec.media_type for name, api in service.PromptBertNER.apis.items()} == {
        "tag": "application/json", "tag_text": "application/json", "metadata": "application/json"}
    r = client.post("/tag", json={"texts": TEXTS[:1]})
    assert r.headers["content-type"] == "application/json" and r.json()[0]


def test_warm_up_is_not_counted_in_the_model_metrics(client, monkeypatch):
    """/metrics counts requests only: a worker's warm-up call, made before it is ready, is not observed
    (counted, it lands in whatever a benchmark measures while a second worker starts)."""
    import asyncio

    import service

    calls: list[int] = []
    monkeypatch.setattr(service, "model_call_metrics", lambda: lambda arrays, elapsed: calls.append(len(arrays["input_ids"])))
    instance = service.PromptBertNER.inner()
    assert calls == [] and instance.ready
    asyncio.run(instance._infer(["John Smith visited Paris."]))
    assert calls == [1]


@pytest.mark.parametrize("yields, queued", [(0, 0), (4, 1)])
def test_inline_batch_lets_arrived_requests_reach_the_queue_before_answering(instance, monkeypatch, yields, queued):
    """A request read while an inline batch ran needs three loop turns to reach BentoML's batch
    queue; the batch's answers wait for them (gather_yields), so the dispatcher's next take holds it."""
    import asyncio
    import dataclasses

    import service

    monkeypatch.setattr(service, "CONFIG", dataclasses.replace(service.CONFIG, gather_yields=yields))

    async def scenario() -> int:
        queue: list[str] = []

        async def arrival() -> None:  # read, ASGI task, timeout task: three turns of the loop
            for _ in range(2):
                await asyncio.sleep(0)
            queue.append("request")

        task = asyncio.ensure_future(arrival())
        answers = await instance._infer(TEXTS[:1], "first")
        assert answers and answers[0]
        at_answer = len(queue)
        await task
        return at_answer

    assert asyncio.run(scenario()) == queued


def test_requests_skip_tracing_unless_asked(client):
    """Tracing off (the default): /tag skips BentoML's OpenTelemetry middleware, whose span id is the request id."""
    r = client.post("/tag", json={"texts": ["John Smith visited Paris."]})
    assert r.status_code == 200 and "x-bentoml-request-id" not in r.headers
    assert client.post("/metadata", json={}).json()["tracing"] is False


def test_several_workers_close_keepalive_connections(client):
    """service.py adds the keep-alive budget when it runs several workers (the fixture: 2 workers, budget 1)."""
    r = client.post("/tag", json={"texts": ["John Smith visited Paris."]})
    assert r.status_code == 200 and r.headers["connection"] == "close"


def test_metadata_reports_model_and_provider(client, tiny_artifact):
    m = client.post("/metadata", json={}).json()
    manifest = json.loads((tiny_artifact / "manifest.json").read_text())
    # What the machine has: fp16 on the CUDA provider beside a GPU, int8 on the CPU without one.
    assert (m["variant"], m["providers"][0]) == (("fp16", CUDA) if cuda_available() else ("int8", CPU))
    import onnxruntime as ort  # the build that serves, beside the export machine's versions

    assert m["serving_versions"]["onnxruntime (loaded)"] == f"{ort.__version__} {ort.get_device()}"
    assert m["versions"] == manifest["versions"]
    assert m["prompt"]["fingerprint"] == manifest["prompt"]["fingerprint"]
    assert m["entity_types"] == ["PER", "ORG", "LOC", "MISC"] and m["default_aggregation"] in ("first", "average", "max")
    assert m["word_splitter"] == WORD_SPLITTER and m["split_sentences"] is True
    assert m["casing"] == manifest["encoding"]["casing"] == CASING_SCHEME and m["context_tokens"] == 0
    assert m["call_cost"] == {"per_call": 20.0, "per_row": 2.1}
    assert client.get("/readyz").status_code == 200 and client.get("/livez").status_code == 200


@pytest.mark.slow
def test_real_bentoml_serve_batches_and_matches_predict(tiny_artifact):
    """`bentoml serve` in a subprocess: ready, concurrent requests batched, answers == `promptbert predict`.

    Compared under fp32: dynamic int8 takes activation scales over the whole batch, so an int8
    answer may shift slightly with what else is in the batch (see README); fp32 does not.
    """
    import bentoml

    from promptbert.launch import ServedArtifact, metric_sums

    # One worker: /metadata's batch counter is per worker.
    env = {"PROMPTBERT_MAX_LATENCY_MS": "5000", "PROMPTBERT_MAX_BATCH_SIZE": "16", "PROMPTBERT_VARIANT": "fp32",
           "PROMPTBERT_WORKERS": "1"}
    texts = [f"John Smith number {i} visited Paris and London with Mary Jones." for i in range(48)]
    with ServedArtifact(tiny_artifact, env=env) as url:
        before = metric_sums(url)
        with bentoml.SyncHTTPClient(url, timeout=60) as c:
            assert c.is_ready()
            single = c.tag(texts=TEXTS)
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda t: c.tag(texts=[t])[0], texts))
            meta = c.metadata()
        import urllib.request

        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        after = metric_sums(url)
    assert meta["variant"] == "fp32"
    # promptbert's model metrics: one row per text (each has one window), text tokens <= computed tokens.
    grew = {k: after[k] - before.get(k, 0.0) for k in after if k.startswith("promptbert_model_")}
    assert grew["promptbert_model_rows_total"] == len([t for t in TEXTS if t.strip()]) + len(texts)
    assert 1 <= grew["promptbert_model_call_seconds_count"] < grew["promptbert_model_rows_total"]
    assert 0 < grew["promptbert_model_tokens_total"] <= grew["promptbert_model_padded_tokens_total"]
    assert grew["promptbert_model_call_seconds_sum"] > 0
    assert any(int(size) > 1 for size in meta["batch_sizes_seen"]), meta["batch_sizes_seen"]
    # The worker froze its start-up heap and collects the young generation less often (tune_gc).
    assert meta["gc"]["frozen_objects"] > 10000 and meta["gc"]["thresholds"][0] == 10000
    assert re.search(r"bentoml_service_adaptive_batch_size_bucket\{[^}]*\} \d", metrics)

    def predict(items):
        r = subprocess.run([sys.executable, "-m", "promptbert.cli", "predict", str(tiny_artifact), *items, "--json",
                            "--variant", "fp32"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    assert approx(predict(TEXTS)) == single
    assert approx(predict(texts)) == answers


@pytest.mark.slow
def test_tracing_on_with_an_exporter_traces_requests(tiny_artifact, tmp_path):
    """`bentoml serve` with PROMPTBERT_TRACING=on and a BentoML exporter: spans (and their request ids) are back."""
    import urllib.request

    from promptbert.launch import ServedArtifact, post_json

    config = tmp_path / "bentoml.yaml"
    config.write_text("tracing:\n  exporter_type: in_memory\n  sample_rate: 1.0\n")
    with ServedArtifact(tiny_artifact, env={"BENTOML_CONFIG": str(config), "PROMPTBERT_WORKERS": "1",
                                                   "PROMPTBERT_TRACING": "on"}) as url:
        req = urllib.request.Request(f"{url}/tag", data=json.dumps({"texts": TEXTS[:2]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200 and r.headers.get("x-bentoml-request-id")
        assert post_json(f"{url}/metadata", {})["tracing"] is True


@pytest.mark.slow
@pytest.mark.parametrize("setting, line", [
    ({"PROMPTBERT_MAX_CHARS": "lots"}, "promptbert: PROMPTBERT_MAX_CHARS: expected int, got 'lots'"),
    ({"PROMPTBERT_MAX_BATCHSIZE": "64"}, "promptbert: PROMPTBERT_MAX_BATCHSIZE: unknown setting (known: PROMPTBERT_ARTIFACT, "),
    ({"PROMPTBERT_ARTIFACT": "/nonexistent/artifact"}, "promptbert: /nonexistent/artifact: artifact folder not found"),
    ({"PROMPTBERT_ARTIFACT": "{broken}"},
     "promptbert: {onnx}: does not match the manifest's sha256 (corrupt or modified file)"),
])
def test_bad_setting_stops_bentoml_serve_with_one_line(tiny_artifact, tmp_path, setting, line):
    """An SRE's typo in a PROMPTBERT_* variable or artifact path, or a half-copied artifact: exit 2 and one
    line naming it, not a loader traceback, and not workers restarted in a loop by a serve that never exits."""
    from promptbert.launch import ROOT, free_port

    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    onnx = broken / VARIANT_FILES[Artifact(broken).choose()[0]]  # the file this machine would serve
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])  # an interrupted copy
    setting = {k: v.format(broken=broken) for k, v in setting.items()}
    line = line.format(broken=broken, onnx=onnx)
    env = {**os.environ, "PROMPTBERT_ARTIFACT": str(tiny_artifact), "BENTOML_DO_NOT_TRACK": "true", **setting}
    r = subprocess.run([sys.executable, "-m", "bentoml", "serve", "service:PromptBertNER", "--host", "127.0.0.1",
                        "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out
    (printed,) = out.strip().splitlines()
    assert printed == line or (line.endswith(", ") and printed.startswith(line))


def test_serving_stats_from_two_metrics_readings():
    """Differences of /metrics sums: requests per batch, ORT calls, rows per call, padding; None without counters."""
    from promptbert.launch import serving_stats

    before = {"bentoml_service_adaptive_batch_size_count": 10, "bentoml_service_adaptive_batch_size_sum": 20,
              "promptbert_model_call_seconds_count": 5, "promptbert_model_call_seconds_sum": 1.0,
              "promptbert_model_rows_total": 5, "promptbert_model_padded_tokens_total": 100, "promptbert_model_tokens_total": 90}
    after = {"bentoml_service_adaptive_batch_size_count": 14, "bentoml_service_adaptive_batch_size_sum": 32,
             "promptbert_model_call_seconds_count": 9, "promptbert_model_call_seconds_sum": 1.5,
             "promptbert_model_rows_total": 17, "promptbert_model_padded_tokens_total": 300, "promptbert_model_tokens_total": 240}
    got = serving_stats(before, after)
    assert got["model_calls"] == 4 and got["mean_batch_requests"] == 3.0 and got["ort_calls"] == 4
    assert got["model_seconds"] == pytest.approx(0.5) and got["rows_per_ort_call"] == 3.0
    assert got["padding_share"] == pytest.approx(0.25)
    older = {k: v for k, v in after.items() if k.startswith("bentoml_")}  # a service without promptbert's counters
    assert serving_stats(before, older)["model_seconds"] is None and serving_stats(before, older)["rows_per_ort_call"] is None


def test_client_errors_log_one_line_and_server_faults_keep_their_traceback():
    """BentoML's request-exception records: a 4xx becomes one WARNING line, a disconnect one INFO line,
    anything else passes untouched with its traceback."""
    import logging

    import bentoml
    from pydantic import BaseModel, ValidationError
    from starlette.requests import ClientDisconnect

    from promptbert.bentoml_workarounds import ClientErrorLog

    class Body(BaseModel):
        texts: list[str]

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord("bentoml._internal.server.http_app", logging.ERROR, __file__, 1,
                                 "Exception on %s [%s]", ("/tag", "POST"), info)

    try:
        Body(texts="oops")
    except ValidationError as exc:
        invalid = exc
    f = ClientErrorLog()
    cases = {invalid: (logging.WARNING, "POST /tag 400: 1 validation error(s) for Body; texts: Input should be a valid list"),
             bentoml.exceptions.InvalidArgument("entity_types: unknown type 'X'"): (logging.WARNING,
                                                                                     "POST /tag 400: entity_types: unknown type 'X'"),
             ClientDisconnect(): (logging.INFO, "POST /tag: the client disconnected before its request was read")}
    for exc, (level, line) in cases.items():
        r = record(exc)
        assert f.filter(r) and (r.levelno, r.getMessage(), r.exc_info) == (level, line, None)
    fault = record(RuntimeError("a bug"))
    assert f.filter(fault) and fault.levelno == logging.ERROR and fault.exc_info[0] is RuntimeError
    assert fault.getMessage() == "Exception on /tag [POST]"


@pytest.mark.slow
def test_real_serve_logs_client_mistakes_as_one_line_each(tiny_artifact, tmp_path):
    """Over real HTTP: bad requests and a client that hangs up mid-body leave one line each in the serve's
    log, no ERROR and no traceback; the service keeps answering. Texts over the limit together are refused too."""
    import socket
    import time
    import urllib.error
    import urllib.request

    from promptbert.launch import ServedArtifact, post_json

    log = tmp_path / "serve.log"
    bad = [({"texts": []}, 400), ({"texts": ["x"], "oops": 1}, 400), ({"texts": "not a list"}, 400),
           ({"texts": ["a" * 400]}, 400), ({"texts": ["a" * 200, "b" * 200]}, 400), ({"texts": ["\ud800 x"]}, 400)]
    with ServedArtifact(tiny_artifact, log_path=log, env={"PROMPTBERT_WORKERS": "1", "PROMPTBERT_MAX_CHARS": "300"}) as url:
        for body, status in bad:
            req = urllib.request.Request(f"{url}/tag", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=30)
            assert err.value.code == status and "error" in json.loads(err.value.read())
        req = urllib.request.Request(f"{url}/tag_text", data=json.dumps({"text": "x", "entity_types": ["NOPE"]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 400
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:  # promises 1000 bytes, sends 10, hangs up
            s.sendall(b"POST /tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"texts\": ")
        assert post_json(f"{url}/tag", {"texts": ["John Smith visited Paris ."]})  # still serving
        deadline = time.monotonic() + 30  # the worker writes its log lines as it goes: wait for the last one
        while "the client disconnected" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "[ERROR]" not in text and " ERROR " not in text, text[-3000:]
    warned = [line for line in text.splitlines() if "POST /tag" in line and " 400: " in line]
    assert len(warned) == 7, text[-3000:]
    assert sum("POST /tag: the client disconnected" in line and "[INFO]" in line for line in text.splitlines()) == 1
