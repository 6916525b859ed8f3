"""Prompt lab on the tiny model: compare with both controls, lint, optimize."""

import csv
import json

import pytest

from promptbert.cli import main

from .conftest import VOCAB, tiny_train_config


@pytest.fixture
def second_prompt(tmp_path):
    p = tmp_path / "short.yaml"
    p.write_text("role: you tag\ntask: tag {labels}\n", encoding="utf-8")
    return p


def test_compare_two_prompts_with_both_controls(tiny_base, tiny_corpus, tiny_prompt, second_prompt, tmp_path):
    from promptbert.training.prompt_lab import compare, format_table

    config = tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, tmp_path / "unused")
    out = tmp_path / "lab"
    result = compare(config, [str(tiny_prompt), str(second_prompt)], [4], 1, 2, 0, out, say=lambda s: None)
    arms = {r["arm"] for r in result["runs"]}
    assert arms == {"none", "tiny", "control(tiny)", "short", "control(short)"}
    by_arm = {r["arm"]: r for r in result["runs"]}
    # The control prefix has exactly the prompt's token length, and is a different text.
    for name in ("tiny", "short"):
        assert by_arm[f"control({name})"]["prompt_tokens"] == by_arm[name]["prompt_tokens"] > 0
        assert by_arm[f"control({name})"]["fingerprint"] != by_arm[name]["fingerprint"]
    assert by_arm["none"]["prompt_tokens"] == 0 and by_arm["none"]["cost_vs_none"] == 1.0
    assert by_arm["tiny"]["cost_vs_none"] > 0
    for name in ("results.json", "results.csv", "f1_vs_size.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "f1_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 5
    saved = json.loads((out / "results.json").read_text())
    assert saved["budget"]["steps"] == 2 and len(saved["summary"]) == 5
    table = format_table(result["summary"])
    assert "control(tiny)" in table and "vs ctrl" in table


def test_lint_flags_a_prompt_that_leaves_no_room(tmp_path, capsys, tiny_base):
    long = tmp_path / "long.yaml"
    long.write_text("role: " + "very " * 200 + "\ntask: tag {labels}\n", encoding="utf-8")
    assert main(["prompts", "lint", str(long), "--base-model", str(tiny_base), "--max-length", "128"]) == 1
    out = capsys.readouterr().out
    assert "too long" in out and "empty part: requirements" in out


def test_lint_flags_labels_not_mentioned_and_render_counts_tokens(tmp_path, capsys, tiny_base):
    p = tmp_path / "nolabels.yaml"
    p.write_text("role: you tag\ntask: tag people\nrequirements: [x]\ndetails: {tips: [y]}\n", encoding="utf-8")
    assert main(["prompts", "lint", str(p), "--base-model", str(tiny_base)]) == 1
    assert "labels not mentioned: PER, ORG, LOC, MISC" in capsys.readouterr().out
    assert main(["prompts", "render", str(p), "--base-model", str(tiny_base)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Role: you tag\nTask: tag people") and "tokens as a fixed-head model takes it" in out
    assert "--model" in out  # a types prompt is rendered and limited by the model's own rules


def test_render_counts_with_any_base_models_tokenizer(tmp_path, capsys, tiny_base, monkeypatch):
    """A base model folder with only vocab.txt (as many hub models ship) is tokenized like the hub's; an id that
    cannot be fetched is one line and exit 2."""
    import shutil

    folder = tmp_path / "vocab_only"
    folder.mkdir()
    shutil.copy(tiny_base / "config.json", folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer", "do_lower_case": true}')
    p = tmp_path / "p.yaml"
    p.write_text("role: you tag\ntask: tag people in paris\nrequirements: [x]\ndetails: {tips: [y]}\n", encoding="utf-8")
    assert main(["prompts", "render", str(p), "--base-model", str(folder)]) == 0
    from_vocab = capsys.readouterr().out
    assert main(["prompts", "render", str(p), "--base-model", str(tiny_base)]) == 0
    assert capsys.readouterr().out == from_vocab and "--- " in from_vocab
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["prompts", "render", str(p), "--base-model", "no-such-org/no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "base_model: cannot load 'no-such-org/no-such-model'" in err and len(err.strip().splitlines()) == 1


def test_optimize_writes_a_cheaper_or_better_prompt(tiny_base, tiny_corpus, tmp_path):
    from promptbert.prompt import PromptSpec
    from promptbert.training.prompt_lab import optimize, variants

    start = tmp_path / "start.yaml"
    start.write_text(
        "role: you are a careful tagger of names in news\ntask: tag {labels}\nrequirements: [tag names, tag all]\n"
        "details: {steps: [read], examples: [john is PER, paris is LOC], tips: [german is MISC]}\n"
        "labels: {PER: person}\n", encoding="utf-8")
    assert {e for e, _ in variants(PromptSpec.from_yaml(start))} >= {"drop requirements", "drop details.examples", "one example",
                                                                    "shorter role", "no label descriptions"}
    config = tiny_train_config(tiny_base, tiny_corpus, start, tmp_path / "unused")
    out = tmp_path / "best.yaml"
    result = optimize(config, str(start), 4, 2, 1, 0, budget=4, tolerance=100.0, out_yaml=out, work=tmp_path / "w",
                      say=lambda s: None)
    assert result["trainings"] <= 4 and out.is_file()
    assert result["tokens"] < result["history"][0]["tokens"]  # with a huge tolerance, cheaper always wins
    text = out.read_text()
    assert text.startswith("# promptbert prompts optimize") and "dev F1" in text
    PromptSpec.from_yaml(out)  # the winner is a valid prompt


def test_lint_checks_the_prompts_own_labels_unless_told_otherwise(tmp_path, capsys, tiny_base):
    p = tmp_path / "two.yaml"
    p.write_text("role: you tag\ntask: tag {labels}\nrequirements: [x]\ndetails: {tips: [y]}\nlabels: {PER: person, ORG: company}\n",
                 encoding="utf-8")
    assert main(["prompts", "lint", str(p), "--base-model", str(tiny_base)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
    assert main(["prompts", "lint", str(p), "--base-model", str(tiny_base), "--types", "PER,LOC"]) == 1
    assert "label descriptions for types the model does not have: ORG" in capsys.readouterr().out


@pytest.mark.parametrize(("size", "needle"), [("", "--train-size: expected numbers"), ("abc", "--train-size: expected numbers"),
                                              ("100,200", "--train-size: one size")])
def test_optimize_refuses_a_bad_train_size(size, needle, tmp_path, capsys):
    assert main(["prompts", "optimize", "--prompt", str(tmp_path / "p.yaml"), "--train-size", size]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
