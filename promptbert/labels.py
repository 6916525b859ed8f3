"""The label map: ``O`` plus B-/I- tags per entity type, in a fixed order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

OUTSIDE = "O"


@dataclass(frozen=True)
class LabelMap:
    """IOB2 labels; index 0 is always ``O``."""

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.labels or self.labels[0] != OUTSIDE:
            raise ConfigError(f"labels: the first label must be {OUTSIDE!r}, got {self.labels[:1]}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError("labels: duplicate labels")
        for lab in self.labels[1:]:
            if lab[:2] not in ("B-", "I-") or not lab[2:]:
                raise ConfigError(f"labels: {lab!r} is not an IOB2 label (B-TYPE or I-TYPE)")

    @classmethod
    def from_types(cls, entity_types: tuple[str, ...] | list[str]) -> LabelMap:
        if not entity_types:
            raise ConfigError("labels: at least one entity type is required")
        for t in entity_types:
            if not isinstance(t, str) or not t or any(c.isspace() for c in t) or t == OUTSIDE:
                raise ConfigError(f"labels: invalid entity type {t!r}")
        return cls((OUTSIDE, *[f"{p}-{t}" for t in entity_types for p in ("B", "I")]))

    @property
    def entity_types(self) -> tuple[str, ...]:
        seen: list[str] = []
        for lab in self.labels[1:]:
            if lab[2:] not in seen:
                seen.append(lab[2:])
        return tuple(seen)

    @property
    def label2id(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"labels": list(self.labels)}, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LabelMap:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(tuple(data["labels"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a label map ({exc})") from None
