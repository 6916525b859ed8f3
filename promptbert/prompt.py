"""The structured prompt: Role + Task + Requirements + Details, rendered to one text.

The rendered text is segment A of every input the model sees. It is rendered
once, at training time, and stored in the model folder and the artifact; the
service reads that text and never re-renders it, so train and serve cannot drift.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config as cfg
from .errors import ConfigError

# Fewer tokens than this left for the user's text makes windows too small to be useful.
MIN_TEXT_TOKENS = 32
LABELS_PLACEHOLDER = "{labels}"


@dataclass(frozen=True)
class PromptDetails:
    """Optional guidance: numbered steps, worked examples and tips."""

    steps: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    tips: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptSpec:
    """One prompt, as written in ``prompts/*.yaml``."""

    role: str
    task: str
    requirements: tuple[str, ...] = ()
    details: PromptDetails = field(default_factory=PromptDetails)
    # Short description per entity type, used where a part says {labels}.
    labels: dict[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        for part in ("role", "task"):
            if not str(getattr(self, part)).strip():
                raise ConfigError(f"{part}: must not be empty")
        for i, req in enumerate(self.requirements):
            if not req.strip():
                raise ConfigError(f"requirements[{i}]: must not be empty")
        for part in ("steps", "examples", "tips"):
            for i, item in enumerate(getattr(self.details, part)):
                if not item.strip():
                    raise ConfigError(f"details.{part}[{i}]: must not be empty")
        for name, description in self.labels.items():
            if not name.strip() or any(c.isspace() for c in name):
                raise ConfigError(f"labels: type name {name!r} must be one word (no spaces)")
            if not description.strip():
                raise ConfigError(f"labels.{name}: the description must not be empty (or leave the type out of labels)")

    @classmethod
    def from_yaml(cls, path: str | Path) -> PromptSpec:
        data = cfg.read_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with role, task, requirements, details")
        data = dict(data)
        data.setdefault("name", Path(path).stem)
        if isinstance(data.get("requirements"), str):
            data["requirements"] = [data["requirements"]]
        try:
            return cfg.from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return cfg.to_dict(self)

    def empty_parts(self) -> list[str]:
        """The optional parts left empty: worth a lint warning (a model reads them), not an error."""
        problems = []
        if not self.requirements:
            problems.append("empty part: requirements")
        if self.details == PromptDetails():
            problems.append("empty part: details (steps, examples, tips)")
        return problems


def describe_labels(entity_types: tuple[str, ...] | list[str], descriptions: dict[str, str]) -> str:
    """``PER (people), ORG (organisations)`` -- the text that replaces {labels}."""
    parts = []
    for t in entity_types:
        d = descriptions.get(t, "").strip()
        parts.append(f"{t} ({d})" if d else t)
    return ", ".join(parts)


def render(spec: PromptSpec, entity_types: tuple[str, ...] | list[str] = ()) -> str:
    """Deterministic text of a prompt: same spec and labels, same bytes."""
    label_text = describe_labels(entity_types or tuple(spec.labels), spec.labels)

    def fill(s: str) -> str:
        return " ".join(s.replace(LABELS_PLACEHOLDER, label_text).split())

    lines = [f"Role: {fill(spec.role)}", f"Task: {fill(spec.task)}"]
    if spec.requirements:
        lines.append("Requirements: " + " ".join(f"- {fill(r)}" for r in spec.requirements))
    d = spec.details
    if d.steps:
        lines.append("Steps: " + " ".join(f"{i}. {fill(s)}" for i, s in enumerate(d.steps, 1)))
    if d.examples:
        lines.append("Examples: " + " ".join(f"- {fill(e)}" for e in d.examples))
    if d.tips:
        lines.append("Tips: " + " ".join(f"- {fill(t)}" for t in d.tips))
    return "\n".join(lines)


def fingerprint(rendered: str) -> str:
    """sha256 of the rendered text: the identity of a prompt across train, export and serve."""
    return hashlib.sha256(rendered.encode("utf-8")).hexdigest()


def check_fits(prompt_tokens: int, max_length: int) -> int:
    """Tokens left for the text; raises if fewer than MIN_TEXT_TOKENS."""
    special = 3 if prompt_tokens else 2  # [CLS] prompt [SEP] text [SEP]
    left = max_length - prompt_tokens - special
    if left < MIN_TEXT_TOKENS:
        raise ConfigError(
            f"prompt: renders to {prompt_tokens} tokens; with max_length {max_length} that leaves "
            f"{left} tokens for the text (need >= {MIN_TEXT_TOKENS}): shorten the prompt "
            f"(details.examples first) or raise max_length"
        )
    return left


# Common, entity-free English words used to build a same-length control prefix.
_CONTROL_WORDS = (
    "apple river window table green slowly music paper garden simple yellow cloud "
    "bread chair winter happy little round water stone quiet open basket letter candle "
    "orange pencil summer rabbit silver tree under wooden kitchen button blanket bottle "
    "mirror pillow carpet ladder feather jacket pocket violin tomato onion lemon cotton "
    "honey marble ribbon saddle tunnel valley meadow harbor puzzle rocket wagon zebra"
).split()


def control_text(n_tokens: int, single_piece: Any, seed: int = 0) -> str:
    """Unrelated words that tokenize to exactly ``n_tokens`` pieces: the honest control for a prompt.

    ``single_piece(word) -> bool`` says whether a word is one token for the model's
    tokenizer; only such words are used, so the count is exact.
    """
    pool = [w for w in _CONTROL_WORDS if single_piece(w)]
    if n_tokens and not pool:
        raise ConfigError("prompt: no control word is a single token for this tokenizer")
    rng = random.Random(seed)
    return " ".join(rng.choice(pool) for _ in range(n_tokens))


@dataclass(frozen=True)
class ResolvedPrompt:
    """What a ``prompt:`` setting turned into: the text the model sees and where it came from."""

    kind: str  # "spec", "none" or "control"
    text: str
    spec: PromptSpec | None
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.text)


def find_file(name: str) -> Path:
    """A path as given, else relative to the project root (so commands work from any folder)."""
    p = Path(name).expanduser()
    if p.exists() or p.is_absolute():
        return p
    root = Path(__file__).resolve().parents[1]
    alt = root / name
    return alt if alt.exists() else p


def resolve(setting: str, entity_types: tuple[str, ...], tokenizer: Any, seed: int = 0) -> ResolvedPrompt:
    """Turn ``prompt: <yaml> | none | control:<yaml>`` into the rendered text.

    ``tokenizer`` is a ``tokenizers.Tokenizer``; it measures the spec's length for
    the control, which is built from single-piece unrelated words of the same count.
    """
    from .encoding import plain_tokenizer

    tokenizer = plain_tokenizer(tokenizer)
    setting = setting.strip()
    if setting.lower() == "none":
        return ResolvedPrompt("none", "", None, "none")
    control = setting.lower().startswith("control:")
    path = find_file(setting.split(":", 1)[1].strip() if control else setting)
    spec = PromptSpec.from_yaml(path)
    text = render(spec, entity_types)
    if not control:
        return ResolvedPrompt("spec", text, spec, str(path))
    n = len(tokenizer.encode(text, add_special_tokens=False).ids)

    def single(word: str) -> bool:
        return len(tokenizer.encode(word, add_special_tokens=False).ids) == 1

    return ResolvedPrompt("control", control_text(n, single, seed), spec, f"control:{path}")
