from pathlib import Path

import pytest

from promptbert.config import dump_yaml, load, parse_override
from promptbert.errors import ConfigError
from promptbert.training.config import TrainConfig


def test_unknown_key_is_rejected_and_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("learnig_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="learnig_rate: unknown key in TrainConfig"):
        load(TrainConfig, p)


def test_scientific_notation_and_types(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("learning_rate: 1e-5\nentity_types: [PER]\n", encoding="utf-8")
    c = load(TrainConfig, p)
    assert c.learning_rate == 1e-5 and c.entity_types == ("PER",)
    p.write_text("batch_size: many\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="batch_size: expected an integer"):
        load(TrainConfig, p)


def test_validation_and_round_trip(tmp_path):
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8")
    c = TrainConfig(epochs=1.5, report_to=("none",))
    dump_yaml(c, tmp_path / "saved.yaml")
    assert load(TrainConfig, tmp_path / "saved.yaml") == c


def test_overrides_parse_as_yaml():
    from promptbert.config import from_dict

    assert from_dict(TrainConfig, dict([parse_override("learning_rate=2e-5")])).learning_rate == 2e-5
    assert parse_override("eval_test=false") == ("eval_test", False)
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_a_yaml_boolean_for_a_string_says_to_quote_it():
    from promptbert.config import from_dict

    with pytest.raises(ConfigError, match=r"casing: expected a string, got False \(YAML reads on/off"):
        from_dict(TrainConfig, dict([parse_override("casing=off")]))
    assert from_dict(TrainConfig, dict([parse_override("casing=never")])).casing == "never"


@pytest.mark.parametrize("name", ["conll2003", "demo", "multi"])
def test_shipped_configs_load_with_their_prompts(name):
    root = Path(__file__).resolve().parents[1]
    c = load(TrainConfig, root / "configs" / f"{name}.yaml")
    prompts = [c.prompt, *(corpus.prompt for corpus in c.corpora if corpus.prompt)]
    assert all((root / p).is_file() for p in prompts), prompts
    if name == "multi":
        assert c.head == "types" and [x.label for x in c.corpora] == ["conll2003", "wnut17", "anem", "sec_filings"]
