"""What one benchmark run measures: `BenchSettings`, its flags (generated from the fields) and
the project Config of each benchmarked model."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..config import ENV_DATA, PRECISIONS, Config, make_config
from ..errors import LFTError
from ..flags import add_dataclass_flags, option, values_from_args
from ..modeling import OFFLINE_ALIAS
from .subjects import DEFAULT_MODELS, RANDOM_DISTILBERT, bench_model_source


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run measures; batch sizes of 0 take the preset's."""

    models: tuple[str, ...] = option(
        DEFAULT_MODELS,
        f"model to benchmark, repeatable: `{OFFLINE_ALIAS}`, a model directory, or "
        f"`{RANDOM_DISTILBERT}`",
        flag="--model",
    )
    data: str | None = option(None, f"IMDb directory or Hub id (env {ENV_DATA})")
    reviews: int = option(1000, "test reviews, both classes in equal share")
    max_length: int = option(512, "truncate reviews to this many tokens")
    train_steps: int = option(8, "timed training steps")
    warmup_steps: int = option(2, "untimed training steps before the timed ones")
    eval_batch_size: int = option(0, "evaluation batch size; 0 takes the preset's")
    train_batch_size: int = option(0, "training batch size; 0 takes the preset's")
    precision: str = option(
        "auto",
        "fast path precision (auto: bf16 where supported; fp32 turns autocast off)",
        choices=PRECISIONS,
    )
    adapter: str | None = option(None, "trained adapter folder for the pretrained model")
    seed: int = option(42, "review selection and initialisation seed")
    memory: bool = option(True, "skip the LoRA and full fine-tuning memory probes")
    threads: int = option(0, "torch threads; 0 is one per usable CPU")
    keep_freed_memory: bool = option(
        True,
        "let glibc return freed memory to the OS (slower CPU training; default: keep it)",
        flag="--default-allocator",
    )
    fast_batch_size: int = option(
        0, "fast path's inference batch size; 0 is 16 on a CPU, 64 on a GPU"
    )
    breakdown: bool = option(
        True, "measure only the naive and the fast evaluation, not each step between"
    )
    compile: bool = option(
        False, "add a last step: the fast model compiled with frozen weights (torch.compile)"
    )
    full_training: bool = option(
        True, "time LoRA training only, not full fine-tuning's naive and fast training too"
    )
    profile: bool = option(
        True, "skip the torch.profiler profiles of one LoRA training step, before and fast"
    )
    loss_check: bool = option(
        True, "skip the loss check of each training step against an fp32 training"
    )


def check_settings(settings: BenchSettings) -> None:
    if settings.fast_batch_size < 0:
        raise LFTError("Bench option --fast-batch-size must be 0 (automatic) or more.")
    for name in ("reviews", "max_length", "train_steps"):
        if getattr(settings, name) < 1:
            raise LFTError(f"Bench option --{name.replace('_', '-')} must be 1 or more.")
    for name in ("warmup_steps", "eval_batch_size", "train_batch_size", "threads"):
        if getattr(settings, name) < 0:
            raise LFTError(f"Bench option --{name.replace('_', '-')} must be 0 or more.")
    if settings.adapter and not (Path(settings.adapter) / "adapter_config.json").is_file():
        raise LFTError(
            f"Adapter `{settings.adapter}` has no adapter_config.json: pass the `adapter` folder "
            "a `run` saved (e.g. runs/latest/adapter)."
        )


def bench_config(settings: BenchSettings, spec: str) -> Config:
    """The project Config for one benchmarked model (preset batch sizes unless overridden)."""
    config = make_config(
        model=bench_model_source(spec),
        data=settings.data,
        max_length=settings.max_length,
        precision=settings.precision,
        seed=settings.seed,
    )
    return config.replace(
        eval_batch_size=settings.eval_batch_size or config.eval_batch_size,
        train_batch_size=settings.train_batch_size or config.train_batch_size,
    )


def add_bench_flags(parser: argparse.ArgumentParser) -> None:
    """The `bench` flags: one per `BenchSettings` field, plus where the report goes."""
    add_dataclass_flags(parser, BenchSettings)
    parser.add_argument("--output", help="JSON path (default: results/bench-<device>.json)")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    return BenchSettings(**values_from_args(BenchSettings, args))
