"""promptbert: a prompt-conditioned BERT named-entity tagger (see README.md).

    from promptbert import Tagger
    tagger = Tagger.from_pretrained("artifacts/demo")
    tagger("Angela Merkel met Emmanuel Macron in Paris.")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place: pyproject.toml reads it
__all__ = ["ArtifactConfig", "PromptSpec", "Tagger", "__version__"]

if TYPE_CHECKING:
    from .manifest import ArtifactConfig
    from .prompt import PromptSpec
    from .tagger import Tagger


def __getattr__(name: str) -> Any:
    # Lazy: `import promptbert.config` (training, the CLI) must not load numpy and tokenizers.
    if name == "Tagger":
        from .tagger import Tagger

        return Tagger
    if name == "PromptSpec":
        from .prompt import PromptSpec

        return PromptSpec
    if name == "ArtifactConfig":
        from .manifest import ArtifactConfig

        return ArtifactConfig
    raise AttributeError(f"module 'promptbert' has no attribute {name!r}")
