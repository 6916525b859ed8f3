"""Manifests, hashes, versions and all-or-nothing folder writes.

The two manifests are written and read here only, as typed frozen dataclasses: ``ModelManifest``
(a model folder, written by ``promptbert train``) and ``ArtifactConfig`` (an artifact folder,
written by ``promptbert export``). Their JSON keys are the dataclass fields, in order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import __version__
from . import constants as C
from .data import file_sha256
from .errors import ArtifactError

log = logging.getLogger("promptbert")
M = TypeVar("M", bound="_Manifest")

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


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON all or nothing: a temporary file beside ``path`` is renamed over it, so a
    crash or a full disk never leaves a half-written report; missing parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


# Libraries whose version shapes what a loaded artifact computes: a different major.minor is warned about.
_SERVING_CRITICAL = ("promptbert", "onnxruntime", "tokenizers", "numpy")


@dataclass(frozen=True)
class PromptInfo:
    """The prompt a model was trained with: its rendered text's fingerprint and token count."""

    kind: str  # "spec", "none" or "control"
    source: str
    fingerprint: str
    tokens: int


@dataclass(frozen=True)
class EncodingInfo:
    """How words became model inputs at training; serving must do the same."""

    max_length: int
    stride: int
    word_splitter: str = ""
    text_segment: int = 1
    prompt_attention: str = "joint"  # manifests without the key predate isolated attention
    head_tokens: int = 0
    # "fixed": a classifier over the labels trained on; "types": the prompt's types are the labels
    # (promptbert/typed.py). A types model tags windows of at most text_tokens text tokens and takes
    # prompts of at most max_prompt_tokens tokens and max_types types.
    head: str = "fixed"
    text_tokens: int = 0
    max_prompt_tokens: int = 0
    max_types: int = 0
    # The word-shape scheme fed to the model's text tokens (promptbert/casing.py); "" for none.
    casing: str = ""
    # Tokens of neighbouring words a sentence is tagged with on each side (document context); 0: none.
    context_tokens: int = 0


class _Manifest:
    """Reading and writing shared by both manifests."""

    KIND = ""
    NOT_THIS_KIND = "not a {kind} manifest"  # the message when a folder holds another kind (or none)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def write(self, folder: str | Path) -> None:
        write_json(Path(folder) / C.MANIFEST, self.to_dict())

    @classmethod
    def from_dict(cls: type[M], data: Any, where: str = "manifest") -> M:
        if not isinstance(data, dict) or data.get("kind") != cls.KIND:
            raise ArtifactError(f"{where}: {cls.NOT_THIS_KIND.format(kind=cls.KIND)}")
        try:
            values = _known(cls, data)
            if "prompt" in values:
                values["prompt"] = PromptInfo(**_known(PromptInfo, values["prompt"]))
            if "encoding" in values:
                values["encoding"] = EncodingInfo(**_known(EncodingInfo, values["encoding"]))
            return cls(**values)
        except (TypeError, AttributeError) as exc:
            raise ArtifactError(f"{where}: incomplete or malformed manifest ({exc})") from None

    @classmethod
    def read(cls: type[M], folder: str | Path) -> M:
        """The manifest of ``folder``; raises ArtifactError naming the folder if it is not of this kind."""
        path = Path(folder) / C.MANIFEST
        data = read_json(path) if path.is_file() else None
        return cls.from_dict(data, str(folder))


def _known(cls: Any, data: Any) -> dict[str, Any]:
    """The keys of ``data`` that ``cls`` has: a manifest written by a newer promptbert may hold more (the
    version check warns about that promptbert)."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def kind_of(folder: str | Path) -> str | None:
    """The manifest kind of a folder (a model folder, an artifact), None without a readable one."""
    path = Path(folder) / C.MANIFEST
    if not path.is_file():
        return None
    data = read_json(path)
    return data.get("kind") if isinstance(data, dict) else None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


@dataclass(frozen=True, kw_only=True)
class ModelManifest(_Manifest):
    """manifest.json of a model folder: what training decided and measured."""

    KIND = C.MODEL_FOLDER_KIND
    NOT_THIS_KIND = f"not a model folder made by `promptbert train` (no {C.MANIFEST} of kind {{kind}})"
    kind: str = C.MODEL_FOLDER_KIND
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    base_model: str = ""
    base_model_path: str = ""
    data_files: dict[str, str] = field(default_factory=dict)
    prompt: PromptInfo
    labels: list[str]
    encoding: EncodingInfo
    config: dict[str, Any] = field(default_factory=dict)  # the TrainConfig, as saved
    config_path: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def best_aggregation(self) -> str:
        return "first"  # a model folder was never scored by strategy


@dataclass(frozen=True, kw_only=True)
class ArtifactConfig(_Manifest):
    """manifest.json of an artifact: the model it came from, its variants and gates, file hashes."""

    KIND = C.ARTIFACT_KIND
    NOT_THIS_KIND = "not a promptbert artifact (run `promptbert export` first)"
    kind: str = C.ARTIFACT_KIND
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    source_model: dict[str, Any] = field(default_factory=dict)
    prompt: PromptInfo
    labels: list[str]
    encoding: EncodingInfo
    opset: int = 0
    exporter: str = ""
    data_dir: str = ""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    aggregation_dev_f1: dict[str, float] = field(default_factory=dict)
    # The word aggregation that scored best on dev: the default of the service, `predict` and `evaluate`.
    best_aggregation: str = "first"
    text_path: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def base_model(self) -> str | None:
        return self.source_model.get("base_model")


def version_warnings(recorded: dict[str, str], running: dict[str, str] | None = None) -> list[str]:
    """Libraries whose major.minor differs between where a model was made and here (one line each)."""
    running = versions() if running is None else running
    out = []
    for name in _SERVING_CRITICAL:
        was = recorded.get(name) or (recorded.get("onnxruntime-gpu") if name == "onnxruntime" else None)
        now_ = running.get(name) or (running.get("onnxruntime-gpu") if name == "onnxruntime" else None)
        if was and now_ and was.split(".")[:2] != now_.split(".")[:2]:
            out.append(f"{name} {now_} here, {was} where the model was made: answers may differ slightly")
    return out
