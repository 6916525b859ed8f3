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
