"""Evaluation speed, from the naive configuration to the fast path, one speed-up at a time.

Every step is timed by the library's own `evaluation.evaluate_model` (which warms up first), so
the figures are those a `run` gets.
"""

from __future__ import annotations

import numpy as np

from ..evaluation import evaluate_model
from ..inference import (
    cast_weights,
    compile_for_inference,
    inference_batch_size,
    prepare_inference_model,
)
from ..runtime import device_name, resolve_precision
from .flops import add_flop_rates, matmul_shape, padded_flops, review_flops
from .subjects import RANDOM_DISTILBERT, accuracy_note, build_lora_model


def measure_eval(model, dataset, tokenizer, *, batch_size: int, precision: str, pad_to=None):
    """Samples/s and predictions; `pad_to` set = the naive path (padded, unsorted)."""
    options = {"sort_by_length": False, "pad_to": pad_to} if pad_to else {}
    scored = evaluate_model(
        model, dataset, tokenizer, batch_size=batch_size, precision=precision, **options
    )
    metrics = scored["metrics"]
    return {
        "precision": resolve_precision(precision),
        "padding": f"max_length {pad_to}" if pad_to else "dynamic",
        "order": "as given" if pad_to else "sorted by length",
        "batch_size": batch_size,
        "seconds": metrics["eval_runtime_s"],
        "samples_per_s": metrics["eval_samples_per_second"],
        "accuracy": round(metrics["accuracy"], 4),
        "logits": scored["logits"],
    }


def strip_step(step: dict, *, accuracy_shown: bool) -> dict:
    out = {k: v for k, v in step.items() if k != "logits"}
    if not accuracy_shown:
        out["accuracy"] = None
    return out


def compare_eval(naive: dict, fast: dict, *, accuracy_shown: bool) -> dict:
    """Speed-up and how far the fast path's predictions moved from the naive ones."""
    same = naive["logits"].argmax(-1) == fast["logits"].argmax(-1)
    gap = abs(naive["accuracy"] - fast["accuracy"]) * 100
    return {
        "naive": strip_step(naive, accuracy_shown=accuracy_shown),
        "fast": strip_step(fast, accuracy_shown=accuracy_shown),
        "speedup": round(fast["samples_per_s"] / naive["samples_per_s"], 3),
        "prediction_agreement": round(float(same.mean()), 4),
        "max_abs_logit_diff": round(float(np.abs(naive["logits"] - fast["logits"]).max()), 5),
        "accuracy_gap_points": round(gap, 3) if accuracy_shown else None,
    }


def eval_step(label: str, result: dict, shape: dict, lengths, pad_to: int | None) -> dict:
    """One rung of the evaluation ladder, with its GFLOP/s on the real and the computed tokens."""
    useful = float(review_flops(shape, lengths).sum())
    if pad_to:
        executed = float(review_flops(shape, np.full(len(lengths), pad_to)).sum())
    else:
        executed = sum(padded_flops(shape, lengths, result["batch_size"]))
    return {"step": label, **add_flop_rates(result, useful=useful, executed=executed)}


def measure_eval_steps(spec, config, dataset, tokenizer, settings, adapter=None, log=print):
    """Evaluation from the naive configuration to the fast path, one speed-up at a time.

    Naive: unmerged adapter, every review padded to `max_length`, fp32, unsorted. Then, each on
    top of the last: sorted batches with dynamic padding; autocast; the adapter merged and the
    weights cast; the inference batch size, with row-wise attention where it pays; compiled
    with frozen weights.
    Without `settings.breakdown` only the first and the last are measured.
    """
    model = build_lora_model(spec, config, adapter)
    lengths = np.array([len(ids) for ids in dataset["input_ids"]])
    precision, batch = resolve_precision(config.precision), config.eval_batch_size
    fast_batch = settings.fast_batch_size or inference_batch_size(device_name())
    sample = dataset.select(range(min(fast_batch, len(dataset))))
    raw = []

    def measure(label, subject, batch_size, step_precision, pad_to=None):
        log(f"  eval {label}")
        result = measure_eval(
            subject,
            dataset,
            tokenizer,
            batch_size=batch_size,
            precision=step_precision,
            pad_to=pad_to,
        )
        raw.append((label, result, pad_to))

    naive = f"naive: padded to {config.max_length}, fp32, unsorted, unmerged"
    measure(naive, model, batch, "fp32", config.max_length)
    if settings.breakdown:
        measure("sorted batches, dynamic padding", model, batch, "fp32")
        measure(f"+ {precision} autocast", model, batch, precision)
    merged = cast_weights(model.merge_and_unload(), precision)
    if settings.breakdown:
        measure(f"+ adapter merged, {precision} weights", merged, batch, precision)
    ready, info = prepare_inference_model(
        merged, sample, tokenizer, precision, compile=False, batch_size=fast_batch
    )
    compiled = ready
    if settings.compile:  # the eager model stays, and is measured too where compiling failed
        compiled, outcome = compile_for_inference(ready, sample, tokenizer, fast_batch)
        info.update(outcome)
    if settings.breakdown or not info["compiled"]:
        measure(
            f"+ {info['attention']} attention, batch {fast_batch}", ready, fast_batch, precision
        )
    if info["compiled"]:
        measure("+ compiled, frozen weights", compiled, fast_batch, precision)
    # FLOPs of the function every step computes: the merged model on the real tokens.
    shape = matmul_shape(merged)
    shown = spec != RANDOM_DISTILBERT
    steps = [eval_step(label, result, shape, lengths, pad_to) for label, result, pad_to in raw]
    return {
        **compare_eval(steps[0], steps[-1], accuracy_shown=shown),
        "steps": [strip_step(step, accuracy_shown=shown) for step in steps],
        "inference": info,
        "accuracy_meaningful": bool(adapter) and shown,
        "accuracy_note": accuracy_note(spec, adapter),
        "flops_per_review_gflop": round(float(review_flops(shape, lengths).mean()) / 1e9, 4),
        "matmul_shape": shape,
    }
