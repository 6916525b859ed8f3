"""The ``promptbert`` command (installed as ``promptbert.cli``): it may import every stage, the core imports none."""

from .main import main

__all__ = ["main"]
