"""Exceptions the CLIs turn into one-line messages with exit code 2."""


class PromptBertError(Exception):
    """Base class: bad input or a broken artifact, never a bug in promptbert."""


class ConfigError(PromptBertError, ValueError):
    """A config or prompt file is invalid; the message names the field."""


class DataError(PromptBertError, ValueError):
    """A corpus file is missing or malformed; the message names file and line."""


class ArtifactError(PromptBertError):
    """A model folder or ONNX artifact is missing, incomplete or corrupt."""


class InputError(PromptBertError, ValueError):
    """A request to predict is invalid (too long, wrong option)."""
