"""Training speed through the project's own `Trainer`, and a profile of one fast step.

The timed steps run `Trainer.train()` on the Trainer `run` trains with (`training.build_trainer`,
as `training.train_model` calls it): the same training arguments, collator, precision handling,
gradient clipping and optimizer. Only the batch order is the bench's own: a few steps picked
across the whole range of lengths stand for an epoch better than the Trainer's first batches
(the longest, by its length grouping). `run_steps` lists every difference and its reason. A
callback reads the clock at each optimizer step's end, so a timed step includes loading and
collating its batch, the forward and backward passes and the optimizer update.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..config import Config
from ..evaluation import compute_metrics, predict_logits
from ..runtime import resolve_precision
from ..training import (
    build_trainer,
    make_fast_training_callback,
    micro_batch_limit,
    micro_batches,
    unwrap_mixed_precision,
)
from .flops import StepCost, add_flop_rates, training_step_cost
from .subjects import build_base_model, build_lora_model

VARIANTS = ("lora", "full")
PROFILE_TOP = 15


@dataclass(frozen=True)
class TrainingStep:
    """One rung of the training ladder; `{p}` in the description is the fast precision."""

    name: str
    description: str
    grouped: bool = True  # dynamic padding, length-grouped batches (else padded, random)
    mixed: bool = True  # the configured mixed precision (else fp32)
    fast: dict | None = None  # options of training.make_fast_training_callback


# Each step adds one change to the one before. `before` is the fast path as it was before the
# training work, kept so that every gain is measured against it in the same run; the last step
# is what `run` does by default. Full fine-tuning freezes nothing, so it has no frozen-weights
# step, and by default it keeps its hidden dropout (training.make_fast_training_callback).
NAIVE = TrainingStep(
    "naive", "fp32, padded to max length, random batches", grouped=False, mixed=False
)
BEFORE = TrainingStep("before", "{p} autocast, dynamic padding, length-grouped")
AUTO = {"dropout": "auto"}
# Steps before the one that brought faster dropout masks draw them as PyTorch does.
TORCH_MASKS = {"fast_masks": False}
# Micro-batches (config.micro_batch_size) were measured as a step after this one and not kept
# (docs/performance.md): whole batches stay the default.
FAST = TrainingStep("fast", "+ attention in fp32 on a CPU: the default", fast=AUTO)
TRAINING_STEPS = {
    "lora": (
        NAIVE,
        BEFORE,
        TrainingStep(
            "frozen",
            "+ frozen weights held in {p}",
            fast={"dropout": "kept", "fp32_attention": False, **TORCH_MASKS},
        ),
        TrainingStep(
            "attention",
            "+ no attention dropout (SDPA's fused kernel)",
            fast={"dropout": "attention", "fp32_attention": False, **TORCH_MASKS},
        ),
        TrainingStep(
            "dropout", "+ no dropout in the frozen model", fast={**AUTO, "fp32_attention": False}
        ),
        FAST,
    ),
    # Full fine-tuning keeps its hidden dropout, whose masks get a step of their own.
    "full": (
        NAIVE,
        BEFORE,
        TrainingStep(
            "attention",
            "+ no attention dropout (SDPA's fused kernel)",
            fast={**AUTO, "fp32_attention": False, **TORCH_MASKS},
        ),
        TrainingStep("fp32", "+ attention in fp32 on a CPU", fast={**AUTO, **TORCH_MASKS}),
        TrainingStep("fast", "+ PCG64 dropout masks on a CPU: the default", fast=AUTO),
    ),
}


# Where the time goes before the training work and after it.
PROFILED = ("before", "fast")
# The loss check's yardstick: the fast steps' batches, trained plainly in fp32.
REFERENCE = TrainingStep("reference", "fp32, dynamic padding, length-grouped", mixed=False)
# A step is kept only if, after the same batches from the same start, the eval-mode loss on
# held-out reviews is no more than this many nats (3% of ln 2) above the fp32 reference's. Lower
# is no fault: without dropout the same steps fit faster.
LOSS_TOLERANCE = 0.02
# Nor can a step be judged more finely than fp32 training agrees with itself: a second reference
# on the same batches with another seed (initialisation and dropout) measures that spread, and
# the tolerance is the larger of the two. A few steps from random weights spread far wider than
# from pretrained ones, so a random-weight model's check no longer fails on noise alone.
SPREAD_SEED_OFFSET = 1
HELD_OUT = 32


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


def summarize_profile(events, *, top: int = PROFILE_TOP) -> dict:
    """The operators with the most self CPU time, with their share of all operators' time
    (`events`: a profiler's `key_averages()`)."""
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


def self_cpu_ms(events) -> dict:
    """Each operator's self CPU time in ms (`events`: a profiler's `key_averages()`)."""
    return {e.key: e.self_cpu_time_total / 1e3 for e in events}


# The operators that run each part's products, by the profiler's names: the linear layers'
# matmuls, and attention's (SDPA's fused kernels, or the math path's batched products).
LINEAR_OPS = ("aten::mm", "aten::addmm")
ATTENTION_MARKERS = ("scaled_dot_product", "aten::bmm")


def time_by_part(
    self_ms: dict, cost: StepCost, *, reviews: int, tokens: int, precision: str, attention: str
) -> list[dict]:
    """The profiled step's products split into linear layers and attention: each one's FLOPs
    at the padded length `tokens` (every review of the batch computes it), self time and
    GFLOP/s, and the precision it ran in, whose matmul peak is its own limit."""
    linear_ms = sum(ms for op, ms in self_ms.items() if op in LINEAR_OPS)
    attention_ms = sum(ms for op, ms in self_ms.items() if any(m in op for m in ATTENTION_MARKERS))
    parts = [
        (
            "linear layers (mm, addmm)",
            cost.per_token * reviews * tokens + cost.per_review * reviews,
            linear_ms,
            precision,
        ),
        ("attention products", cost.attention * reviews * tokens**2, attention_ms, attention),
    ]
    return [
        {
            "part": name,
            "gflop": round(flop / 1e9, 2),
            "self_cpu_ms": round(ms, 1),
            "gflops": round(flop / ms / 1e6, 1) if ms else None,
            "precision": ran_in,
        }
        for name, flop, ms, ran_in in parts
    ]


def held_out_loss(model, dataset, tokenizer, *, batch_size: int = 16) -> float:
    """Mean cross-entropy of `model` on `dataset`, evaluated as `run` evaluates, but in fp32."""
    logits = predict_logits(model, dataset, tokenizer, batch_size, "fp32")
    return compute_metrics(dataset["labels"], logits)["eval_loss"]


def build_variant(spec: str, config: Config, variant: str):
    """A fresh model for `variant` and its learning rate, as `run` trains it; the same one
    (head, adapters) every time for one seed."""
    import transformers

    transformers.set_seed(config.seed)
    if variant == "lora":
        return build_lora_model(spec, config), config.learning_rate
    model = build_base_model(spec, config).requires_grad_(True)
    return model, config.full_learning_rate


def run_steps(model, dataset, tokenizer, config: Config, *, learning_rate, rows, pad_to, callbacks):
    """Train on `rows` (a list of batches of row indices) with `run`'s Trainer, set to run
    exactly those batches in that order; return it. `pad_to` pads every batch to that length
    (the naive path); `callbacks` are all the callbacks, the fast path's included."""
    order = [i for batch in rows for i in batch]
    with tempfile.TemporaryDirectory(prefix="lft-bench-train-") as tmp:
        trainer = build_trainer(
            model,
            dataset.select(order),
            tokenizer,
            config,
            tmp,
            learning_rate=learning_rate,
            callbacks=callbacks,  # all of them: a rung's fast path (or `run`'s) and the clock
            # What the bench does differently from `run`, and why (besides passing no validation
            # set, spec callbacks or optimizer: it times plain LoRA and full fine-tuning):
            progress=False,  # the bench logs one line per rung, not loss lines amid the timings
            in_order=True,  # its own batches (training_batches), in the order it picked them
            pad_to=pad_to,  # the naive rung pads every batch to max_length
            max_steps=len(rows),  # exactly those batches, not `config.epochs` epochs
            eval_strategy="no",  # no validation pass inside the timed steps,
            save_strategy="no",  # nor a checkpoint written there
        )
        trainer.train()
    unwrap_mixed_precision(model)  # as train_model: evaluated in fp32 after
    return trainer


def forward_passes(rows, most: int) -> list:
    """The reviews of each forward pass: each batch of `rows` in the parts the Trainer runs
    (`training.micro_batches`; `most` 0: whole batches)."""
    passes = []
    for batch in rows:
        size, _ = micro_batches(len(batch), most)
        passes += [batch[i : i + size] for i in range(0, len(batch), size)]
    return passes


def step_flops(
    cost: StepCost, lengths, rows, *, pad_to: int | None, micro: int = 0
) -> tuple[float, float]:
    """FLOPs needed (real tokens) and computed (padded tokens) by the steps over `rows`, each
    forward pass padded to its longest review (or to `pad_to`)."""
    useful = executed = 0.0
    for part in forward_passes(rows, micro):
        real = [lengths[i] for i in part]
        useful += cost.flops(real)
        executed += cost.flops([pad_to or max(real)] * len(real))
    return useful, executed


def split_held_out(dataset, seed: int):
    """The reviews to train on, and `HELD_OUT` others (a quarter, from fewer) for the loss
    check."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    held = max(1, min(HELD_OUT, len(dataset) // 4))
    return dataset.select(sorted(order[held:])), dataset.select(sorted(order[:held]))


def measure_training(
    spec,
    config: Config,
    dataset,
    tokenizer,
    *,
    variant: str,
    step: TrainingStep,
    steps: int,
    warmup: int,
    held_out=None,
    profile: bool = False,
    train_seed: int | None = None,
) -> tuple[dict, dict | None]:
    """Samples/s and GFLOP/s of `steps` training steps after `warmup` untimed ones on `step`'s
    path, and the held-out loss after them; with `profile`, a profile of one more step after
    the timed ones (a batch of middle length). `train_seed` changes the initialisation and
    dropout seed, not the batches (which `config.seed` picks)."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    rows = training_batches(
        lengths, config.train_batch_size, steps, grouped=step.grouped, seed=config.seed
    )
    warm = [rows[i % len(rows)] for i in range(warmup)]
    # One more step after the timed ones, profiled if asked: every step of the ladder takes it,
    # so that all of them (and the reference) train on the same batches for the loss check.
    extra = [rows[len(rows) // 2]]
    pad_to = None if step.grouped else config.max_length
    precision = resolve_precision(config.precision) if step.mixed else "fp32"
    step_config = config.replace(
        precision=precision,
        fast_training=False,
        seed=config.seed if train_seed is None else train_seed,
    )
    micro = micro_batch_limit(step_config)
    model, learning_rate = build_variant(spec, step_config, variant)
    cost = training_step_cost(model)
    clock = make_step_clock(profile_step=warmup + steps if profile else None)
    fast = [make_fast_training_callback(precision, **step.fast)] if step.fast is not None else []
    run_steps(
        model,
        dataset,
        tokenizer,
        step_config,
        learning_rate=learning_rate,
        rows=warm + rows + extra,
        pad_to=pad_to,
        callbacks=[*fast, clock],
    )
    start = clock.ends[warmup - 1] if warmup else clock.begins[0]
    seconds = clock.ends[warmup + steps - 1] - start
    useful, executed = step_flops(cost, lengths, rows, pad_to=pad_to, micro=micro)
    result = {
        "step": step.name,
        "description": step.description.format(p=resolve_precision(config.precision)),
        "variant": variant,
        "precision": precision,
        "padding": f"max_length {config.max_length}" if pad_to else "dynamic",
        "order": "length-grouped" if step.grouped else "random",
        "fast_training": step.fast,
        "batch_size": config.train_batch_size,
        "micro_batch_size": micro_batches(config.train_batch_size, micro)[0],
        "steps": steps,
        "warmup_steps": warmup,
        "seconds": round(seconds, 3),
        "samples_per_s": round(sum(len(r) for r in rows) / seconds, 3),
        "seed": step_config.seed,
        "real_tokens": int(sum(lengths[i] for r in rows for i in r)),
        "computed_tokens": int(
            sum(
                len(p) * (pad_to or max(lengths[i] for i in p)) for p in forward_passes(rows, micro)
            )
        ),
        "gflop_per_step": round(useful / steps / 1e9, 3),
        "step_cost": asdict(cost),
    }
    if held_out is not None:
        result["loss_after"] = round(held_out_loss(model, held_out, tokenizer), 5)
        result["held_out_reviews"] = len(held_out)
    result = add_flop_rates(result, useful=useful, executed=executed)
    summary = None
    if profile:
        padded = pad_to or max(lengths[i] for i in extra[0])
        applied = fast[0].applied if fast else {}
        events = clock.profiler.key_averages()
        summary = {
            "step": f"{variant} {step.name}, batch of {len(extra[0])} reviews, "
            f"padded to {padded} tokens",
            "seconds": round(clock.ends[-1] - clock.begins[-1], 3),
            **summarize_profile(events),
            "parts": time_by_part(
                self_cpu_ms(events),
                cost,
                reviews=len(extra[0]),
                tokens=padded,
                precision=precision,
                attention="fp32" if applied.get("attention") == "fp32" else precision,
            ),
        }
    return result, summary


def measure_training_ladder(
    spec,
    config,
    dataset,
    tokenizer,
    *,
    variant: str,
    steps: int,
    warmup: int,
    profile: bool,
    loss_check: bool = True,
    log=print,
) -> tuple[dict, dict | None]:
    """One variant's training, step by step from naive to the default fast path, with the
    loss check against fp32 and (if asked) profiles of the `PROFILED` steps, by step name."""
    train, held_out = split_held_out(dataset, config.seed)
    ladder = TRAINING_STEPS[variant]
    entries, profiles = [], {}
    for step in ladder:
        log(f"  train {variant} {step.name}: {warmup} warm-up + {steps} timed steps")
        entry, found = measure_training(
            spec,
            config,
            train,
            tokenizer,
            variant=variant,
            step=step,
            steps=steps,
            warmup=warmup,
            held_out=held_out if loss_check else None,
            profile=profile and step.name in PROFILED,
        )
        entries.append(entry)
        if found:
            profiles[step.name] = found
    named = {e["step"]: e for e in entries}
    out = {
        "steps": entries,
        "naive": named["naive"],
        "before": named["before"],
        "fast": named["fast"],
        "speedup": round(named["fast"]["samples_per_s"] / named["naive"]["samples_per_s"], 3),
        "gain_over_before": round(
            named["fast"]["samples_per_s"] / named["before"]["samples_per_s"], 3
        ),
    }
    if loss_check:
        references = []
        for seed in (config.seed, config.seed + SPREAD_SEED_OFFSET):
            log(f"  train {variant} fp32 reference (seed {seed}) for the loss check")
            reference, _ = measure_training(
                spec,
                config,
                train,
                tokenizer,
                variant=variant,
                step=REFERENCE,
                steps=steps,
                warmup=warmup,
                held_out=held_out,
                train_seed=seed,
            )
            references.append(reference)
        out["loss_check"] = loss_check_of(
            entries,
            *references,
            start=start_loss(spec, config, variant, held_out, tokenizer),
        )
    return out, profiles


def start_loss(spec, config, variant: str, held_out, tokenizer) -> float:
    model, _ = build_variant(spec, config.replace(precision="fp32"), variant)
    return round(held_out_loss(model, held_out, tokenizer), 5)


def loss_check_of(
    entries: list[dict], reference: dict, other_seed: dict | None = None, *, start: float
) -> dict:
    """Each length-grouped step's held-out loss against the fp32 reference on the same batches
    (the naive step trains on other, random batches, so it is not compared). With `other_seed`,
    the same reference trained from another seed, the tolerance widens to their spread."""
    differences = {
        e["step"]: round(e["loss_after"] - reference["loss_after"], 5)
        for e in entries
        if e["order"] == "length-grouped"
    }
    spread = (
        round(abs(other_seed["loss_after"] - reference["loss_after"]), 5) if other_seed else None
    )
    tolerance = max(LOSS_TOLERANCE, spread or 0.0)
    return {
        "held_out_reviews": reference["held_out_reviews"],
        "loss_before_training": start,
        "reference_loss": reference["loss_after"],
        "reference_samples_per_s": reference["samples_per_s"],
        "reference_seed_spread": spread,
        "tolerance_floor": LOSS_TOLERANCE,
        "tolerance": tolerance,
        "differences": differences,
        "within": all(d <= tolerance for d in differences.values()),
    }
