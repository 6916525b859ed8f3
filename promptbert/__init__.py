"""promptbert: a prompt-conditioned BERT named-entity tagger (see README.md)."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it
