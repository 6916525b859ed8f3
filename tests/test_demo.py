"""The demo corpus, and the main job end to end in a reduced form (tiny model, live service)."""

from pathlib import Path

import pytest

from promptbert.data import load_split, split_words

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_demo_corpus_parses_with_all_four_types(split):
    sentences = load_split(DEMO, split)
    types = {t[2:] for s in sentences for t in s.tags if t != "O"}
    assert types == {"PER", "ORG", "LOC", "MISC"}
    assert len(sentences) >= 60


def test_demo_corpus_is_big_enough_and_split_like_the_service():
    total = sum(len(load_split(DEMO, s)) for s in ("train", "dev", "test"))
    assert total >= 400
    texts = (DEMO / "texts.txt").read_text(encoding="utf-8").splitlines()
    words = {tuple(w for w, _, _ in split_words(t)) for t in texts}
    for split in ("train", "dev", "test"):
        for s in load_split(DEMO, split):
            assert s.words in words  # every sentence is exactly what the serving splitter makes of its text
    lengths = [len(s.words) for s in load_split(DEMO, "train")]
    assert min(lengths) <= 5 and max(lengths) >= 30  # varied lengths


def test_demo_has_ambiguous_cases():
    rows = [(w, t) for split in ("train", "dev", "test") for s in load_split(DEMO, split) for w, t in zip(s.words, s.tags)]
    assert ("Washington", "B-PER") in rows and ("Washington", "B-LOC") in rows
    assert ("Jordan", "B-LOC") in rows and ("Jordan", "I-PER") in rows
    assert ("Ford", "B-ORG") in rows and ("Ford", "I-PER") in rows
    assert any(t == "B-MISC" and w in ("German", "French", "Japanese", "Kenyan") for w, t in rows)


@pytest.mark.slow
def test_main_job_reduced_end_to_end(tiny_base, tiny_corpus, tiny_prompt, tmp_path):
    from promptbert.cli.demo import run_demo

    cfg = tmp_path / "demo.yaml"
    cfg.write_text(
        f"data_dir: {tiny_corpus}\nbase_model: {tiny_base}\nprompt: {tiny_prompt}\noutput_dir: {tmp_path / 'model'}\n"
        "max_length: 96\nmax_steps: 40\nbatch_size: 8\nlearning_rate: 0.003\nearly_stopping_patience: 0\n"
        "report_to: [none]\nprogress: false\n",
        encoding="utf-8",
    )
    lines: list[str] = []
    sample = ["John Smith visited Paris .", "Mary Jones met the Acme Corp team in London ."]
    out = run_demo(cfg, artifact_dir=tmp_path / "artifact", port=0, once=True, say=lines.append, sample=sample)
    assert len(out["answer"]) == 2 and any(out["answer"])  # the live service found entities
    for text, ents in zip(sample, out["answer"]):
        for e in ents:
            assert text[e["start"] : e["end"]] == e["word"]
    printed = "\n".join(lines)
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "curl -s -X POST"):
        assert stage in printed
    assert (tmp_path / "artifact" / "model_quantized.onnx").is_file()
