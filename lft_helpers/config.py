"""One validated configuration object for the notebook, the command line and the tests.

Values are resolved in this order, later winning: the dataclass defaults, the chosen preset, the
environment (``LFT_MODEL``, ``LFT_DATA``, ``LFT_PRESET``), then explicit arguments.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from .errors import LFTError

DEFAULT_MODEL = "distilbert-base-uncased"
DEFAULT_DATA = "stanfordnlp/imdb"
ENV_MODEL, ENV_DATA, ENV_PRESET = "LFT_MODEL", "LFT_DATA", "LFT_PRESET"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Sizes per preset. `cpu` fits a 2-core laptop in well under half an hour; `full` is all of IMDb
# for a GPU. Learning rate 2e-3 for LoRA: 5e-4 left the loss flat on a CPU-sized budget, and
# 2 epochs of 2,000 reviews reached 0.866 with the validation loss still falling, hence 3.
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
    "cpu": dict(
        train_size=2000,
        val_size=400,
        eval_size=2000,
        max_length=256,
        epochs=3.0,
        train_batch_size=16,
        eval_batch_size=64,
        logging_steps=10,
        eval_steps=50,
    ),
    "full": dict(
        train_size=24000,
        val_size=1000,
        eval_size=25000,
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
    """Every knob of an experiment. Invalid values fail here, naming the field."""

    model: str = DEFAULT_MODEL
    data: str = DEFAULT_DATA
    preset: str = "cpu"
    train_size: int = 2000
    val_size: int = 400
    eval_size: int = 2000
    max_length: int = 256
    epochs: float = 3.0
    learning_rate: float = 2e-3
    full_learning_rate: float = 5e-5
    train_batch_size: int = 16
    eval_batch_size: int = 64
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None
    seed: int = 42
    output_dir: str = "runs/latest"
    text_column: str = "text"
    label_column: str = "label"
    precision: str = "auto"
    logging_steps: int = 10
    eval_steps: int = 50
    save_steps: int = 0
    save_total_limit: int = 2
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    extra: dict = field(default_factory=dict)

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


# Command-line flags whose names differ from the field they set.
FLAGS = {
    "learning_rate": "--lr",
    "full_learning_rate": "--full-lr",
    "train_batch_size": "--batch-size",
}


def flag_name(field_name: str) -> str:
    return FLAGS.get(field_name, "--" + field_name.replace("_", "-"))


def _fail(name: str, value, why: str) -> None:
    raise LFTError(f"Config field `{name}`={value!r} (flag {flag_name(name)}) is invalid: {why}.")


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
    for name in ("val_size", "save_steps", "seed"):
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
