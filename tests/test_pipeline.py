"""TaggingPipeline on a real (tiny) artifact: what reaches the model."""

import pytest

from promptbert.runtime import Artifact


def test_texts_without_words_never_reach_the_model(tiny_artifact):
    pipe, _ = Artifact(tiny_artifact).pipeline("fp32", "cpu")
    calls: list[int] = []
    pipe.on_call = lambda arrays, _: calls.append(len(arrays["input_ids"]))
    assert pipe.entities(["", "   ", "\n\t"]) == [[], [], []] and calls == []
    text = "John Smith visited Paris."
    alone = pipe.entities([text])
    calls.clear()
    assert pipe.entities(["", text, " "]) == [[], alone[0], []]
    assert calls == [1]  # one window: the text's


def test_call_observer_sees_every_model_call_and_changes_no_answer(tiny_artifact):
    """on_call (what the service's /metrics counts) is told of each call with the arrays run."""
    pipe, _ = Artifact(tiny_artifact).pipeline("fp32", "cpu")
    texts = ["John Smith visited Paris.", "", "Mary met the United Nations delegation in New York on Monday.", "Hi"]
    plain = pipe.entities(texts)
    seen: list[tuple[tuple[int, int], int, float]] = []
    pipe.on_call = lambda arrays, s: seen.append((arrays["attention_mask"].shape, int(arrays["attention_mask"].sum()), s))
    assert pipe.entities(texts) == plain
    assert sum(shape[0] for shape, _, _ in seen) == 3  # three texts with words, one window each
    assert all(0 < real <= shape[0] * shape[1] and s > 0 for shape, real, s in seen)


def test_decomposed_accents_tag_like_composed(tiny_artifact):
    """NFD text (a base letter + combining mark) gets the NFC text's words, tags and scores, with
    offsets into the text as sent: the mark must not cut "Zürich" into "Zu", the mark and "rich"."""
    import unicodedata

    pipe, _ = Artifact(tiny_artifact).pipeline("fp32", "cpu")
    text = "Zoë Saldaña flew from Zürich to São Paulo with José Müller."
    nfc, nfd = (unicodedata.normalize(form, text) for form in ("NFC", "NFD"))
    assert nfc != nfd
    composed, decomposed = pipe.entities([nfc, nfd], strategy="first")
    assert composed  # the tiny random model tags something here, so the comparison has content
    assert [(e["entity_group"], round(e["score"], 5), unicodedata.normalize("NFC", e["word"])) for e in decomposed] == [
        (e["entity_group"], round(e["score"], 5), e["word"]) for e in composed
    ]
    assert all(nfd[e["start"]:e["end"]] == e["word"] for e in decomposed)


def test_each_sentence_of_a_text_runs_as_its_own_sequence(tiny_artifact):
    """A text of two sentences gets what each sentence gets alone (offsets shifted), as the model was
    trained on single sentences; split_sentences=False runs the text as one sequence."""
    first, second = "John Smith visited Paris .", "Mary Jones met the Acme Corp team in London ."
    text = f"{first} {second}"
    split, _ = Artifact(tiny_artifact).pipeline("fp32", "cpu")
    whole, _ = Artifact(tiny_artifact).pipeline("fp32", "cpu", split_sentences=False)
    shift = len(first) + 1
    alone = split.entities([first])[0] + [dict(e, start=e["start"] + shift, end=e["end"] + shift) for e in split.entities([second])[0]]
    got = split.entities([text])[0]
    assert [(e["entity_group"], e["start"], e["end"]) for e in got] == [(e["entity_group"], e["start"], e["end"]) for e in alone]
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in alone], abs=1e-5)
    assert whole.entities([text])[0] != got  # one sequence: each sentence sees the other
