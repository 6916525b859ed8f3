"""The serving path (promptbert core + service.py) must run without torch or transformers."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_serving_core_never_imports_torch(tiny_artifact):
    code = (
        "import sys, os; os.environ['PROMPTBERT_ARTIFACT'] = sys.argv[1]\n"
        "import promptbert.runtime, promptbert.pipeline, promptbert.serving, promptbert.launch, promptbert.cli\n"
        "import service\n"
        "pipe, _ = promptbert.runtime.Artifact(sys.argv[1]).pipeline('int8', 'cpu')\n"
        "pipe.entities(['John Smith visited Paris.'])\n"
        "bad = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tiny_artifact)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
