"""The serving path (promptbert core + service.py) runs without torch, transformers or the other stages;
the install puts one package, promptbert, into site-packages."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_serving_core_never_imports_torch_or_the_stages(tiny_artifact):
    code = (
        "import sys, os; os.environ['PROMPTBERT_ARTIFACT'] = sys.argv[1]\n"
        "import promptbert, promptbert.runtime, promptbert.pipeline, promptbert.serving, promptbert.launch\n"
        "from promptbert import Tagger\n"
        "import service\n"
        "Tagger.from_pretrained(sys.argv[1], 'int8', 'cpu')(['John Smith visited Paris.'])\n"
        "bad = [m for m in sys.modules if m in ('torch', 'transformers', 'optimum', 'training', 'export', 'loadtests', 'cli')\n"
        "       or m.startswith(('promptbert.training', 'promptbert.export', 'promptbert.loadtests', 'promptbert.cli'))]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tiny_artifact)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_one_top_level_package_is_installed():
    """The stage folders install under promptbert's namespace, never as generic top-level packages."""
    import importlib.util

    dist = metadata.distribution("promptbert")
    assert dist.read_text("top_level.txt").split() == ["promptbert"]
    for stage in ("training", "export", "loadtests", "cli"):
        spec = importlib.util.find_spec(f"promptbert.{stage}")
        assert spec is not None and Path(spec.origin).parent == ROOT / stage, (stage, spec)
