"""A two-step training run writes a complete model folder that `evaluate` reads back; CLI errors exit 2."""

import json
import re
import subprocess
import sys

import pytest

from promptbert import constants as C
from promptbert.cli import main

from .conftest import tiny_train_config


def test_model_folder_is_complete(tiny_model, tiny_prompt):
    for name in (C.MANIFEST, C.LABELS, C.PROMPT_TEXT, C.PROMPT_SPEC, C.METRICS, C.TRAIN_CONFIG, "config.json",
                 "model.safetensors", "tokenizer.json"):
        assert (tiny_model / name).is_file(), name
    assert not (tiny_model / "_trainer").exists()  # checkpoints are not shipped
    m = json.loads((tiny_model / C.MANIFEST).read_text())
    assert m["kind"] == C.MODEL_FOLDER_KIND
    assert m["prompt"]["kind"] == "spec" and len(m["prompt"]["fingerprint"]) == 64
    assert set(m["data_files"]) and all(len(h) == 64 for h in m["data_files"].values())
    assert m["config"]["max_steps"] == 2 and m["training"]["steps"] == 2
    assert {"torch", "transformers", "promptbert"} <= set(m["versions"])
    import torch  # where it trained: beside a GPU on CUDA in bf16 (fp16 where bf16 is not), by itself; else CPU fp32

    gpu = torch.cuda.is_available()
    expected = ("cuda", "bf16" if torch.cuda.is_bf16_supported() else "fp16") if gpu else ("cpu", "fp32")
    assert (m["training"]["device"], m["training"]["precision"]) == expected
    metrics = json.loads((tiny_model / C.METRICS).read_text())
    assert set(metrics) == {"dev", "test"} and "micro avg" in metrics["dev"]
    cfg = json.loads((tiny_model / "config.json").read_text())
    assert cfg["id2label"]["0"] == "O" and len(cfg["id2label"]) == 9
    from promptbert.prompt import fingerprint

    assert fingerprint((tiny_model / C.PROMPT_TEXT).read_text()) == m["prompt"]["fingerprint"]
    # The serving-side tokenizer (tokenizer.json) encodes the stored prompt to the length trained on.
    from promptbert.encoding import PromptEncoder, load_tokenizer

    tok, specials = load_tokenizer(tiny_model)
    enc = PromptEncoder(tok, (tiny_model / C.PROMPT_TEXT).read_text(), m["encoding"]["max_length"], 8, specials)
    assert enc.prompt_tokens == m["prompt"]["tokens"]


def test_evaluate_reads_the_folder_back(tiny_model, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate", str(tiny_model), "--data", str(tiny_corpus), "--split", "test", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "micro avg" in printed and "token accuracy" in printed
    rep = json.loads(out.read_text())["report"]
    assert rep["sentences"] == 2 and {"micro avg", "macro avg", "weighted avg"} <= set(rep)
    # Same numbers as the training's own final evaluation (one code path).
    saved = json.loads((tiny_model / C.METRICS).read_text())["test"]
    assert rep["micro avg"]["f1-score"] == pytest.approx(saved["micro avg"]["f1-score"])
    assert rep["token_accuracy"] == pytest.approx(saved["token_accuracy"])


def test_every_word_gets_one_prediction_across_windows(tiny_model):
    from promptbert import Tagger

    tagger = Tagger.from_pretrained(tiny_model)
    words = ("john met mary in paris .".split()) * 30  # far longer than max_length 64
    (tags,) = tagger.word_tags([words])
    assert len(tags) == len(words) and len(tagger.pipeline.encoder.encode(words)) > 1


def test_interrupted_training_leaves_no_folder(tiny_base, tiny_corpus, tiny_prompt, tmp_path, monkeypatch):
    import promptbert.training.train as T

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "write_json", boom)
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, out, max_steps=1))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "promptbert.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--data", "/nonexistent/data", "--set", "max_steps=1"], "data folder not found"),
        (["train", "--data", "CORPUS", "--base-model", "/nonexistent/model", "--set", "max_steps=1"], "base_model: path /nonexistent/model does not exist"),
        (["train", "--set", "learnig_rate=1"], "learnig_rate: unknown key"),
        (["evaluate", "/nonexistent", "--data", "."], "not found"),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, needle, tmp_path, tiny_corpus):
    args = [a.replace("CORPUS", str(tiny_corpus)) for a in args]
    r = run_cli(*args, *(["--output", str(tmp_path / "m")] if args[0] == "train" else []))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert needle in lines[-1] and "Traceback" not in r.stderr


def test_cli_label_not_in_map_and_bad_config_key(tmp_path, tiny_base, tiny_prompt):
    (tmp_path / "train.txt").write_text("john B-PER\nparis B-CITY\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("john B-PER\n", encoding="utf-8")
    r = run_cli("train", "--data", str(tmp_path), "--base-model", str(tiny_base), "--prompt", str(tiny_prompt),
                "--output", str(tmp_path / "m"), "--set", "max_steps=1")
    assert r.returncode == 2 and "train.txt:2: label 'B-CITY' is not in the label map" in r.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epoch: 3\n", encoding="utf-8")
    r = run_cli("train", "--config", str(cfg))
    assert r.returncode == 2 and "epoch: unknown key in TrainConfig" in r.stderr
    (tmp_path / "train.txt").write_text("john B-PER\n", encoding="utf-8")
    r = run_cli("train", "--data", str(tmp_path), "--base-model", str(tiny_base), "--prompt", str(tiny_prompt),
                "--output", str(tmp_path / "m"), "--set", "max_steps=1", "--set", "max_length=600")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith("has 512 positions; use max_length <= 512")
    assert "Traceback" not in r.stderr and not (tmp_path / "m").exists()


@pytest.mark.parametrize("tty", [True, False])
def test_progress_is_one_bar_and_a_line_per_evaluation(tiny_base, tiny_corpus, tiny_prompt, tmp_path, capfd, monkeypatch, tty):
    """With progress on, the Trainer's bar carries the loss and each evaluation prints one line with dev F1;
    no raw log dicts, no second bar per evaluation, no "newly initialized ... TRAIN this model" warning.
    Into a file (not a terminal) no bar frames: a plain line at each tenth of the steps."""
    from promptbert.training.train import train

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    train(tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, tmp_path / "m", max_steps=2, progress=True))
    out = capfd.readouterr()
    err = out.out + out.err  # the bar on stderr, tqdm.write's lines on stdout
    assert len(re.findall(r"step 2 \(epoch [\d.]+\): dev F1 [\d.]+, precision [\d.]+, recall [\d.]+, loss [\d.]+", err)) == 1
    assert "{'" not in err and "eval_loss" not in err and "newly initialized" not in err
    if tty:
        assert "loss=" in err  # on the bar
    else:
        assert "\r" not in err and "it/s" not in err
        assert re.findall(r"^step (\d)/2 \((\d+)%\)[^\n]*steps/s, \d+ s left$", out.out, re.M) == [("1", "50"), ("2", "100")]


@pytest.mark.parametrize("head", ["fixed", "types"])
def test_head_learning_rate_moves_the_new_parameters_only(head, tiny_model, tiny_types_model, tiny_corpus, tiny_prompt,
                                                          tmp_path):
    """head_learning_rate: the head learns at its own rate while the pretrained encoder keeps learning_rate
    (here ~0, so the encoder must come out unchanged and the head must not)."""
    import numpy as np
    from safetensors.numpy import load_file

    from promptbert.training.train import train

    base = tiny_types_model if head == "types" else tiny_model
    extra = dict(text_tokens=48, max_types=8) if head == "types" else {}
    out = tmp_path / "tuned"
    train(tiny_train_config(base, tiny_corpus, tiny_prompt, out, head=head, max_steps=1, learning_rate=1e-12,
                            head_learning_rate=1e-2, warmup_ratio=0.0, weight_decay=0.0, **extra))
    before, after = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    encoder = [k for k in before if "classifier" not in k]
    assert encoder and set(encoder) <= set(after)
    for k in encoder:
        np.testing.assert_allclose(after[k], before[k], atol=1e-6, err_msg=k)
    if head == "types":
        from promptbert.training.typed import HEAD_WEIGHTS

        before, after = load_file(str(base / HEAD_WEIGHTS)), load_file(str(out / HEAD_WEIGHTS))
    moved = [k for k in before if k not in encoder and np.abs(after[k] - before[k]).max() > 1e-4]
    assert moved, "the head did not learn"


def test_head_learning_rate_groups_every_parameter_once(tiny_base, tmp_path):
    """Every trainable parameter is in one optimizer group; weight decay keeps the Trainer's split (none for
    biases and LayerNorm); only the groups outside the encoder carry their own rate."""
    from transformers import AutoModelForTokenClassification, Trainer, TrainingArguments

    from promptbert.errors import ConfigError
    from promptbert.training.train import new_parameter_lr

    model = AutoModelForTokenClassification.from_pretrained(str(tiny_base), num_labels=5)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, weight_decay=0.1, use_cpu=True,
                             report_to="none")
    trainer = Trainer(model=model, args=args)
    new_parameter_lr(trainer, model.base_model, 1e-3)
    groups = trainer.optimizer.param_groups
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    names = {id(p): n for n, p in model.named_parameters()}
    encoder = {id(p) for p in model.base_model.parameters()}
    for g in groups:
        inside = {id(p) in encoder for p in g["params"]}
        assert len(inside) == 1
        assert g["lr"] == (1e-4 if inside == {True} else 1e-3)
        decayed = {not (names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)]) for p in g["params"]}
        assert decayed == {g["weight_decay"] > 0}
    assert {g["lr"] for g in groups} == {1e-4, 1e-3}
    with pytest.raises(ConfigError, match="head_learning_rate"):
        new_parameter_lr(trainer, AutoModelForTokenClassification.from_pretrained(str(tiny_base), num_labels=5), 1e-3)


def test_cli_refuses_data_beside_a_config_with_corpora(tmp_path, tiny_corpus):
    """--data would silently be ignored by a config that lists corpora: it is refused instead."""
    config = tmp_path / "multi.yaml"
    config.write_text(f"head: types\ncorpora:\n  - data_dir: {tiny_corpus}\n", encoding="utf-8")
    r = run_cli("train", "--config", str(config), "--data", str(tiny_corpus), "--output", str(tmp_path / "m"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "--data: this config lists corpora" in lines[-1] and "Traceback" not in r.stderr
    assert not (tmp_path / "m").exists()


def test_cli_names_a_missing_extra_in_one_line(tmp_path):
    """A core-only install (no transformers) that runs `promptbert train` is told what to install."""
    code = ("import sys; sys.modules['transformers'] = None; from promptbert.cli import main; "
            f"sys.exit(main(['train', '--set', 'max_steps=1', '--output', {str(tmp_path / 'm')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-800:]
    assert "transformers is not installed" in lines[-1] and "promptbert[all]" in lines[-1]
