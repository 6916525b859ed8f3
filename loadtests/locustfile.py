"""Locust load test of the promptbert service: short texts, mixed batches, long documents, invalid requests.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:3000 --headless -u 8 -r 4 -t 60s --csv out/locust
    python -m promptbert.loadtests.run --host http://127.0.0.1:3000 --profile cpu --users 8 --duration 60s   # with gates

Distributed (beyond one machine's load): one master, N workers, same file:
    locust -f loadtests/locustfile.py --master --headless -u 256 -r 32 -t 5m --expect-workers 4 --host URL
    locust -f loadtests/locustfile.py --worker --master-host MASTER_IP      # on each load machine

Payloads: PROMPTBERT_LOADTEST_CORPUS = a text file (one text per line) or a CoNLL file (sentences
are joined); default: the project's demo texts. 429/503 are load shedding by BentoML, reported as
failures whose message starts with "shed load" so the runner can count them apart from real errors.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import HttpUser, constant, events, task

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"max_chars": 100_000}  # the service's default; read from its /metadata when the test starts


def load_texts(path: str | None) -> list[str]:
    """Texts from a one-per-line file or a CoNLL file (words joined with spaces)."""
    p = Path(path) if path else ROOT / "data" / "demo" / "texts.txt"
    lines = p.read_text(encoding="utf-8").splitlines()
    if any(len(ln.split()) >= 2 and ln.split()[-1][:2] in ("O", "B-", "I-") for ln in lines[:50]):
        texts, words = [], []
        for ln in lines + [""]:
            cols = ln.split()
            if not cols or cols[0] == "-DOCSTART-":
                if words:
                    texts.append(" ".join(words))
                    words = []
                continue
            words.append(cols[0])
        return texts
    return [ln for ln in lines if ln.strip()]


TEXTS = load_texts(os.environ.get("PROMPTBERT_LOADTEST_CORPUS"))
SENT = {"texts": 0}


@events.test_start.add_listener
def _read_limits(environment, **kw) -> None:  # noqa: ANN001
    """The invalid-request task must exceed the limit the service really has, whatever its settings."""
    import requests

    try:
        LIMITS["max_chars"] = int(requests.post(f"{environment.host}/metadata", json={}, timeout=10).json()["limits"]["max_chars"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        pass  # keep the default; a wrong limit shows up as failed invalid requests


def _check(resp, expect_ok: bool, n_texts: int) -> None:  # noqa: ANN001
    if resp.status_code in (429, 503):
        resp.failure(f"shed load {resp.status_code}")
    elif expect_ok and resp.status_code == 200:
        SENT["texts"] += n_texts
        resp.success()
    elif not expect_ok and 400 <= resp.status_code < 500:
        resp.success()  # a bad request correctly refused
    else:
        resp.failure(f"unexpected {resp.status_code}: {resp.text[:120]}")


class NERUser(HttpUser):
    """A client mix: mostly single texts, some batches and long documents, a few invalid requests."""

    wait_time = constant(float(os.environ.get("PROMPTBERT_LOADTEST_WAIT", "0")))

    @task(60)
    def single_text(self) -> None:
        with self.client.post("/tag", json={"texts": [random.choice(TEXTS)]}, name="/tag [1 text]", catch_response=True) as r:
            _check(r, True, 1)

    @task(25)
    def mixed_batch(self) -> None:
        texts = random.sample(TEXTS, k=min(len(TEXTS), random.randint(2, 8)))
        with self.client.post("/tag", json={"texts": texts}, name="/tag [2-8 texts]", catch_response=True) as r:
            _check(r, True, len(texts))

    @task(8)
    def long_document(self) -> None:
        doc = " ".join(random.sample(TEXTS, k=min(len(TEXTS), 40)))[: LIMITS["max_chars"] - 1]
        with self.client.post("/tag_text", json={"text": doc}, name="/tag_text [long doc]", catch_response=True) as r:
            _check(r, True, 1)

    @task(2)
    def invalid(self) -> None:
        body = random.choice([{"texts": []}, {"texts": "not a list"}, {"texts": ["x" * (LIMITS["max_chars"] + 1)]}, {"text": 5}])
        with self.client.post("/tag", json=body, name="/tag [invalid -> 4xx]", catch_response=True) as r:
            _check(r, False, 0)


@events.quitting.add_listener
def _write_counts(environment, **kw) -> None:  # noqa: ANN001
    path = os.environ.get("PROMPTBERT_LOADTEST_COUNTS")
    if path:
        Path(path).write_text(json.dumps(SENT), encoding="utf-8")
