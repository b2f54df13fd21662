"""Training speed through the project's own `Trainer`, and a profile of one fast step.

The timed steps run `Trainer.train()` exactly as `training.train_model` sets it up: the same
training arguments, collator, precision handling, gradient clipping and optimizer. Only the
batch order is the bench's own: a few steps picked across the whole range of lengths stand for
an epoch better than the Trainer's first batches (the longest, by its length grouping). A
callback reads the clock at each optimizer step's end, so a timed step includes loading and
collating its batch, the forward and backward passes and the optimizer update.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict

import numpy as np

from ..config import Config
from ..runtime import resolve_precision
from ..training import make_trainer_class, make_training_args
from .flops import StepCost, add_flop_rates, training_step_cost
from .subjects import build_base_model, build_lora_model

VARIANTS = ("lora", "full")
PROFILE_TOP = 15


def training_batches(lengths, batch_size: int, steps: int, *, grouped: bool, seed: int) -> list:
    """Row indices of `steps` full batches: random order, or the Trainer's length grouping.

    Grouped batches are picked evenly across their padded length, so a few steps stand for
    a whole epoch instead of its longest batches (which the Trainer puts first).
    """
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [int(n) for n in lengths]
    if grouped:
        generator = torch.Generator().manual_seed(seed)
        order = get_length_grouped_indices(lengths, batch_size, generator=generator)
    else:
        order = np.random.default_rng(seed).permutation(len(lengths)).tolist()
    size = min(batch_size, len(order))
    batches = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
    if not grouped:
        return [batches[i % len(batches)] for i in range(steps)]
    batches.sort(key=lambda rows: max(lengths[i] for i in rows))
    picks = np.linspace(0, len(batches) - 1, steps).round().astype(int)
    return [batches[i] for i in picks]


def make_bench_trainer(
    model,
    dataset,
    tokenizer,
    config: Config,
    *,
    learning_rate: float,
    max_steps: int,
    output_dir: str,
    pad_to: int | None = None,
    callbacks=(),
):
    """The `Trainer` of `training.train_model`, set to run `max_steps` batches of `dataset` in
    the order given; `pad_to` pads every batch to that length (the naive path)."""
    from torch.utils.data import SequentialSampler
    from transformers import DataCollatorWithPadding, PrinterCallback

    args = make_training_args(
        config,
        output_dir,
        learning_rate,
        max_steps=max_steps,
        eval_strategy="no",
        save_strategy="no",
    )

    class InOrderTrainer(make_trainer_class()):
        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(self.train_dataset if train_dataset is None else train_dataset)

    if pad_to:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to)
    else:
        collator = DataCollatorWithPadding(tokenizer)
    trainer = InOrderTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # no raw log dicts in the bench's output
    return trainer


def make_step_clock(*, profile_step: int | None = None):
    """A callback with the clock at each optimizer step's start and end; with `profile_step`,
    that step (0-based) also runs under torch.profiler."""
    import torch
    from transformers import TrainerCallback

    def now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    class StepClock(TrainerCallback):
        def __init__(self):
            self.begins, self.ends = [], []
            self.profiler = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.begins.append(now())
            if state.global_step == profile_step:
                activities = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                self.profiler = torch.profiler.profile(activities=activities)
                self.profiler.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self.profiler is not None and state.global_step == profile_step + 1:
                self.profiler.__exit__(None, None, None)
            self.ends.append(now())

    return StepClock()


def summarize_profile(profiler, *, top: int = PROFILE_TOP) -> dict:
    """The operators with the most self CPU time, with their share of all operators' time."""
    events = profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "total_self_cpu_ms": round(total / 1e3, 1),
        "operators": [
            {
                "op": e.key,
                "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2),
                "share": round(e.self_cpu_time_total / total, 4),
                "calls": int(e.count),
            }
            for e in ranked
        ],
    }


def build_variant(spec: str, config: Config, variant: str):
    """A fresh model for `variant` and its learning rate, as `run` trains it."""
    if variant == "lora":
        return build_lora_model(spec, config), config.learning_rate
    model = build_base_model(spec, config).requires_grad_(True)
    return model, config.full_learning_rate


def run_steps(model, dataset, tokenizer, config: Config, *, learning_rate, rows, pad_to, clock):
    """Train on `rows` (a list of batches of row indices) with the bench Trainer; return it."""
    order = [i for batch in rows for i in batch]
    with tempfile.TemporaryDirectory(prefix="lft-bench-train-") as tmp:
        trainer = make_bench_trainer(
            model,
            dataset.select(order),
            tokenizer,
            config,
            learning_rate=learning_rate,
            max_steps=len(rows),
            output_dir=tmp,
            pad_to=pad_to,
            callbacks=[clock] if clock else (),
        )
        trainer.train()
    return trainer


def step_flops(cost: StepCost, lengths, rows, *, pad_to: int | None) -> tuple[float, float]:
    """FLOPs needed (real tokens) and computed (padded tokens) by the steps over `rows`."""
    useful = executed = 0.0
    for batch in rows:
        real = [lengths[i] for i in batch]
        useful += cost.flops(real)
        executed += cost.flops([pad_to or max(real)] * len(real))
    return useful, executed


def measure_training(
    spec,
    config: Config,
    dataset,
    tokenizer,
    *,
    variant: str,
    fast: bool,
    steps: int,
    warmup: int,
    profile: bool = False,
) -> tuple[dict, dict | None]:
    """Samples/s and GFLOP/s of `steps` training steps after `warmup` untimed ones, on the
    naive path (fp32, padded to max_length, random batches) or the fast one (the configured
    precision, dynamic padding, length-grouped batches); and, with `profile`, a profile of one
    more step after the timed ones (a batch of middle length)."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    rows = training_batches(lengths, config.train_batch_size, steps, grouped=fast, seed=config.seed)
    warm = [rows[i % len(rows)] for i in range(warmup)]
    extra = [rows[len(rows) // 2]] if profile else []
    pad_to = None if fast else config.max_length
    precision = resolve_precision(config.precision) if fast else "fp32"
    step_config = config.replace(precision=precision)
    model, learning_rate = build_variant(spec, step_config, variant)
    cost = training_step_cost(model)
    clock = make_step_clock(profile_step=warmup + steps if profile else None)
    run_steps(
        model,
        dataset,
        tokenizer,
        step_config,
        learning_rate=learning_rate,
        rows=warm + rows + extra,
        pad_to=pad_to,
        clock=clock,
    )
    start = clock.ends[warmup - 1] if warmup else clock.begins[0]
    seconds = clock.ends[warmup + steps - 1] - start
    useful, executed = step_flops(cost, lengths, rows, pad_to=pad_to)
    result = {
        "variant": variant,
        "precision": precision,
        "padding": "dynamic" if fast else f"max_length {config.max_length}",
        "order": "length-grouped" if fast else "random",
        "batch_size": config.train_batch_size,
        "steps": steps,
        "warmup_steps": warmup,
        "seconds": round(seconds, 3),
        "samples_per_s": round(sum(len(r) for r in rows) / seconds, 3),
        "real_tokens": int(sum(lengths[i] for r in rows for i in r)),
        "computed_tokens": int(sum(len(r) * (pad_to or max(lengths[i] for i in r)) for r in rows)),
        "gflop_per_step": round(useful / steps / 1e9, 3),
        "step_cost": asdict(cost),
    }
    result = add_flop_rates(result, useful=useful, executed=executed)
    summary = None
    if profile:
        summary = {
            "step": f"{variant} fast, batch of {len(extra[0])} reviews, "
            f"padded to {max(lengths[i] for i in extra[0])} tokens",
            "seconds": round(clock.ends[-1] - clock.begins[-1], 3),
            **summarize_profile(clock.profiler),
        }
    return result, summary


def measure_training_pair(
    spec,
    config,
    dataset,
    tokenizer,
    *,
    variant: str,
    steps: int,
    warmup: int,
    profile: bool,
    log=print,
) -> tuple[dict, dict | None]:
    """One variant's training, naive against fast; the fast run's profile if asked."""
    out, summary = {}, None
    for name, fast in (("naive", False), ("fast", True)):
        log(f"  train {variant} {name}: {warmup} warm-up + {steps} timed steps")
        out[name], found = measure_training(
            spec,
            config,
            dataset,
            tokenizer,
            variant=variant,
            fast=fast,
            steps=steps,
            warmup=warmup,
            profile=profile and fast,
        )
        summary = summary or found
    out["speedup"] = round(out["fast"]["samples_per_s"] / out["naive"]["samples_per_s"], 3)
    return out, summary
