"""The public API: Tagger.from_pretrained(path)(texts), and the typed manifests it reads."""

import dataclasses
import json
import logging
import shutil

import pytest

from promptbert import ArtifactConfig, Tagger
from promptbert import constants as C
from promptbert.errors import ArtifactError
from promptbert.manifest import ModelManifest, version_warnings

TEXT = "John Smith visited Paris ."


def test_one_text_gives_entities_and_a_list_gives_a_list_per_text(tiny_artifact):
    tagger = Tagger.from_pretrained(tiny_artifact, "fp32", "cpu")
    one = tagger(TEXT)
    assert isinstance(one, list) and all(set(e) == {"entity_group", "score", "word", "start", "end"} for e in one)
    assert all(TEXT[e["start"]:e["end"]] == e["word"] and isinstance(e["score"], float) for e in one)
    assert tagger.predict([TEXT, "", TEXT]) == [one, [], one]
    assert tagger.variant == "fp32" and tagger.providers == ["CPUExecutionProvider"]
    assert tagger.entity_types == ("PER", "ORG", "LOC", "MISC") and "fp32" in repr(tagger)
    wanted = tagger.predict(TEXT, entity_types=["LOC"], min_score=0.0)
    assert wanted == [e for e in one if e["entity_group"] == "LOC"]


def test_config_is_the_manifest_typed_and_frozen(tiny_artifact):
    tagger = Tagger.from_pretrained(tiny_artifact, "int8", "cpu")
    saved = json.loads((tiny_artifact / C.MANIFEST).read_text())
    config = tagger.config
    assert isinstance(config, ArtifactConfig) and config.to_dict() == saved  # read and written by one module
    assert config.prompt.fingerprint == saved["prompt"]["fingerprint"] and config.encoding.prompt_attention == "isolated"
    assert tagger.default_aggregation == config.best_aggregation == saved["best_aggregation"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.best_aggregation = "max"  # type: ignore[misc]


def test_model_folder_manifest_round_trips(tiny_model):
    saved = json.loads((tiny_model / C.MANIFEST).read_text())
    assert ModelManifest.read(tiny_model).to_dict() == saved
    with pytest.raises(ArtifactError, match="not a promptbert artifact"):
        ArtifactConfig.read(tiny_model)


def test_a_different_runtime_version_is_warned_about(tiny_artifact, tmp_path, caplog):
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    manifest = json.loads((art / C.MANIFEST).read_text())
    manifest["versions"]["numpy"] = "1.0.0"
    (art / C.MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="promptbert"):
        Tagger.from_pretrained(art, "fp32", "cpu")
    assert any("numpy" in r.getMessage() and "1.0.0" in r.getMessage() for r in caplog.records)
    assert version_warnings({"numpy": "2.4.1"}, {"numpy": "2.4.6"}) == []  # a patch release is not a difference


def test_missing_or_foreign_folders_are_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="artifact or model folder not found"):
        Tagger.from_pretrained(tmp_path / "nope")
    (tmp_path / C.MANIFEST).write_text('{"kind": "promptbert-artifact"}')
    with pytest.raises(ArtifactError, match="incomplete or malformed manifest"):
        Tagger.from_pretrained(tmp_path)


def test_a_text_the_tokenizer_cannot_take_is_an_input_error(tiny_artifact):
    from promptbert.errors import InputError

    tagger = Tagger.from_pretrained(tiny_artifact, "fp32", "cpu")
    with pytest.raises(InputError, match=r"texts\[1\]: not valid Unicode \(a lone surrogate at character 3\)"):
        tagger.predict(["fine", "abc\ud800"])


def test_a_model_folder_runs_on_pytorch_and_refuses_onnx_variants(tiny_model):
    from promptbert.errors import InputError

    tagger = Tagger.from_pretrained(tiny_model)
    assert tagger.variant == "pytorch" and tagger.providers == ["torch:cpu"] and isinstance(tagger.config, ModelManifest)
    assert tagger(TEXT) == tagger.predict([TEXT])[0]
    with pytest.raises(InputError, match="variant: 'int8' is an artifact's"):
        Tagger.from_pretrained(tiny_model, "int8")
