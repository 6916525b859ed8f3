"""Tiny, offline fixtures: a random 2-layer BERT, a word-piece tokenizer and a corpus written here.

Nothing touches the network or the working directory; everything lives in tmp folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Whole words plus a few continuation pieces, so some words split into several pieces.
WORDS = (
    "the a of in to and at on with for is was said met visited left from by "
    "john smith mary jones paris london berlin acme corp united nations german french british "
    "cup world team bank ministry today yesterday week city people news tag names label as person "
    "organization place other you entities , . ( ) - ' s 1 2 3"
).split()
PIECES = ["wash", "##ington", "##s", "##ed", "##ing", "mc", "##don", "##ald", "##er", "z", "##u", "##r", "##i", "##ch"]
VOCAB = SPECIALS + WORDS + PIECES

TRAIN = [
    ("John Smith visited Paris .", "B-PER I-PER O B-LOC O"),
    ("Mary Jones met the Acme Corp team in London .", "B-PER I-PER O O B-ORG I-ORG O O B-LOC O"),
    ("Washington met German people in Washington .", "B-PER O B-MISC O O B-LOC O"),
    ("The United Nations said Berlin was the city .", "O B-ORG I-ORG O B-LOC O O O O"),
    ("McDonald visited the French World Cup team .", "B-PER O O B-MISC B-MISC I-MISC O O"),
    ("Acme Corp left London yesterday .", "B-ORG I-ORG O B-LOC O O"),
    ("Mary met John in Berlin today .", "B-PER O B-PER O B-LOC O O"),
    ("British people visited Zurich and Paris .", "B-MISC O O B-LOC O B-LOC O"),
]
DEV = [
    ("John Jones visited Berlin .", "B-PER I-PER O B-LOC O"),
    ("The Acme Corp bank met Mary in Paris .", "O B-ORG I-ORG O O B-PER O B-LOC O"),
    ("German news from London .", "B-MISC O O B-LOC O"),
]
TEST = [
    ("Mary Smith left Washington today .", "B-PER I-PER O B-LOC O O"),
    ("The United Nations met French people in Zurich .", "O B-ORG I-ORG O B-MISC O O B-LOC O"),
]
ENTITY_TYPES = ("PER", "ORG", "LOC", "MISC")


def write_conll(path: Path, rows: list[tuple[str, str]], docstart: bool = True) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for words, tags in rows:
        for w, t in zip(words.split(), tags.split()):
            lines.append(f"{w} NNP B-NP {t}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def build_tokenizer(folder: Path) -> None:
    """A BERT-style fast tokenizer (uncased WordPiece) saved with save_pretrained."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(VOCAB)}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    # The same trap as all-MiniLM-L6-v2's tokenizer.json: fixed padding and truncation switched on.
    tok.enable_padding(length=24, pad_id=vocab["[PAD]"], pad_token="[PAD]")
    tok.enable_truncation(max_length=24)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
    )
    fast.save_pretrained(str(folder))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BERT (BertConfig as in transformers' BertModelTester) with its tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=512, type_vocab_size=2,
    )
    assert len(VOCAB) <= config.vocab_size
    BertModel(config).save_pretrained(str(folder))
    build_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_corpus")
    write_conll(folder / "train.txt", TRAIN)
    write_conll(folder / "valid.txt", DEV)
    write_conll(folder / "test.txt", TEST)
    return folder


@pytest.fixture(scope="session")
def tiny_prompt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "tiny.yaml"
    path.write_text(
        "role: you tag names\n"
        "task: label names as {labels}\n"
        "requirements: [tag names]\n"
        "details:\n  tips: [german is MISC]\n"
        "labels: {PER: person, ORG: organization, LOC: place, MISC: other}\n",
        encoding="utf-8",
    )
    return path


def tiny_train_config(base: Path, corpus: Path, prompt: Path | str, output: Path, **kw: object):
    from promptbert.training.config import TrainConfig

    values = dict(
        data_dir=str(corpus), base_model=str(base), prompt=str(prompt), output_dir=str(output), max_length=96,
        stride=8, max_steps=2, batch_size=4, eval_batch_size=8, logging_steps=1, report_to=("none",),
        progress=False, early_stopping_patience=0, learning_rate=1e-3,
    )
    values.update(kw)
    return TrainConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, tiny_corpus: Path, tiny_prompt: Path) -> Path:
    """A model folder written by a two-step `train`."""
    from promptbert.training.train import train

    out = tmp_path_factory.mktemp("models") / "tiny"
    train(tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, out))
    return out


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """An artifact exported (all variants, all gates) from the tiny model folder."""
    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export

    out = tmp_path_factory.mktemp("artifacts") / "tiny"
    export(tiny_model, out, ExportConfig())
    return out


@pytest.fixture(scope="session")
def tiny_joint_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, tiny_corpus: Path, tiny_prompt: Path) -> Path:
    """The classic pair-encoding model (prompt_attention: joint), exported through Optimum's main_export."""
    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export
    from promptbert.training.train import train

    model = tmp_path_factory.mktemp("models") / "tiny_joint"
    train(tiny_train_config(tiny_base, tiny_corpus, tiny_prompt, model, prompt_attention="joint"))
    out = tmp_path_factory.mktemp("artifacts") / "tiny_joint"
    export(model, out, ExportConfig(variants=("fp32", "int8")))
    return out


# A second corpus for label-semantic (head: types) training: its own type ("team") and a type
# it shares with the first under another name ("person", learnt as PER).
TRAIN_B = [
    ("the acme corp team met john .", "O B-team I-team I-team O B-person O"),
    ("mary left the world cup team .", "B-person O O B-team I-team I-team O"),
    ("john smith visited the bank team .", "B-person I-person O O B-team I-team O"),
    ("the united nations team met mary jones .", "O B-team I-team I-team O B-person I-person O"),
]
DEV_B = [("the bank team met john .", "O B-team I-team O B-person O")]


@pytest.fixture(scope="session")
def tiny_corpus_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_corpus_b")
    write_conll(folder / "train.txt", TRAIN_B, docstart=False)
    write_conll(folder / "dev.txt", DEV_B, docstart=False)
    return folder


@pytest.fixture(scope="session")
def tiny_prompt_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "tiny_b.yaml"
    path.write_text("role: you tag names\ntask: label names as {labels}\nlabels: {PER: person, team: team names}\n",
                    encoding="utf-8")
    return path


def tiny_types_config(base: Path, corpus: Path, corpus_b: Path, prompt: Path, prompt_b: Path, output: Path, **kw: object):
    from promptbert.training.config import CorpusConfig

    corpora = (
        CorpusConfig(data_dir=str(corpus), name="news", prompt=str(prompt),
                     descriptions={"PER": ("person", "people"), "ORG": ("organization",), "LOC": ("place",),
                                   "MISC": ("other",)}),
        CorpusConfig(data_dir=str(corpus_b), name="teams", prompt=str(prompt_b), types={"person": "PER", "team": "team"}),
    )
    values: dict[str, object] = dict(head="types", corpora=corpora, max_steps=3, text_tokens=48, max_types=8)
    values.update(kw)
    return tiny_train_config(base, corpus, prompt, output, **values)


@pytest.fixture(scope="session")
def tiny_types_model(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, tiny_corpus: Path, tiny_corpus_b: Path,
                     tiny_prompt: Path, tiny_prompt_b: Path) -> Path:
    """A label-semantic model folder trained a few steps on the two tiny corpora."""
    from promptbert.training.train import train

    out = tmp_path_factory.mktemp("models") / "tiny_types"
    train(tiny_types_config(tiny_base, tiny_corpus, tiny_corpus_b, tiny_prompt, tiny_prompt_b, out))
    return out


@pytest.fixture(scope="session")
def tiny_types_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_types_model: Path) -> Path:
    """The label-semantic model exported: prompt encoder + tagger, every variant gated."""
    from promptbert.export.config import ExportConfig
    from promptbert.export.onnx_export import export

    out = tmp_path_factory.mktemp("artifacts") / "tiny_types"
    export(tiny_types_model, out, ExportConfig())
    return out
