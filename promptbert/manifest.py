"""Manifests, hashes, versions and all-or-nothing folder writes."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from . import constants as C
from .data import file_sha256
from .errors import ArtifactError

_TRACKED = ("promptbert", "torch", "transformers", "tokenizers", "optimum", "optimum-onnx", "onnx",
            "onnxruntime-gpu", "onnxruntime", "numpy", "seqeval", "bentoml")


def versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a model's numbers, and two that installed
    metadata can get wrong: promptbert's own when it runs from a checkout, and ``onnxruntime
    (loaded)``, the build that really runs. onnxruntime and onnxruntime-gpu install the same
    module, so where both are present (a GPU machine's image) one's metadata names a runtime
    that is not the one loaded."""
    out = {}
    for name in _TRACKED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    out.setdefault("promptbert", __version__)
    ort = sys.modules.get("onnxruntime")
    if ort is not None:
        out["onnxruntime (loaded)"] = f"{ort.__version__} {ort.get_device()}"
    return out


def best_aggregation(manifest: dict[str, Any]) -> str:
    """The word aggregation that scored best on dev at export ("first" for a model folder or an older
    artifact). It is the default of the service, `promptbert predict` and `promptbert evaluate`, so that
    the three give the same answers for the same text."""
    return str(manifest.get("best_aggregation", "first"))


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found") from None
    except ValueError as exc:
        raise ArtifactError(f"{path}: invalid JSON ({exc})") from None


def folder_hashes(folder: str | Path, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """sha256 and size of the files in a folder (or of ``names``), keyed by relative path."""
    folder = Path(folder)
    paths = [folder / n for n in names] if names else sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        str(p.relative_to(folder)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in paths
        if p.name != C.MANIFEST
    }


def folder_fingerprint(folder: str | Path) -> str:
    """One hash for a whole folder: changes if any file does."""
    import hashlib

    h = hashlib.sha256()
    for name, info in sorted(folder_hashes(folder).items()):
        h.update(f"{name}\0{info['sha256']}\n".encode())
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(final: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it into place only if the block succeeds.

    An interrupted or failed run leaves no half-written ``final`` behind. An
    existing ``final`` is refused unless ``force``, and then replaced only at the end.
    """
    final = Path(final).resolve()
    if final.exists() and not force:
        raise ArtifactError(f"{final}: already exists (use --force to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            trash = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
