import json
import subprocess
import sys

import promptbert


def test_versions_name_the_runtime_that_runs():
    """onnxruntime (loaded) is the imported build, whatever other distribution of the module is installed
    (a GPU machine had onnxruntime 1.30 beside the onnxruntime-gpu 1.31.1 that ran); promptbert's own
    version is there even from a checkout that was never installed."""
    code = ("import json; from promptbert.manifest import versions; before = versions(); import onnxruntime as ort; "
            "print(json.dumps([before, versions(), f'{ort.__version__} {ort.get_device()}']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    before, after, loaded = json.loads(r.stdout)
    assert "onnxruntime (loaded)" not in before and after["onnxruntime (loaded)"] == loaded
    assert after["promptbert"] == promptbert.__version__


def test_write_json_is_all_or_nothing(tmp_path):
    """A report lands whole or not at all: a value JSON cannot hold leaves the old file as it was and no
    temporary file behind; a missing parent folder is created."""
    import pytest

    from promptbert.manifest import write_json

    path = tmp_path / "new" / "folder" / "report.json"
    write_json(path, {"f1": 0.5})
    assert json.loads(path.read_text()) == {"f1": 0.5}
    with pytest.raises(TypeError):
        write_json(path, {"f1": object()})
    assert json.loads(path.read_text()) == {"f1": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]
