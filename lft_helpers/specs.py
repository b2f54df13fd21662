"""Experiments as data: every way to fine-tune that we run is a named `Spec`.

A spec says which weights train (`train`), which config fields it changes (`overrides`, e.g. a
LoRA rank or a smaller budget) and which PEFT config fields it sets beyond those the config
holds (`peft`, e.g. ``use_rslora``). One loop, `experiment.run_specs`, runs any list of them for
`run`, `compare`, `sweep` and the notebook alike, so a new method or rank is a new spec, never a
new code path. Learning from PEFT's `method_comparison/`: experiments are data, one runner, one
results schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from .config import Config
from .errors import LFTError

# What a spec trains: nothing (the untrained head), the head alone, a PEFT adapter plus the
# head, or every weight; or, with no gradient training at all, a scikit-learn logistic
# regression on the frozen encoder's pooled embeddings (the linear-probe baseline).
TRAIN_MODES = ("none", "head", "peft", "full", "embeddings")
# A target list that stands for every linear layer of the encoder (resolved per architecture).
ALL_LINEAR = "all-linear"


def frozen(mapping=None) -> MappingProxyType:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Spec:
    """One named run: what trains, what config it changes, and extra PEFT config fields.

    The optional hooks are data too, so a method that needs one is still only a spec:
    `trainable` names parameter-name components that train as well (BitFit: ``("bias",)``),
    `optimizer` replaces the Trainer's AdamW by a named builder with its options
    (``{"name": "loraplus", "loraplus_lr_ratio": 16}``), `callbacks` names training callbacks
    (``("adalora",)``), and `probe` holds the embeddings probe's options (``{"C": 1.0}``).
    The names resolve in `training` (optimizers, callbacks).
    """

    name: str
    train: str
    label: str = ""
    overrides: MappingProxyType = field(default_factory=frozen)
    peft: MappingProxyType = field(default_factory=frozen)
    save_dir: str | None = None
    trainable: tuple[str, ...] = ()
    optimizer: MappingProxyType = field(default_factory=frozen)
    callbacks: tuple[str, ...] = ()
    probe: MappingProxyType = field(default_factory=frozen)

    def __post_init__(self) -> None:
        if self.train not in TRAIN_MODES:
            raise LFTError(
                f"Spec `{self.name}`: train={self.train!r} is not one of {', '.join(TRAIN_MODES)}."
            )
        unknown = sorted(set(self.overrides) - set(Config.__dataclass_fields__))
        if unknown:
            raise LFTError(f"Spec `{self.name}` overrides unknown config field(s) {unknown}.")
        if self.optimizer and "name" not in self.optimizer:
            raise LFTError(
                f"Spec `{self.name}`: optimizer={dict(self.optimizer)!r} has no `name` (e.g. "
                "loraplus)."
            )
        object.__setattr__(self, "overrides", frozen(self.overrides))
        object.__setattr__(self, "peft", frozen(self.peft))
        object.__setattr__(self, "optimizer", frozen(self.optimizer))
        object.__setattr__(self, "probe", frozen(self.probe))
        for name in ("trainable", "callbacks"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        object.__setattr__(self, "label", self.label or self.name)

    @property
    def peft_type(self) -> str | None:
        return self.peft.get("peft_type", "LORA") if self.train == "peft" else None

    @property
    def trains(self) -> bool:
        return self.train != "none"

    def config_for(self, config: Config) -> Config:
        """The run's own config: the experiment's, with this spec's overrides applied."""
        return config.replace(**self.overrides) if self.overrides else config

    def learning_rate(self, config: Config) -> float | None:
        """Full fine-tuning has its own, smaller rate; None for a spec that trains nothing by
        gradient descent (the untrained baseline, the embeddings probe)."""
        if not self.trains or self.train == "embeddings":
            return None
        return config.full_learning_rate if self.train == "full" else config.learning_rate

    def to_dict(self) -> dict:
        overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides.items()}
        record = {
            "name": self.name,
            "train": self.train,
            "label": self.label,
            "overrides": overrides,
            "peft": dict(self.peft),
            "save_dir": self.save_dir,
        }
        # The hooks only where set: a spec without them keeps the record it always had.
        hooks = {
            "trainable": list(self.trainable),
            "optimizer": dict(self.optimizer),
            "callbacks": list(self.callbacks),
            "probe": dict(self.probe),
        }
        return record | {k: v for k, v in hooks.items() if v}


# The four-way comparison. `lora` takes its rank, alpha, dropout and targets from the config.
VARIANT_SPECS = {
    spec.name: spec
    for spec in (
        Spec("baseline", "none", "Untrained head (baseline)"),
        Spec("head", "head", "Head only (linear probe)", save_dir="head"),
        Spec("lora", "peft", "LoRA", peft={"peft_type": "LORA"}, save_dir="adapter"),
        Spec("full", "full", "Full fine-tuning", save_dir="full_model"),
    )
}
VARIANTS = tuple(VARIANT_SPECS)

SWEEP_RANKS = (1, 2, 4, 8, 16, 32)
ALL_LINEAR_RANK = 8
ALPHA_PER_RANK = 2
ALPHA_RULE = f"lora_alpha = {ALPHA_PER_RANK} * r"


def run_slug(name: str) -> str:
    """A folder name for a run: 'r=8 all-linear' -> 'r8-all-linear'."""
    return name.replace("=", "").replace(" ", "-")


def lora_rank_spec(r: int, targets=None, name: str | None = None) -> Spec:
    """LoRA at rank `r` with alpha = 2r, so every rank updates at the same scale (alpha/r = 2)."""
    name = name or f"r={r}"
    overrides = {"lora_r": r, "lora_alpha": ALPHA_PER_RANK * r}
    if targets:
        overrides["target_modules"] = tuple([targets] if isinstance(targets, str) else targets)
    return Spec(
        name,
        "peft",
        f"LoRA {name}",
        overrides=overrides,
        peft={"peft_type": "LORA"},
        save_dir=f"{run_slug(name)}/adapter",
    )


def sweep_specs(ranks=SWEEP_RANKS, *, all_linear: bool = True) -> list[Spec]:
    """LoRA at each rank on the config's targets, then r = 8 on every linear layer."""
    specs = [lora_rank_spec(r) for r in ranks]
    if all_linear:
        name = f"r={ALL_LINEAR_RANK} {ALL_LINEAR}"
        specs.append(lora_rank_spec(ALL_LINEAR_RANK, ALL_LINEAR, name))
    return specs


def variant_specs(names) -> list[Spec]:
    """The named variants' specs, in the order given; an unknown name is an error."""
    unknown = [n for n in names if n not in VARIANT_SPECS]
    if unknown:
        raise LFTError(f"Unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}.")
    return [VARIANT_SPECS[n] for n in names]
