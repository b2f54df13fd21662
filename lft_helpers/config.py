"""One validated configuration object for the notebook, the command line and the tests.

Values are resolved in this order, later winning: the dataclass defaults, the chosen preset, the
environment (``LFT_MODEL``, ``LFT_DATA``, ``LFT_PRESET``), then explicit arguments.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .errors import LFTError
from .flags import flag_of, option

DEFAULT_MODEL = "distilbert-base-uncased"
DEFAULT_DATA = "stanfordnlp/imdb"
ENV_MODEL, ENV_DATA, ENV_PRESET = "LFT_MODEL", "LFT_DATA", "LFT_PRESET"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TRUNCATIONS = ("head", "head+tail")

# Sizes per preset; `cpu` is the dataclass defaults below. `cpu` fits a 2-core laptop in well
# under half an hour; `full` is all of IMDb for a GPU.
PRESETS: dict[str, dict] = {
    "smoke": dict(
        train_size=32,
        val_size=16,
        eval_size=32,
        max_length=64,
        epochs=1.0,
        train_batch_size=8,
        eval_batch_size=16,
        logging_steps=1,
        eval_steps=2,
    ),
    "cpu": {},
    "full": dict(
        train_size=24000,
        val_size=1000,
        # All of IMDb's test split but the 123 reviews also in train (see data.select_subsets),
        # balanced: 12,400 of the 12,405 negative reviews left.
        eval_size=24800,
        max_length=512,
        epochs=2.0,
        learning_rate=1e-3,
        train_batch_size=32,
        eval_batch_size=128,
        logging_steps=25,
        eval_steps=250,
    ),
}


@dataclass(frozen=True)
class Config:
    """Every knob of an experiment; the defaults are the `cpu` preset. Invalid values fail here."""

    model: str = option(
        DEFAULT_MODEL,
        f"Hub id, local model directory, or `minilm-offline` (env {ENV_MODEL})",
    )
    data: str = option(
        DEFAULT_DATA,
        "Hub dataset id, or a directory with train/test parquet, csv or jsonl files "
        f"(env {ENV_DATA})",
    )
    preset: str = option(
        "cpu",
        "sizes: smoke (seconds), cpu (a laptop run), full (all of IMDb, GPU) "
        f"(env {ENV_PRESET}; default: full with a GPU, else cpu)",
        choices=tuple(PRESETS),
    )
    train_size: int = option(2000, "training reviews (balanced classes)")
    val_size: int = option(400, "validation reviews for the loss curve (from the train split)")
    eval_size: int = option(2000, "evaluation reviews from the test split")
    max_length: int = option(256, "truncate reviews to this many tokens")
    truncation: str = option(
        "head",
        "which tokens a review longer than --max-length keeps: head (the first ones) or "
        "head+tail (the first --head-tokens and the last ones; Sun et al. 2019)",
        choices=TRUNCATIONS,
    )
    # Sun et al. 2019 kept 128 head + 382 tail tokens of 512 on IMDb.
    head_tokens: int = option(128, "leading tokens kept with --truncation head+tail")
    # 2 epochs of 2,000 reviews left the validation loss still falling, hence 3.
    epochs: float = option(3.0, "training epochs")
    # 5e-4 left the LoRA loss flat on a CPU-sized budget.
    learning_rate: float = option(2e-3, "LoRA and head-only learning rate", flag="--lr")
    full_learning_rate: float = option(5e-5, "full fine-tuning learning rate", flag="--full-lr")
    train_batch_size: int = option(16, "training batch size", flag="--batch-size")
    micro_batch_size: int = option(
        0,
        "most reviews per forward and backward pass: a larger training batch runs in equal "
        "parts that fit, their gradients adding up to the batch's (0: the whole batch)",
    )
    eval_batch_size: int = option(64, "evaluation batch size")
    lora_r: int = option(8, "LoRA rank r")
    lora_alpha: int = option(16, "LoRA scaling alpha (the update is scaled by alpha / r)")
    # 0, like the model's own dropout under fast_training: on a CPU, drawing a dropout mask
    # costs far more than the rank-8 matmuls it feeds (docs/performance.md).
    lora_dropout: float = option(0.0, "dropout on the LoRA path")
    target_modules: tuple[str, ...] | None = option(
        None,
        "comma-separated LoRA targets, or all-linear (default: the attention query and value)",
        type=str,  # one comma-separated flag; __post_init__ splits it
    )
    seed: int = option(42, "seed for subsets, head initialisation and training")
    output_dir: str = option("runs/latest", "where results.json and the adapter go")
    text_column: str = option("text", "name of the text column")
    label_column: str = option("label", "name of the label column")
    keep_eval_duplicates: bool = option(
        False,
        "keep test reviews that repeat a train review in the eval subset "
        "(default: left out, since a model may have memorised them)",
    )
    precision: str = option(
        "auto", "mixed precision (auto: bf16 where native, fp16 on older GPUs)", choices=PRECISIONS
    )
    fast_training: bool = option(
        True,
        "train on the plain path: the model's dropout on, frozen weights kept in fp32 and "
        "cast by autocast at every use, and attention in the mixed precision (default: the fast "
        "path, with the model's dropout off, or only its attention dropout when every weight "
        "trains, frozen weights held in the mixed precision, and on a CPU attention trained in "
        "fp32)",
        flag="--plain-training",
    )
    keep_freed_memory: bool = option(
        True,
        "let the C library hand memory freed between steps back to the OS (default: on a CPU "
        "with glibc, keep it for reuse: each step's activations then land on pages already "
        "mapped instead of fresh ones the kernel must zero, and resident memory stays at its "
        "peak)",
        flag="--default-allocator",
    )
    logging_steps: int = option(10, "log the training loss every N steps")
    eval_steps: int = option(50, "validation loss every N steps")
    save_steps: int = option(0, "checkpoint every N steps for --resume (0: never)")
    save_total_limit: int = option(2, "checkpoints kept per variant, newest first")
    warmup_ratio: float = option(0.1, "share of the steps spent warming up the learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay")

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str):
            names = tuple(t.strip() for t in self.target_modules.split(",") if t.strip())
            object.__setattr__(self, "target_modules", names or None)
        elif self.target_modules is not None:
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        _validate(self)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["target_modules"] = list(self.target_modules) if self.target_modules else None
        return out

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """The Config a results file recorded; fields it predates take their defaults, and
        fields since dropped are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def describe_default(name: str, default) -> str | None:
    """A field's default as --help shows it: per preset where the presets differ."""
    values = {preset: PRESETS[preset].get(name, default) for preset in PRESETS}
    if len(set(values.values())) > 1:
        return ", ".join(
            f"{preset} {value:g}" if isinstance(value, float) else f"{preset} {value}"
            for preset, value in values.items()
        )
    return None if default is None or name in ("preset", "model", "data") else str(default)


def _fail(name: str, value, why: str) -> None:
    flag = flag_of(Config.__dataclass_fields__[name])
    raise LFTError(f"Config field `{name}`={value!r} (flag {flag}) is invalid: {why}.")


def _validate(c: Config) -> None:
    if c.preset not in PRESETS:
        _fail("preset", c.preset, f"choose one of {', '.join(PRESETS)}")
    for name in ("model", "data", "output_dir", "text_column", "label_column"):
        value = getattr(c, name)
        if not isinstance(value, str) or not value.strip():
            _fail(name, value, "give a non-empty string")
    positive = ("train_size", "eval_size", "max_length", "train_batch_size", "eval_batch_size")
    for name in (*positive, "lora_r", "lora_alpha", "logging_steps", "eval_steps"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            _fail(name, value, "give a positive whole number")
    for name in ("val_size", "save_steps", "seed", "micro_batch_size"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            _fail(name, value, "give a whole number, 0 or more")
    if c.save_total_limit < 1:
        _fail("save_total_limit", c.save_total_limit, "keep at least one checkpoint")
    for name in ("epochs", "learning_rate", "full_learning_rate"):
        value = getattr(c, name)
        if not isinstance(value, (int, float)) or not value > 0:
            _fail(name, value, "give a positive number")
    for name in ("lora_dropout", "warmup_ratio", "weight_decay"):
        value = getattr(c, name)
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            _fail(name, value, "give a number in [0, 1)")
    if c.precision not in PRECISIONS:
        _fail("precision", c.precision, f"choose one of {', '.join(PRECISIONS)}")
    if c.truncation not in TRUNCATIONS:
        _fail("truncation", c.truncation, f"choose one of {', '.join(TRUNCATIONS)}")
    if isinstance(c.head_tokens, bool) or not isinstance(c.head_tokens, int) or c.head_tokens < 0:
        _fail("head_tokens", c.head_tokens, "give a whole number, 0 or more")
    # [CLS] and [SEP] take two of the max_length tokens; at least one must come from the tail.
    if c.truncation == "head+tail" and c.head_tokens >= c.max_length - 2:
        _fail(
            "head_tokens",
            c.head_tokens,
            f"with --truncation head+tail it must be below --max-length minus 2 "
            f"({c.max_length - 2}) so the tail keeps some tokens; lower --head-tokens",
        )
    if c.target_modules is not None and not all(isinstance(t, str) and t for t in c.target_modules):
        _fail("target_modules", c.target_modules, "give module names such as query,value")


def auto_preset() -> str:
    """`full` when a CUDA GPU is present, else `cpu`."""
    import torch

    return "full" if torch.cuda.is_available() else "cpu"


def make_config(preset: str | None = None, **overrides) -> Config:
    """Build a Config from a preset, the environment and explicit overrides (None = not given)."""
    preset = preset or os.environ.get(ENV_PRESET) or auto_preset()
    if preset not in PRESETS:
        _fail("preset", preset, f"choose one of {', '.join(PRESETS)} (or unset {ENV_PRESET})")
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise LFTError(f"Unknown config field(s): {', '.join(unknown)}. Known: {sorted(known)}.")
    values: dict = {"preset": preset, **PRESETS[preset]}
    for name, env in (("model", ENV_MODEL), ("data", ENV_DATA)):
        if os.environ.get(env):
            values[name] = os.environ[env]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)
