"""Label-semantic (head: types) models: the prompt's types are the labels, its encoding is cached.

Trained a few steps on two tiny corpora (conftest), exported, run in process and through a real
`bentoml serve`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from promptbert import constants as C
from promptbert.errors import InputError
from promptbert.prompt import PromptSpec, fingerprint, render
from promptbert.tagger import Tagger
from promptbert.typed import PromptCache, render_typed, spec_from_request

TEXT = "John Smith met the Acme Corp team in Paris ."
TEAM = {"role": "you tag names", "task": "label names as {labels}", "labels": {"team": "team names"}}
PLACES = {"role": "you tag names", "task": "find {labels}", "labels": {"LOC": "place", "PER": "person"}}


def test_rendering_spans_and_fingerprint_are_training_s(tiny_types_model):
    """A request naming the default prompt's fields renders to the very text (and fingerprint) training stored."""
    spec = PromptSpec.from_yaml(tiny_types_model / C.PROMPT_SPEC)
    stored = (tiny_types_model / C.PROMPT_TEXT).read_text(encoding="utf-8")
    manifest = json.loads((tiny_types_model / C.MANIFEST).read_text())
    as_request = spec_from_request({k: v for k, v in spec.to_dict().items() if k != "name"})
    text, spans = render_typed(as_request)
    assert text == stored and fingerprint(text) == manifest["prompt"]["fingerprint"]
    assert text == render(spec)  # the {labels} placeholder is filled as for a fixed-head model
    assert [text[a:b] for a, b in spans] == [f"{t} ({d})" for t, d in spec.labels.items()]
    # Without a {labels} placeholder the types still get a line (and a span) of their own.
    bare = spec_from_request({"role": "r", "task": "t", "labels": {"A": "first", "B": "second"}})
    text, spans = render_typed(bare)
    assert text.endswith("Types: A (first), B (second)") and [text[a:b] for a, b in spans] == ["A (first)", "B (second)"]
    # The same types as a list of objects: the same prompt.
    listed = spec_from_request({"role": "r", "task": "t", "labels": [{"name": "A", "description": "first"},
                                                                    {"name": "B", "description": "second"}]})
    assert render_typed(listed) == render_typed(bare)


def test_types_model_trains_on_two_corpora_and_exports(tiny_types_model, tiny_types_artifact):
    src = json.loads((tiny_types_model / C.MANIFEST).read_text())
    assert src["encoding"]["head"] == "types" and src["encoding"]["max_types"] == 8
    assert src["encoding"]["max_prompt_tokens"] == 512 - 48 - 3  # positions - text window - 3 specials
    assert set(src["training"]["corpora"]) == {"news", "teams"}
    assert src["training"]["corpora"]["teams"]["types"] == ["PER", "team"]  # "person" learnt as PER
    assert "dev:teams" in src["metrics"] and "test:news" in src["metrics"]
    art = json.loads((tiny_types_artifact / C.MANIFEST).read_text())
    assert art["encoding"]["head"] == "types" and set(art["variants"]) == {"fp32", "optimized", "int8", "fp16"}
    assert C.PROMPT_ENCODER in art["files"] and (tiny_types_artifact / C.PROMPT_ENCODER).is_file()
    parity = json.loads((tiny_types_artifact / C.PARITY).read_text())["fp32_vs_pytorch"]
    assert parity["passed"] and parity["prompts"] == 2 and parity["max_abs_logit_diff"] <= 1e-3


@pytest.mark.parametrize("prompt", [None, TEAM, PLACES])
def test_onnx_equals_pytorch_under_each_prompt(tiny_types_model, tiny_types_artifact, prompt):
    torch_tagger = Tagger.from_pretrained(tiny_types_model).under(prompt)
    onnx_tagger = Tagger.from_pretrained(tiny_types_artifact, "fp32").under(prompt)
    assert torch_tagger.entity_types == onnx_tagger.entity_types
    words = [TEXT.split(), "Mary visited the world cup team in London".split()]
    for a, b in zip(torch_tagger.piece_probs(words), onnx_tagger.piece_probs(words)):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-4)


def test_the_prompt_decides_the_labels(tiny_types_artifact):
    tagger = Tagger.from_pretrained(tiny_types_artifact, "int8")
    default = tagger.predict(TEXT)
    assert {e["entity_group"] for e in default} <= {"PER", "ORG", "LOC", "MISC"}
    team = tagger.predict([TEXT] * 2, prompt=TEAM, min_score=0.0)
    assert team[0] and all(e["entity_group"] == "team" for ents in team for e in ents) and team[0] == team[1]
    assert tagger.under(TEAM).labels.labels == ("O", "B-team", "I-team")
    # The prompt's encoding reaches the graph: one B and one I score per type it names, in its order.
    words = [TEXT.split()]
    assert tagger.piece_probs(words)[0][0].shape[-1] == 9 and tagger.under(TEAM).piece_probs(words)[0][0].shape[-1] == 3
    places, swapped = tagger.under(PLACES), tagger.under({**PLACES, "labels": {"PER": "person", "LOC": "place"}})
    p, q = places.piece_probs(words)[0][0], swapped.piece_probs(words)[0][0]
    assert not np.allclose(p, q)  # another prompt text: another encoding
    # A view's own prompt is what entity_types narrows (not the model's default).
    narrowed = places.under(None, ["LOC"])
    assert narrowed.entity_types == ("LOC",) and narrowed.prompt.spec.task == PLACES["task"]
    # entity_types asks the model for just those types (a prompt naming them), in that order.
    assert tagger.under(None, ["LOC"]).entity_types == ("LOC",)
    assert all(e["entity_group"] == "LOC" for e in tagger.predict(TEXT, entity_types=["LOC"]))
    assert tagger.under(PLACES, ["PER", "LOC"]).entity_types == ("PER", "LOC")
    stats = tagger.prompted.cache.stats()
    assert stats.hits >= 1 and stats.entries >= 3  # the second text under TEAM, and each distinct prompt once


def test_texts_under_different_prompts_share_model_calls(tiny_types_model, tiny_types_artifact):
    """A batch mixing prompts of different lengths and types runs as one model call, and every text gets
    what its prompt alone gives it, in PyTorch and ONNX alike; a backend that cannot mix runs prompt by prompt."""
    texts = [f"John Smith number {i} met the Acme Corp team in Paris ." for i in range(4)]  # one length: one call
    prompts = [TEAM, PLACES, None, TEAM]
    for tagger in (Tagger.from_pretrained(tiny_types_model), Tagger.from_pretrained(tiny_types_artifact, "fp32")):
        calls: list[int] = []
        tagger.observe(on_call=lambda arrays, seconds: calls.append(len(arrays["input_ids"])))
        mixed = tagger.predict_each(texts, prompts)
        assert calls == [len(texts)], calls
        alone = [tagger.predict(t, prompt=p) for t, p in zip(texts, prompts)]
        assert any(alone) and {e["entity_group"] for e in alone[0]} <= {"team"}
        _assert_same_entities(mixed, alone)
        calls.clear()
        tagger.prompted.mixes = False
        _assert_same_entities(tagger.predict_each(texts, prompts), mixed)
        assert len(calls) == 3


def test_rows_encoding_pads_prompts_and_types_and_old_graphs_refuse_it():
    """Per-row encodings: a shorter prompt is masked past its tokens, fewer types score PAD_BIAS past their
    labels; a graph without prompt_mask takes one encoding per call and says so."""
    from promptbert.runtime import ort_types_tagger
    from promptbert.typed import PAD_BIAS, as_rows, rows_encoding

    def enc(tokens: int, labels: int, fill: float) -> dict:
        return {"keys": np.full((2, 3, tokens, 4), fill, np.float32), "values": np.full((2, 3, tokens, 4), -fill, np.float32),
                "type_keys": np.full((labels, 5), fill, np.float32), "type_bias": np.full(labels, fill, np.float32)}

    a, b = enc(6, 2, 1.0), enc(3, 4, 2.0)
    rows = rows_encoding([a, b], np.array([1, 0, 1]))
    assert rows["keys"].shape == (3, 2, 3, 6, 4) and rows["type_keys"].shape == (3, 4, 5)
    assert rows["prompt_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6, [1, 1, 1, 0, 0, 0]]
    assert (rows["keys"][0, :, :, :3] == 2.0).all() and (rows["keys"][0, :, :, 3:] == 0).all()
    assert rows["type_bias"][1].tolist() == [1.0, 1.0, PAD_BIAS, PAD_BIAS] and (rows["type_keys"][1, 2:] == 0).all()
    one = as_rows(a)
    assert one["keys"].shape == (1, 2, 3, 6, 4) and one["prompt_mask"].tolist() == [[1] * 6]
    assert np.shares_memory(one["keys"], a["keys"])  # one prompt: a view, nothing copied

    class Inputs:  # a session whose graph takes one encoding per call (no prompt_mask input)
        def get_inputs(self):
            from types import SimpleNamespace

            names = ["input_ids", "attention_mask", "keys", "values", "type_keys", "type_bias"]
            return [SimpleNamespace(name=n, type="tensor(float)") for n in names]

        def run(self, names, feed):
            assert "prompt_mask" not in feed and feed["keys"].ndim == 4
            return [np.zeros((1, 1, 1), np.float32)]

    tag = ort_types_tagger(Inputs())
    batch = {"input_ids": np.ones((1, 1), np.int64), "attention_mask": np.ones((1, 1), np.int64)}
    assert not tag.mixes and tag(batch, a).shape == (1, 1, 1)
    with pytest.raises(ValueError, match="one prompt per call"):
        tag(batch, rows)


def test_predict_each_narrows_every_prompt_to_entity_types(tiny_types_artifact):
    tagger = Tagger.from_pretrained(tiny_types_artifact, "fp32")
    texts = [TEXT, "Mary Jones flew to London ."]
    got = tagger.predict_each(texts, [PLACES, None], entity_types=["LOC"])
    _assert_same_entities(got, [tagger.predict(t, prompt=p, entity_types=["LOC"]) for t, p in zip(texts, [PLACES, None])])
    assert all(e["entity_group"] == "LOC" for ents in got for e in ents)
    with pytest.raises(InputError, match="2 for 1 texts"):
        tagger.predict_each([TEXT], [None, None])


def _assert_same_entities(a: list, b: list, atol: float = 1e-5) -> None:
    for got, want in zip(a, b, strict=True):
        assert [{**e, "score": 0} for e in got] == [{**e, "score": 0} for e in want]
        assert np.allclose([e["score"] for e in got], [e["score"] for e in want], atol=atol)


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        ({"role": "r", "task": "t", "labels": {}}, "prompt.labels: a prompt needs at least one entity type"),
        ({"role": "r", "task": "t", "labels": {f"T{i}": "x" for i in range(9)}}, "9 entity types, more than the 8"),
        ({"role": "r", "task": "t", "labels": [{"name": "A", "description": "x"}, {"name": "A", "description": "y"}]},
         "prompt.labels.A: duplicate type name"),
        ({"role": "r", "task": "t", "labels": {"team": "x", "Team": "y"}}, "prompt.labels.Team: duplicate type name"),
        ({"role": "r", "task": "t", "labels": {"A": " "}}, "labels.A: the description must not be empty"),
        ({"role": "r", "task": "t", "labels": {"A": "x"}, "colour": "red"}, "colour: unknown key"),
        ({"role": "r " * 600, "task": "t", "labels": {"A": "x"}}, "tokens, more than the 461"),
        ({"role": "r", "task": "t", "labels": {"\u200b": "x"}}, "is no token for this tokenizer"),
        ({"role": "", "task": "t", "labels": {"A": "x"}}, "role: must not be empty"),
        ("a string", "prompt: expected an object"),
    ],
)
def test_bad_prompts_name_the_field(tiny_types_artifact, prompt, needle):
    tagger = Tagger.from_pretrained(tiny_types_artifact, "fp32")
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        tagger.predict(TEXT, prompt=prompt)


def test_fixed_head_models_refuse_prompts(tiny_artifact):
    with pytest.raises(InputError, match="fixed label set"):
        Tagger.from_pretrained(tiny_artifact, "fp32").predict(TEXT, prompt=TEAM)


def test_prompt_cache_evicts_by_entries_and_bytes_and_never_fails(tiny_types_artifact):
    tagger = Tagger.from_pretrained(tiny_types_artifact, "fp32")
    prompts = [tagger.prepare({"role": "r", "task": "t", "labels": {f"T{i}": "x"}}) for i in range(5)]
    calls = []

    def encode(ids, mask):
        calls.append(ids.shape)
        return {"keys": np.zeros((4, 100), np.float32)}  # 1,600 bytes

    by_entries = PromptCache(encode, max_entries=2, max_bytes=1 << 20)
    for p in prompts + prompts[-2:]:
        by_entries.get(p)
    s = by_entries.stats()
    assert (s.entries, s.misses, s.hits, s.evictions) == (2, 5, 2, 3)
    by_bytes = PromptCache(encode, max_entries=100, max_bytes=3500)  # room for two
    for p in prompts:
        by_bytes.get(p)
    assert by_bytes.stats().entries == 2 and by_bytes.stats().bytes == 3200
    too_small = PromptCache(encode, max_entries=100, max_bytes=1000)  # an encoding bigger than the budget
    assert too_small.get(prompts[0])["keys"].shape == (4, 100) and too_small.stats().entries == 0
    # Threads asking for the same and for different prompts all get the right encoding.
    shared = PromptCache(lambda ids, mask: {"ids": ids.copy()}, max_entries=3, max_bytes=1 << 20)
    wrong = []

    def worker(k: int) -> None:
        for j in range(50):
            p = prompts[(k + j) % 5]
            if shared.get(p)["ids"].tolist() != [list(p.head_ids)]:
                wrong.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong and shared.stats().entries <= 3


def test_cli_predict_and_evaluate_under_a_prompt(tiny_types_artifact, tiny_corpus, tmp_path):
    prompt = tmp_path / "places.yaml"
    prompt.write_text("role: you tag names\ntask: find {labels}\nlabels: {LOC: place}\n", encoding="utf-8")
    cli = [sys.executable, "-m", "promptbert.cli"]
    r = subprocess.run([*cli, "predict", str(tiny_types_artifact), TEXT, "--prompt", str(prompt), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert all(e["entity_group"] == "LOC" for e in json.loads(r.stdout)[0])
    out = tmp_path / "rep.json"
    r = subprocess.run([*cli, "evaluate", str(tiny_types_artifact), "--data", str(tiny_corpus), "--split", "test",
                        "--prompt", str(prompt), "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(out.read_text())["report"]) - {"micro avg", "macro avg", "weighted avg"} >= {"LOC"}
    assert "PER" not in json.loads(out.read_text())["report"]  # gold PER counts as O under a LOC-only prompt
    obey = tmp_path / "obey.json"
    r = subprocess.run([*cli, "prompts", "obey", str(tiny_types_artifact), "--data", str(tiny_corpus), "--split", "test",
                        "--draws", "3", "--output", str(obey)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(obey.read_text())
    assert len(rep["draws"]) == 3 and all(len(d["types"]) == 2 and d["unnamed_entities"] == 0 for d in rep["draws"])
    for d in rep["draws"]:  # F1 is the harmonic mean of the precision and recall reported beside it
        p, r_ = d["precision"], d["recall"]
        assert d["f1"] == pytest.approx(2 * p * r_ / (p + r_) if p + r_ else 0.0)
        pf, rf = d["precision_full_prompt"], d["recall_full_prompt"]
        assert d["f1_full_prompt"] == pytest.approx(2 * pf * rf / (pf + rf) if pf + rf else 0.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("role: r\ntask: t\nlabels: {}\n", encoding="utf-8")
    r = subprocess.run([*cli, "predict", str(tiny_types_artifact), TEXT, "--prompt", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "prompt.labels" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def types_url(tiny_types_artifact):
    """A real `bentoml serve` of the types artifact (one worker: /metadata's cache is per worker)."""
    from promptbert.launch import ServedArtifact

    env = {"PROMPTBERT_WORKERS": "1", "PROMPTBERT_VARIANT": "fp32", "PROMPTBERT_MAX_LATENCY_MS": "5000"}
    with ServedArtifact(tiny_types_artifact, env=env) as url:
        yield url


def post(url: str, body: object) -> tuple[int, str]:
    """Status and body text of a POST (a 4xx too)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        ({"role": "r", "task": "t", "labels": {}}, "prompt.labels: a prompt needs at least one entity type"),
        ({"role": "r", "task": "t", "labels": {f"T{i}": "x" for i in range(9)}}, "more than the 8"),
        ({"role": "r", "task": "t", "labels": [{"name": "A", "description": "x"}, {"name": "A", "description": "y"}]},
         "prompt.labels.A: duplicate type name"),
        ({"role": "r", "task": "t", "labels": {"A": ""}}, "prompt.labels.A: the description must not be empty"),
        ({"role": "r", "task": "t", "labels": {"A": "x"}, "colour": "red"}, "Extra inputs are not permitted"),
        ({"role": "r " * 600, "task": "t", "labels": {"A": "x"}}, "more than the 461"),
        ({"role": "r", "task": "t", "labels": {"\u200b": "x"}}, "is no token for this tokenizer"),
    ],
)
@pytest.mark.parametrize("path", ["/tag", "/tag_text"])
def test_service_answers_a_bad_prompt_with_400(types_url, path, prompt, needle):
    body = {"texts": [TEXT], "prompt": prompt} if path == "/tag" else {"text": TEXT, "prompt": prompt}
    status, text = post(types_url + path, body)
    assert status == 400 and needle in text and "error" in json.loads(text), text
    assert "prompt" in text and ("colour" in text or "colour" not in prompt)  # the field is named
    assert post(types_url + "/tag", {"texts": [TEXT]})[0] == 200


def test_service_metadata_reports_head_limits_and_cache(types_url):
    import urllib.request

    assert post(types_url + "/tag_text", {"text": TEXT, "prompt": TEAM})[0] == 200
    meta = json.loads(post(types_url + "/metadata", {})[1])
    assert meta["head"] == "types" and meta["prompt_limits"] == {"max_prompt_tokens": 461, "max_types": 8}
    assert meta["prompt_cache"]["entries"] >= 2 and meta["prompt_cache"]["max_entries"] == 256
    with urllib.request.urlopen(types_url + "/docs.json", timeout=30) as r:
        schema = json.loads(r.read().decode())  # /tag documents its prompt though it is no batched field
    tag = schema["paths"]["/tag"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert set(tag) == {"texts", "prompt"} and "labels" in json.dumps(tag["prompt"])


def test_real_serve_obeys_each_request_s_prompt_and_caches_it(tiny_types_artifact, types_url):
    """`bentoml serve`: answers carry only the prompt's types, a repeated prompt is a cache hit, and
    concurrent requests with different prompts (batched together) each get their own prompt's answer."""
    from concurrent.futures import ThreadPoolExecutor

    from promptbert.launch import metric_sums, post_json

    local = Tagger.from_pretrained(tiny_types_artifact, "fp32")
    prompts = [TEAM, PLACES, None]
    texts = [f"John Smith number {i} met the Acme Corp team in Paris ." for i in range(24)]
    url = types_url
    first = post_json(f"{url}/tag_text", {"text": TEXT, "prompt": TEAM})
    before = metric_sums(url)
    again = post_json(f"{url}/tag_text", {"text": TEXT, "prompt": TEAM})
    after = metric_sums(url)

    def one(i: int) -> list:
        body = {"texts": [texts[i]], **({"prompt": prompts[i % 3]} if prompts[i % 3] else {})}
        return post_json(f"{url}/tag", body)[0]

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, range(len(texts))))
    meta = post_json(f"{url}/metadata", {})
    assert first == again and all(e["entity_group"] == "team" for e in first)
    assert after["promptbert_prompt_cache_hits_total"] - before.get("promptbert_prompt_cache_hits_total", 0) == 1
    assert after["promptbert_prompt_cache_misses_total"] == before["promptbert_prompt_cache_misses_total"]
    assert any(int(size) > 1 for size in meta["batch_sizes_seen"]), meta["batch_sizes_seen"]

    assert all(answers[i] and {e["entity_group"] for e in answers[i]} == {"team"} for i in range(0, len(texts), 3))
    assert all({e["entity_group"] for e in answers[i]} <= {"LOC", "PER"} for i in range(1, len(texts), 3))
    for i, got in enumerate(answers):  # fp32: a batch's answer equals the text's own, up to float rounding
        want = local.predict(texts[i], prompt=prompts[i % 3])
        assert [{**e, "score": 0} for e in got] == [{**e, "score": 0} for e in want], i
        assert np.allclose([e["score"] for e in got], [e["score"] for e in want], atol=1e-4), i


def test_a_types_model_folder_fine_tunes_with_its_head(tiny_types_model, tiny_corpus, tiny_prompt, tmp_path):
    """A types model as base_model (few-shot on a new corpus) starts from its label-semantic head, not a fresh one."""
    from safetensors.numpy import load_file

    from promptbert.training.train import train
    from promptbert.training.typed import HEAD_WEIGHTS

    from .conftest import tiny_train_config

    out = tmp_path / "tuned"
    train(tiny_train_config(tiny_types_model, tiny_corpus, tiny_prompt, out, head="types", max_steps=1,
                            text_tokens=48, max_types=8, learning_rate=1e-12, warmup_ratio=0.0))
    before, after = load_file(str(tiny_types_model / HEAD_WEIGHTS)), load_file(str(out / HEAD_WEIGHTS))
    assert set(before) == set(after)
    for k in before:
        np.testing.assert_allclose(after[k], before[k], atol=1e-6)


def test_a_repeated_request_prompt_is_prepared_once(tiny_types_artifact):
    tagger = Tagger.from_pretrained(tiny_types_artifact, "fp32")
    first = tagger.prepare(json.loads(json.dumps(TEAM)))
    assert tagger.prepare(json.loads(json.dumps(TEAM))) is first  # the same JSON: remembered, not re-tokenized
    assert tagger.prepare(TEAM, ["team"]) is not first and tagger.prepare(TEAM, ["team"]).types == ("team",)
    bad = {"role": "r", "task": "t", "labels": {}}
    for _ in range(2):  # a bad prompt is refused every time, never remembered
        with pytest.raises(InputError, match="prompt.labels"):
            tagger.prepare(bad)


def test_lint_against_a_model_checks_the_prompt_as_a_request(tiny_types_artifact, tiny_artifact, tmp_path, capsys):
    from promptbert.cli.main import main

    places = tmp_path / "places.yaml"
    places.write_text("role: you tag names\ntask: find {labels}\nlabels: {LOC: place, city: towns}\n", encoding="utf-8")
    tokens = Tagger.from_pretrained(tiny_types_artifact, "fp32").prepare(PromptSpec.from_yaml(places)).tokens
    assert main(["prompts", "render", str(places), "--model", str(tiny_types_artifact)]) == 0
    out = capsys.readouterr().out
    assert "LOC (place)" in out and f"--- {tokens} tokens, 2 types" in out and "takes up to 461 tokens" in out
    assert main(["prompts", "lint", str(places), "--model", str(tiny_types_artifact), "--types", "city"]) == 1
    out = capsys.readouterr().out
    assert "1 types" in out and "LOC (place)" not in out and "empty part: requirements" in out
    clean = tmp_path / "clean.yaml"
    clean.write_text("role: r\ntask: find {labels}\nrequirements: [whole names]\ndetails: {tips: [t]}\n"
                     "labels: {LOC: place}\n", encoding="utf-8")
    assert main(["prompts", "lint", str(clean), "--model", str(tiny_types_artifact)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("ok")
    long = tmp_path / "long.yaml"
    long.write_text("role: " + "r " * 600 + "\ntask: t\nlabels: {A: x}\n", encoding="utf-8")
    assert main(["prompts", "lint", str(long), "--model", str(tiny_types_artifact)]) == 2
    assert "prompt: renders to" in capsys.readouterr().err  # the service's 400 message
    assert main(["prompts", "lint", str(places), "--model", str(tiny_types_artifact), "--types", "PER"]) == 2
    assert "unknown type 'PER'" in capsys.readouterr().err
    assert main(["prompts", "render", str(places), "--model", str(tiny_artifact)]) == 2
    assert "fixed label set" in capsys.readouterr().err


def test_int8_of_the_attention_products_quantizes_the_prompt_s_too(tiny_types_model, tiny_types_artifact, tmp_path):
    """A ladder rung with ``products`` quantizes the MatMuls of two activations (queries by the cached prompt keys,
    probabilities by its values, and the text's own) beside the weights, and the graph still obeys each prompt."""
    from promptbert.errors import ConfigError
    from promptbert.export.config import ExportConfig, QuantCandidate
    from promptbert.export.onnx_export import count_ops, export

    with pytest.raises(ConfigError, match="products applies to graph: fused"):
        QuantCandidate("raw-products", products=True)
    rung = QuantCandidate("fused-products", graph="fused", products=True)
    out = tmp_path / "products"
    export(tiny_types_model, out, ExportConfig(variants=("int8",), quant_ladder=(rung,), allow_degraded=True))
    manifest = json.loads((out / C.MANIFEST).read_text())
    assert manifest["variants"]["int8"]["quantization"]["products"] is True
    layers = json.loads((out / "config.json").read_text())["num_hidden_layers"]
    integer = lambda ops: ops.get("MatMulInteger", 0)  # noqa: E731  (weights go to DynamicQuantizeMatMul)
    with_products = integer(count_ops(out / C.VARIANT_FILES["int8"]))
    # per layer: queries by the prompt's keys and by the text's, probabilities by each one's values; and the
    # words' scores against the type vectors
    assert with_products - integer(count_ops(tiny_types_artifact / C.VARIANT_FILES["int8"])) == 4 * layers + 1
    tagger = Tagger.from_pretrained(out, "int8")
    assert all(e["entity_group"] == "team" for e in tagger.predict(TEXT, prompt=TEAM, min_score=0.0))
    assert tagger.under(TEAM).piece_probs([TEXT.split()])[0][0].shape[-1] == 3
