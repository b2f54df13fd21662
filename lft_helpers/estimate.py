"""How long a notebook run will take here, said before the slow sections start.

Time is tokens over a rate: reviews x epochs x the mean review length at `max_length`, divided
by tokens per second for this kind of hardware. The rates are for a DistilBERT-size encoder
(66M parameters) and are scaled for the smaller MiniLM. CPU rates are measured; GPU rates are
estimates, and the printed line says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import Config
from .runtime import cpu_name, gpu_name, gpu_supports_bf16, resolve_precision, usable_cpus
from .specs import SWEEP_RANKS
from .sweep import sweep_config

# Mean tokens per IMDb review truncated at max_length (WordPiece, uncased vocabulary as in
# DistilBERT and MiniLM, special tokens included), measured on 5,000 train and 5,000 test
# reviews. Batches are padded to their own longest review and grouped by length, so the work
# is close to these real tokens, not max_length.
MEAN_TOKENS = {32: 32, 64: 64, 128: 124, 192: 174, 256: 207, 384: 249, 512: 273, 1024: 305}
# Training rates below are at max length 256 (207 tokens a review). A token costs more in a
# longer review (attention, softmax): the notebook run trained 2,610 tokens/s at max length 256
# and 3,920 at 128 (124 tokens, rank sweep), which fits a cost per token proportional to
# (tokens + 42). Evaluation showed no such trend (16,400 and 17,500 tokens/s).
REFERENCE_TOKENS, LENGTH_OFFSET = MEAN_TOKENS[256], 42


@dataclass(frozen=True)
class Rates:
    """Tokens per second for a DistilBERT-size encoder: LoRA training and evaluation."""

    train: float
    eval: float
    measured: bool
    source: str


# CPU rates are per 2 cores. The committed notebook run of commit 9833d12 (MiniLM, max length
# 256, 2-core AMD EPYC with AVX512-BF16) trained LoRA at 9.6 and evaluated at 47 reviews/s under
# bf16 autocast, before the fast training path; results/bench-cpu.json, on the same kind of CPU,
# measured that path at 1.89x for MiniLM's LoRA training and 1.55x for full fine-tuning (whose
# hidden dropout stays). Hence 2,570 training and 3,470 evaluation tokens/s for DistilBERT-size
# after the speedups below. The earlier bench on that CPU: DistilBERT trains 1.46x and evaluates
# 2.79x slower than MiniLM, and bf16 trains 1.75x and evaluates 2.66x faster than fp32. GPU rates
# are estimates, not measurements: they assume under 10% of the fp16/bf16 tensor peak (T4 65
# TFLOP/s, A100 312 TFLOP/s) at about 0.18 GFLOP per trained and 0.09 GFLOP per evaluated token.
RATES = {
    "cpu-bf16": Rates(2_570, 3_470, True, "measured on a 2-core AMD EPYC"),
    "cpu-fp32": Rates(1_470, 1_300, True, "measured on a 2-core AMD EPYC"),
    "t4-fp16": Rates(25_000, 75_000, False, "estimated for a T4"),
    "ampere-bf16": Rates(120_000, 360_000, False, "estimated for an A100"),
}
# fp32 or emulated bf16 on a GPU runs on its plain (non-tensor-core) units: about 4x slower.
SLOW_GPU_PRECISION = 4.0
# Beyond this many threads, an encoder this small stops getting faster.
MAX_SCALED_CPUS = 16
# Speed relative to DistilBERT (train, eval), by a part of the model's name: MiniLM-L6 (22M
# parameters) from bench-cpu.json. Models not listed are taken as DistilBERT-size.
MODEL_SPEEDUPS = {"distilbert": (1.0, 1.0), "minilm": (1.46, 2.79)}
# Relative training cost per token, from the notebook run's train reviews/s: full fine-tuning
# updates every weight (1.15 before the fast path, which gained it 1.55x against LoRA's 1.89x),
# and LoRA on every linear layer (sweep) carries 4.5x the adapters of query/value. The head-only
# probe is not here: its frozen encoder runs once over the training and validation reviews, an
# evaluation pass (`training.can_cache_encoder`), and its head's steps cost next to nothing.
TRAIN_COST = {"lora": 1.0, "full": 1.40, "all-linear": 1.61}
SHIPPING_EVAL_PASSES = 3  # unmerged, merged and prepared-for-inference timings
FIXED_S = 60  # loading data and models, tokenizing, figures


def mean_tokens(max_length: int) -> float:
    lengths = sorted(MEAN_TOKENS)
    return float(np.interp(max_length, lengths, [MEAN_TOKENS[n] for n in lengths]))


def detect_hardware(precision: str = "auto") -> dict:
    """The kind of machine this is (a key of RATES), and what to call it."""
    import torch

    resolved = resolve_precision(precision)
    if torch.cuda.is_available():
        kind = "ampere-bf16" if gpu_supports_bf16() else "t4-fp16"
        native = resolved == "fp16" or (resolved == "bf16" and kind == "ampere-bf16")
        return {"kind": kind, "name": gpu_name(), "precision": resolved, "native": native}
    cpus = usable_cpus()
    kind = "cpu-bf16" if resolved == "bf16" else "cpu-fp32"
    name = f"{cpu_name()} ({cpus} cores)"
    return {"kind": kind, "name": name, "precision": resolved, "native": True, "cpus": cpus}


def hardware_rates(hardware: dict) -> Rates:
    rates = RATES[hardware["kind"]]
    scale = 1.0 if hardware["native"] else 1 / SLOW_GPU_PRECISION
    if "cpus" in hardware:
        scale *= min(hardware["cpus"], MAX_SCALED_CPUS) / 2
    return Rates(rates.train * scale, rates.eval * scale, rates.measured, rates.source)


def model_speedup(model: str) -> tuple[float, float] | None:
    """Train and eval speed relative to DistilBERT; None for a model not in MODEL_SPEEDUPS."""
    return next((s for key, s in MODEL_SPEEDUPS.items() if key in model.lower()), None)


def _training_s(config: Config, rates: Rates, cost: float) -> float:
    """One training: its reviews over the epochs, plus the periodic validation passes."""
    tokens = mean_tokens(config.max_length)
    steps = math.ceil(config.train_size / config.train_batch_size) * config.epochs
    passes = (steps // config.eval_steps + 1) if config.val_size else 0
    length_cost = (tokens + LENGTH_OFFSET) / (REFERENCE_TOKENS + LENGTH_OFFSET)
    train = config.train_size * config.epochs * tokens * length_cost * cost / rates.train
    return train + passes * config.val_size * tokens / rates.eval


def _eval_s(config: Config, rates: Rates, reviews: int | None = None) -> float:
    reviews = config.eval_size if reviews is None else reviews
    return reviews * mean_tokens(config.max_length) / rates.eval


def estimate_run(config: Config, *, run_extras: bool, hardware: dict | None = None) -> dict:
    """Seconds per notebook section for `config` on `hardware` (default: this machine)."""
    hardware = hardware or detect_hardware(config.precision)
    base = hardware_rates(hardware)
    speedup = model_speedup(config.model)
    train_x, eval_x = speedup or (1.0, 1.0)
    rates = Rates(base.train * train_x, base.eval * eval_x, base.measured, base.source)
    evaluate = _eval_s(config, rates)
    sections = {
        "setup": FIXED_S,
        "baseline and LoRA": 2 * evaluate + _training_s(config, rates, TRAIN_COST["lora"]),
    }
    if run_extras:
        head = _eval_s(config, rates, config.train_size + config.val_size)
        full = _training_s(config, rates, TRAIN_COST["full"])
        sections["head-only and full fine-tuning"] = head + full + 2 * evaluate
        sweep = sweep_config(config)
        per_run = _eval_s(sweep, rates) + _training_s(sweep, rates, TRAIN_COST["lora"])
        sections["rank sweep"] = len(SWEEP_RANKS) * per_run + (
            _eval_s(sweep, rates) + _training_s(sweep, rates, TRAIN_COST["all-linear"])
        )
    sections["shipping"] = SHIPPING_EVAL_PASSES * evaluate
    return {
        "preset": config.preset,
        "hardware": hardware,
        "measured": rates.measured,
        "source": rates.source,
        "model_known": speedup is not None,
        "sections_s": sections,
        "total_s": sum(sections.values()),
    }


def _minutes(seconds: float) -> str:
    return "under 1 min" if seconds < 60 else f"{round(seconds / 60)} min"


def describe_estimate(estimate: dict) -> str:
    """The total, the slow sections, and what the rates rest on: three lines."""
    hardware, sections = estimate["hardware"], estimate["sections_s"]
    parts = ", ".join(f"{name} {_minutes(s)}" for name, s in sections.items() if name != "setup")
    if estimate["measured"]:
        basis = f"rates {estimate['source']} CPU, scaled to this one's cores"
    else:
        basis = f"rates {estimate['source']}: a rough guess, not a measurement"
    if not estimate["model_known"]:
        basis += "; the model is taken to be DistilBERT-size"
    return (
        f"Estimated run time: about {_minutes(estimate['total_s'])} for preset "
        f"`{estimate['preset']}` on {hardware['name']} at {hardware['precision']}\n"
        f"  {parts}\n  ({basis})"
    )
