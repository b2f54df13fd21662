"""The benchmark: naive against fast evaluation and training, the machine's peak, and memory.

`python -m lft_helpers bench` measures, in one process and on the same real reviews, what each
speed-up of the fast path buys and checks that it keeps the predictions. The `measure_*`
functions return data; `format_report` turns the report into text. Training memory is measured
in a fresh subprocess per variant (`python -m lft_helpers.bench IN OUT`), so one variant's heap
never inflates the other's peak.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import Config, make_config
from .data import load_imdb, stratified_indices, tokenize_dataset
from .errors import LFTError
from .evaluation import evaluate_model, predict_logits
from .hub import display_name
from .inference import inference_batch_size
from .modeling import OFFLINE_ALIAS, load_model, load_tokenizer, model_label, wrap_with_lora
from .runtime import (
    PeakMemory,
    autocast,
    configure_threads,
    device_name,
    keep_freed_memory,
    peak_rss_mb,
    resolve_precision,
    torch_dtype,
)

# DistilBERT-base's shape with random weights: speed does not depend on the weights, and the
# MiniLM package's tokenizer has the same 30,522-token uncased vocabulary.
RANDOM_DISTILBERT = "distilbert-base-random"
DEFAULT_MODELS = (OFFLINE_ALIAS, RANDOM_DISTILBERT)
SCHEMA = "lft-bench/1"
# The targets; reported as checks, never asserted by a test (timings vary by machine).
TARGETS = {
    "eval_speedup": 3.0,
    "eval_fast_fraction_of_peak": 0.5,
    "train_speedup": 1.8,
    "lora_state_fraction": 0.02,
    "accuracy_gap_points": 0.5,
}


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run measures; batch sizes of 0 take the preset's."""

    models: tuple[str, ...] = DEFAULT_MODELS
    data: str | None = None
    reviews: int = 1000
    max_length: int = 512
    train_steps: int = 8
    warmup_steps: int = 2
    eval_batch_size: int = 0
    train_batch_size: int = 0
    precision: str = "auto"
    adapter: str | None = None
    seed: int = 42
    memory: bool = True
    threads: int = 0
    keep_freed_memory: bool = True
    fast_batch_size: int = 0
    breakdown: bool = True
    compile: bool = False


def check_settings(settings: BenchSettings) -> None:
    if settings.fast_batch_size < 0:
        raise LFTError("Bench option --fast-batch-size must be 0 (automatic) or more.")
    for name in ("reviews", "max_length", "train_steps"):
        if getattr(settings, name) < 1:
            raise LFTError(f"Bench option --{name.replace('_', '-')} must be 1 or more.")
    if settings.warmup_steps < 0:
        raise LFTError("Bench option --warmup-steps must be 0 or more.")
    if settings.adapter and not (Path(settings.adapter) / "adapter_config.json").is_file():
        raise LFTError(
            f"Adapter `{settings.adapter}` has no adapter_config.json: pass the `adapter` folder "
            "a `run` saved (e.g. runs/latest/adapter)."
        )


def bench_config(settings: BenchSettings, spec: str) -> Config:
    """The project Config for one benchmarked model (preset batch sizes unless overridden)."""
    config = make_config(
        model=OFFLINE_ALIAS if spec == RANDOM_DISTILBERT else spec,
        data=settings.data,
        max_length=settings.max_length,
        precision=settings.precision,
        seed=settings.seed,
    )
    return config.replace(
        eval_batch_size=settings.eval_batch_size or config.eval_batch_size,
        train_batch_size=settings.train_batch_size or config.train_batch_size,
    )


def build_base_model(spec: str, config: Config):
    """A 2-class sequence classifier: loaded from `spec`, or DistilBERT-base with random weights."""
    if spec != RANDOM_DISTILBERT:
        return load_model(config.replace(model=spec))
    import transformers
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    transformers.set_seed(config.seed)
    return DistilBertForSequenceClassification(DistilBertConfig(num_labels=2))


def build_lora_model(spec: str, config: Config, adapter: str | None = None):
    """The LoRA model evaluated: a trained adapter when given, else a fresh (untrained) one."""
    base = build_base_model(spec, config)
    if not adapter:
        return wrap_with_lora(base, config)
    import warnings

    from peft import PeftModel

    try:
        with warnings.catch_warnings():  # PEFT still calls a getter transformers 5 renamed
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            return PeftModel.from_pretrained(base, adapter)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise LFTError(
            f"Adapter `{adapter}` does not fit model `{model_label(spec)}` ({err}); pass the "
            "adapter trained on that model, or drop --adapter."
        ) from None


def spec_label(spec: str) -> str:
    if spec == RANDOM_DISTILBERT:
        return "distilbert-base-uncased architecture"
    return model_label(spec)


def select_reviews(config: Config, reviews: int, tokenizer):
    """`reviews` test-split reviews, both classes in equal share, tokenized and truncated."""
    test = load_imdb(config)["test"]
    rows = stratified_indices(test["label"], reviews, config.seed)
    return tokenize_dataset(test.select(rows), tokenizer, config.max_length)


# --- the machine ------------------------------------------------------------------------------


def measure_matmul_peak(precision: str = "fp32", size: int | None = None, repeats: int = 5) -> dict:
    """Best-of-`repeats` GFLOP/s of one square matmul: the yardstick for the model's speed."""
    import torch

    device = device_name()
    size = size or (8192 if device == "cuda" else 2048)
    dtype = torch_dtype(precision)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call only warms up
        start = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return {"precision": precision, "size": size, "gflops": round(2 * size**3 / best / 1e9, 2)}


def matmul_shape(model) -> dict:
    """Weights used per token (linear layers inside numbered blocks), per review, and shape."""
    import torch

    per_token = per_review = 0
    blocks = set()
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        parts = name.split(".")
        numbered = [i for i, p in enumerate(parts) if p.isdigit()]
        if numbered:
            per_token += module.weight.numel()
            blocks.add(".".join(parts[: numbered[0] + 1]))
        else:  # pooler and classification head: applied to the first token only
            per_review += module.weight.numel()
    return {
        "per_token": per_token,
        "per_review": per_review,
        "layers": len(blocks),
        "hidden": int(model.config.hidden_size),
    }


def review_flops(shape: dict, length) -> np.ndarray:
    """Forward FLOPs per review: 2 per weight per token, plus QK^T and AV (4 L^2 d per layer)."""
    length = np.asarray(length, dtype=np.float64)
    attention = 4.0 * shape["layers"] * shape["hidden"] * length**2
    return 2.0 * shape["per_token"] * length + attention + 2.0 * shape["per_review"]


# --- evaluation -------------------------------------------------------------------------------


def measure_eval(model, dataset, tokenizer, batch_size: int, precision: str, pad_to=None) -> dict:
    """Samples/s and predictions; `pad_to` set = the naive path (padded, unsorted)."""
    options = {"sort_by_length": False, "pad_to": pad_to} if pad_to else {}
    warm = dataset.select(range(min(batch_size, len(dataset))))
    predict_logits(model, warm, tokenizer, batch_size, precision, **options)  # untimed warm-up
    scored = evaluate_model(model, dataset, tokenizer, batch_size, precision, **options)
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


def add_flop_rates(result: dict, useful: float, executed: float) -> dict:
    """GFLOP/s on the real tokens, and on all tokens computed (padding included)."""
    return {
        **result,
        "gflops_useful": round(useful / result["seconds"] / 1e9, 2),
        "gflops_executed": round(executed / result["seconds"] / 1e9, 2),
    }


def compare_eval(naive: dict, fast: dict, accuracy_shown: bool) -> dict:
    """Speed-up and how far the fast path's predictions moved from the naive ones."""
    same = naive["logits"].argmax(-1) == fast["logits"].argmax(-1)
    gap = abs(naive["accuracy"] - fast["accuracy"]) * 100
    return {
        "naive": strip_step(naive, accuracy_shown),
        "fast": strip_step(fast, accuracy_shown),
        "speedup": round(fast["samples_per_s"] / naive["samples_per_s"], 3),
        "prediction_agreement": round(float(same.mean()), 4),
        "max_abs_logit_diff": round(float(np.abs(naive["logits"] - fast["logits"]).max()), 5),
        "accuracy_gap_points": round(gap, 3) if accuracy_shown else None,
    }


def eval_step(label: str, result: dict, shape: dict, lengths, max_length: int | None) -> dict:
    """One rung of the evaluation ladder, with its GFLOP/s on the real and the computed tokens."""
    useful = float(review_flops(shape, lengths).sum())
    if max_length:
        executed = float(review_flops(shape, np.full(len(lengths), max_length)).sum())
    else:
        executed = sum(padded_flops(shape, lengths, result["batch_size"]))
    return {"step": label, **add_flop_rates(result, useful, executed)}


def measure_eval_steps(spec, config, dataset, tokenizer, settings, adapter=None, log=print):
    """Evaluation from the naive configuration to the fast path, one speed-up at a time.

    Naive: unmerged adapter, every review padded to `max_length`, fp32, unsorted. Then, each on
    top of the last: sorted batches with dynamic padding; autocast; the adapter merged and the
    weights cast; row-wise attention at the inference batch size; compiled with frozen weights.
    Without `settings.breakdown` only the first and the last are measured.
    """
    from .inference import cast_weights, compile_for_inference, prepare_inference_model

    model = build_lora_model(spec, config, adapter)
    lengths = np.array([len(ids) for ids in dataset["input_ids"]])
    precision, batch = resolve_precision(config.precision), config.eval_batch_size
    fast_batch = settings.fast_batch_size or inference_batch_size(device_name())
    sample = dataset.select(range(min(fast_batch, len(dataset))))
    raw = []

    def measure(label, subject, batch_size, step_precision, pad_to=None):
        log(f"  eval {label}")
        result = measure_eval(subject, dataset, tokenizer, batch_size, step_precision, pad_to)
        raw.append((label, result, pad_to))

    naive = f"naive: padded to {config.max_length}, fp32, unsorted, unmerged"
    measure(naive, model, batch, "fp32", config.max_length)
    if settings.breakdown:
        measure("sorted batches, dynamic padding", model, batch, "fp32")
        measure(f"+ {precision} autocast", model, batch, precision)
    merged = cast_weights(model.merge_and_unload(), precision)
    if settings.breakdown:
        measure(f"+ adapter merged, {precision} weights", merged, batch, precision)
    ready, info = prepare_inference_model(merged, sample, tokenizer, precision, False, fast_batch)
    compiled = ready
    if settings.compile:  # the eager model stays, and is measured too where compiling failed
        compiled, outcome = compile_for_inference(ready, sample, tokenizer, fast_batch)
        info.update(outcome)
    if settings.breakdown or not info["compiled"]:
        label = f"+ {info['attention']} attention, batch {fast_batch}"
        measure(label, ready, fast_batch, precision)
    if info["compiled"]:
        measure("+ compiled, frozen weights", compiled, fast_batch, precision)
    # FLOPs of the function every step computes: the merged model on the real tokens.
    shape = matmul_shape(merged)
    steps = [eval_step(label, result, shape, lengths, pad_to) for label, result, pad_to in raw]
    return {
        **compare_eval(steps[0], steps[-1], spec != RANDOM_DISTILBERT),
        "steps": [strip_step(step, spec != RANDOM_DISTILBERT) for step in steps],
        "inference": info,
        "accuracy_meaningful": bool(adapter) and spec != RANDOM_DISTILBERT,
        "accuracy_note": accuracy_note(spec, adapter),
        "flops_per_review_gflop": round(float(review_flops(shape, lengths).mean()) / 1e9, 4),
        "matmul_shape": shape,
    }


def strip_step(step: dict, accuracy_shown: bool) -> dict:
    out = {k: v for k, v in step.items() if k != "logits"}
    if not accuracy_shown:
        out["accuracy"] = None
    return out


def padded_flops(shape: dict, lengths, batch_size: int):
    """FLOPs the sorted, dynamically padded batches compute (each padded to its longest)."""
    order = np.sort(lengths)
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        yield float(review_flops(shape, np.full(len(chunk), chunk.max())).sum())


def accuracy_note(spec: str, adapter: str | None) -> str:
    if spec == RANDOM_DISTILBERT:
        return "random weights: accuracy not reported; agreement checks the numerics only"
    if adapter:
        return "trained adapter: accuracy is meaningful"
    return (
        "untrained adapter and head: accuracy is near chance and says nothing about quality; "
        "naive/fast agreement still checks the numerics (pass --adapter for a real accuracy)"
    )


# --- training ---------------------------------------------------------------------------------


def training_batches(lengths, batch_size: int, steps: int, grouped: bool, seed: int) -> list:
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


def collate(input_ids, labels, rows, pad_id: int, pad_to: int | None = None) -> dict:
    """Tensors for one batch: padded to its longest review, or to `pad_to`."""
    import torch

    width = pad_to or max(len(input_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        ids[r, : len(input_ids[i])] = torch.tensor(input_ids[i])
        mask[r, : len(input_ids[i])] = 1
    target = torch.tensor([int(labels[i]) for i in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": target}


def train_steps(model, optimizer, batches, precision: str) -> float:
    """Seconds for one optimizer step per batch (forward, backward, update)."""
    import torch

    device = device_name()
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    model.train().to(device)
    start = time.perf_counter()
    for batch in batches:
        with autocast(precision):
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def make_optimizer(model, learning_rate: float):
    """AdamW on the trainable parameters, as the Trainer uses by default."""
    import torch

    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)


def measure_training(model, dataset, config: Config, steps: int, warmup: int, fast: bool, pad_id):
    """Training samples/s over `steps` after `warmup` untimed steps; naive or fast path."""
    input_ids, labels = dataset["input_ids"], dataset["labels"]
    lengths = [len(ids) for ids in input_ids]
    rows = training_batches(lengths, config.train_batch_size, steps, fast, config.seed)
    pad_to = None if fast else config.max_length
    batches = [collate(input_ids, labels, r, pad_id, pad_to) for r in rows]
    precision = resolve_precision(config.precision) if fast else "fp32"
    optimizer = make_optimizer(model, config.learning_rate)
    train_steps(model, optimizer, [batches[i % len(batches)] for i in range(warmup)], precision)
    seconds = train_steps(model, optimizer, batches, precision)
    samples = sum(len(r) for r in rows)
    return {
        "precision": precision,
        "padding": "dynamic" if fast else f"max_length {config.max_length}",
        "order": "length-grouped" if fast else "random",
        "batch_size": config.train_batch_size,
        "steps": steps,
        "warmup_steps": warmup,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 3),
        "real_tokens": int(sum(lengths[i] for r in rows for i in r)),
        "computed_tokens": int(sum(b["input_ids"].numel() for b in batches)),
    }


def measure_training_pair(spec, config, dataset, pad_id, steps, warmup, log=print) -> dict:
    """LoRA training, naive (padded, fp32, random) against fast (dynamic, grouped, autocast)."""
    out = {}
    for name, fast in (("naive", False), ("fast", True)):
        log(f"  train {name}: {warmup} warm-up + {steps} timed steps")
        model = build_lora_model(spec, config)
        out[name] = measure_training(model, dataset, config, steps, warmup, fast, pad_id)
        del model
    out["speedup"] = round(out["fast"]["samples_per_s"] / out["naive"]["samples_per_s"], 3)
    return out


# --- training memory, one fresh process per variant -------------------------------------------


def probe_request(spec, variant, config, dataset, pad_id, rows) -> dict:
    """Everything the memory probe process needs, as plain JSON."""
    ids, labels = dataset["input_ids"], dataset["labels"]
    return {
        "spec": spec,
        "variant": variant,
        "config": config.to_dict(),
        "pad_id": int(pad_id),
        "batches": [
            {"input_ids": [ids[i] for i in r], "labels": [labels[i] for i in r]} for r in rows
        ],
    }


def run_memory_probe(request: dict) -> dict:
    """Inside the probe process: build the variant, train on the batches, report memory."""
    from .training import state_bytes

    config = Config(**request["config"])
    configure_threads(request.get("threads") or None)
    model = build_base_model(request["spec"], config)
    if request["variant"] == "lora":
        model = wrap_with_lora(model, config)
    else:
        for param in model.parameters():
            param.requires_grad = True
    batches = [
        collate(b["input_ids"], b["labels"], range(len(b["labels"])), request["pad_id"])
        for b in request["batches"]
    ]
    optimizer = make_optimizer(model, config.learning_rate)
    with PeakMemory() as memory:
        train_steps(model, optimizer, batches, resolve_precision(config.precision))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "start_mb": round(memory.start_mb, 1),
        "peak_mb": round(memory.peak_mb if memory.cuda else peak_rss_mb(), 1),
        "trainable_params": int(trainable),
        "memory_device": device_name(),
        **state_bytes(model, optimizer),
    }


def measure_memory_in_subprocess(request: dict, timeout: float = 3600) -> dict:
    """Run `run_memory_probe` in a fresh interpreter: its peak holds one variant only."""
    with tempfile.TemporaryDirectory(prefix="lft-bench-") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(request), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "lft_helpers.bench", str(src), str(dst)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if done.returncode != 0 or not dst.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LFTError(f"The {request['variant']} memory probe failed: {tail[0]}")
        return json.loads(dst.read_text(encoding="utf-8"))


def measure_memory_pair(spec, config, dataset, pad_id, threads=0, log=print) -> dict:
    """Peak memory and gradient/optimizer bytes of LoRA against full fine-tuning.

    Both train on the same two longest length-grouped batches: the peak comes from the longest.
    """
    lengths = [len(ids) for ids in dataset["input_ids"]]
    rows = training_batches(lengths, config.train_batch_size, 8, True, config.seed)[-2:]
    out = {}
    for variant in ("lora", "full"):
        log(f"  memory {variant}: fresh process, 2 steps")
        request = probe_request(spec, variant, config, dataset, pad_id, rows)
        out[variant] = measure_memory_in_subprocess({**request, "threads": threads})
    lora, full = out["lora"], out["full"]
    state = lora["grad_bytes"] + lora["optimizer_bytes"]
    out["state_fraction"] = round(state / (full["grad_bytes"] + full["optimizer_bytes"]), 5)
    out["peak_ratio"] = round(lora["peak_mb"] / full["peak_mb"], 4)
    return out


# --- one model, the whole run -----------------------------------------------------------------


def describe_tokens(dataset, max_length: int) -> dict:
    lengths = np.array([len(ids) for ids in dataset["input_ids"]])
    return {
        "mean": round(float(lengths.mean()), 1),
        "median": float(np.median(lengths)),
        "max": int(lengths.max()),
        "truncated_share": round(float((lengths >= max_length).mean()), 4),
        "total": int(lengths.sum()),
    }


def bench_model(spec: str, settings: BenchSettings, log=print) -> dict:
    """Every measurement for one model on the same reviews."""
    config = bench_config(settings, spec)
    log(f"Model {spec_label(spec)}")
    tokenizer = load_tokenizer(config)
    dataset = select_reviews(config, settings.reviews, tokenizer)
    adapter = settings.adapter if spec != RANDOM_DISTILBERT else None
    report = {
        "model": spec_label(spec),
        "weights": "random" if spec == RANDOM_DISTILBERT else "loaded",
        "adapter": "trained (--adapter)" if adapter else "untrained LoRA",
        "reviews": len(dataset),
        "tokens": describe_tokens(dataset, config.max_length),
    }
    report["eval"] = measure_eval_steps(spec, config, dataset, tokenizer, settings, adapter, log)
    pad_id = tokenizer.pad_token_id
    steps, warmup = settings.train_steps, settings.warmup_steps
    report["train"] = measure_training_pair(spec, config, dataset, pad_id, steps, warmup, log)
    if settings.memory:
        report["memory"] = measure_memory_pair(spec, config, dataset, pad_id, settings.threads, log)
    return report


def check_targets(report: dict) -> dict:
    """Each target with its measured value and whether it is met (None: not measured)."""
    ev, tr, mem = report["eval"], report["train"], report.get("memory")
    measured = {
        "eval_speedup": (ev["speedup"], ">="),
        "eval_fast_fraction_of_peak": (ev["fast"]["fraction_of_peak"], ">="),
        "train_speedup": (tr["speedup"], ">="),
        "lora_state_fraction": (mem["state_fraction"] if mem else None, "<="),
        "accuracy_gap_points": (ev["accuracy_gap_points"], "<="),
    }
    checks = {}
    for name, (value, op) in measured.items():
        target = TARGETS[name]
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        checks[name] = {"value": value, "target": f"{op} {target}", "met": met}
    if mem:
        below = mem["lora"]["peak_mb"] < mem["full"]["peak_mb"]
        checks["lora_peak_below_full"] = {"value": mem["peak_ratio"], "target": "< 1", "met": below}
    return checks


def measure_peaks(precisions) -> dict:
    return {p: measure_matmul_peak(p) for p in sorted(set(precisions))}


def best_peaks(first: dict, second: dict) -> dict:
    """Per precision, the faster of two readings, keeping both for the record."""
    out = {}
    for p in first:
        best = max(first[p], second[p], key=lambda r: r["gflops"])
        out[p] = {**best, "readings": [first[p]["gflops"], second[p]["gflops"]]}
    return out


def add_peak_fractions(report: dict, peaks: dict) -> None:
    """Each evaluation's GFLOP/s as a fraction of the matmul peak at its own precision."""
    ev = report["eval"]
    for entry in (ev["naive"], ev["fast"], *ev["steps"]):
        peak = peaks[entry["precision"]]["gflops"]
        entry["fraction_of_peak"] = round(entry["gflops_useful"] / peak, 4)
        entry["executed_fraction_of_peak"] = round(entry["gflops_executed"] / peak, 4)


def run_bench(settings: BenchSettings, log=print) -> dict:
    """The whole benchmark as one JSON-ready report."""
    from .reporting import collect_environment

    check_settings(settings)
    threads = configure_threads(settings.threads or None)
    kept = settings.keep_freed_memory and device_name() == "cpu" and keep_freed_memory()
    fast_precision = resolve_precision(settings.precision)
    log(f"Matmul peak ({device_name()}, {threads} threads): fp32 and {fast_precision}")
    peaks = measure_peaks(["fp32", fast_precision])
    load_before = os.getloadavg()
    models = {spec_label(s): bench_model(s, settings, log) for s in settings.models}
    # Measured again at the end: on a busy machine the better reading is nearer the true peak,
    # and a fraction of an understated peak would flatter the model.
    peaks = best_peaks(peaks, measure_peaks(peaks))
    for report in models.values():
        add_peak_fractions(report, peaks)
        report["checks"] = check_targets(report)
    config = bench_config(settings, OFFLINE_ALIAS)
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            **asdict(settings),
            "models": [spec_label(s) for s in settings.models],
            "data": display_name(config.data),  # labels, never this machine's paths
            "adapter": display_name(settings.adapter) if settings.adapter else None,
        },
        "fast_precision": fast_precision,
        "freed_memory_kept": kept,
        "environment": collect_environment(),
        # Other work on a shared machine slows the runs; the load average says how much.
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "matmul_peak": peaks,
        "models": models,
    }


# --- text -------------------------------------------------------------------------------------


def _fmt(value, spec: str = "{:.2f}") -> str:
    return "-" if value is None else spec.format(value)


def format_model(name: str, m: dict) -> list[str]:
    ev, tr = m["eval"], m["train"]
    lines = [
        f"{name} ({m['weights']} weights, {m['adapter']} adapter; {m['reviews']} reviews, "
        f"mean {m['tokens']['mean']:.0f} tokens)",
        f"  {'':34}{'naive':>12}{'fast':>12}{'fast/naive':>12}",
        _row("eval samples/s", ev["naive"]["samples_per_s"], ev["fast"]["samples_per_s"], "{:.1f}"),
        _row(
            "eval % of matmul peak (real tok.)",
            100 * ev["naive"]["fraction_of_peak"],
            100 * ev["fast"]["fraction_of_peak"],
            "{:.1f}",
        ),
        _row("accuracy", ev["naive"]["accuracy"], ev["fast"]["accuracy"], "{:.4f}", None),
        _row("train samples/s", tr["naive"]["samples_per_s"], tr["fast"]["samples_per_s"]),
        f"  prediction agreement {ev['prediction_agreement']:.4f}; {ev['accuracy_note']}",
        *format_steps(ev),
    ]
    if "memory" in m:
        lora, full = m["memory"]["lora"], m["memory"]["full"]
        lines += [
            f"  {'':34}{'LoRA':>12}{'full':>12}{'LoRA/full':>12}",
            _row("peak memory (MB)", lora["peak_mb"], full["peak_mb"], "{:.0f}", "a/b"),
            _row("grads + optimizer (MB)", _state_mb(lora), _state_mb(full), "{:.2f}", "a/b"),
        ]
    failed = [k for k, c in m["checks"].items() if c["met"] is False]
    lines.append(f"  targets missed: {', '.join(failed) if failed else 'none'}")
    return lines


def format_steps(ev: dict) -> list[str]:
    """The evaluation ladder: samples/s, gain over the step before, and share of the peak."""
    lines = [f"  {'eval, step by step':58}{'samples/s':>10}{'gain':>8}{'% peak':>8}"]
    previous = None
    for step in ev["steps"]:
        gain = step["samples_per_s"] / previous if previous else None
        lines.append(
            f"    {step['step']:56}{step['samples_per_s']:>10.1f}{_fmt(gain, '{:.2f}x'):>8}"
            f"{_fmt(100 * step.get('fraction_of_peak', 0), '{:.1f}'):>8}"
        )
        previous = step["samples_per_s"]
    info = ev["inference"]
    if info.get("compiled"):
        lines.append(f"    (one-off compile: {info['compile_s']:.1f} s, not in the samples/s)")
    elif "compile_error" in info:
        lines.append(f"    (not compiled: {info['compile_error']})")
    return lines


def _state_mb(entry: dict) -> float:
    return (entry["grad_bytes"] + entry["optimizer_bytes"]) / 2**20


def _row(label: str, a, b, spec: str = "{:.2f}", ratio: str | None = "b/a") -> str:
    r = None
    if ratio and a and b:
        r = b / a if ratio == "b/a" else a / b
    return f"  {label:34}{_fmt(a, spec):>12}{_fmt(b, spec):>12}{_fmt(r, '{:.3g}x'):>12}"


def format_report(report: dict) -> str:
    """The benchmark as a plain-text table."""
    peaks = ", ".join(f"{p} {v['gflops']:.0f} GFLOP/s" for p, v in report["matmul_peak"].items())
    env = report["environment"]
    lines = [
        f"Benchmark on {env['gpu'] or env['cpu']} ({env['torch_threads']} threads); "
        f"fast path precision {report['fast_precision']}",
        f"Matmul peak: {peaks}; load average before {report['load_average']['before'][0]:.2f}",
        "",
    ]
    for name, m in report["models"].items():
        lines += [*format_model(name, m), ""]
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------------


def add_bench_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help=f"model to benchmark, repeatable: `{OFFLINE_ALIAS}`, a model directory, or "
        f"`{RANDOM_DISTILBERT}` (default: both of those named)",
    )
    parser.add_argument("--data", help="IMDb directory or Hub id (env LFT_DATA)")
    parser.add_argument("--reviews", type=int, default=1000, help="test reviews (default 1000)")
    parser.add_argument("--max-length", type=int, default=512, help="truncation (default 512)")
    parser.add_argument("--train-steps", type=int, default=8, help="timed train steps (8)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (2)")
    parser.add_argument("--eval-batch-size", type=int, default=0, help="default: the preset's")
    parser.add_argument("--train-batch-size", type=int, default=0, help="default: the preset's")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="fast path precision (auto: bf16 where supported; fp32 turns autocast off)",
    )
    parser.add_argument("--adapter", help="trained adapter folder for the pretrained model")
    parser.add_argument("--seed", type=int, default=42, help="review selection and init seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per CPU)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="let glibc return freed memory to the OS (slower CPU training; default: keep it)",
    )
    parser.add_argument(
        "--fast-batch-size",
        type=int,
        default=0,
        help="fast path's inference batch size (default: 16 on a CPU, 64 on a GPU)",
    )
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="measure only the naive and the fast evaluation, not each step between",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add a last step: the fast model compiled with frozen weights (torch.compile)",
    )
    parser.add_argument("--output", help="JSON path (default results/bench-<device>.json)")


def settings_from_args(args) -> BenchSettings:
    return BenchSettings(
        models=tuple(args.models or DEFAULT_MODELS),
        data=args.data,
        reviews=args.reviews,
        max_length=args.max_length,
        train_steps=args.train_steps,
        warmup_steps=args.warmup_steps,
        eval_batch_size=args.eval_batch_size,
        train_batch_size=args.train_batch_size,
        precision=args.precision,
        adapter=args.adapter,
        seed=args.seed,
        memory=not args.no_memory,
        threads=args.threads,
        keep_freed_memory=not args.default_allocator,
        fast_batch_size=args.fast_batch_size,
        breakdown=not args.no_breakdown,
        compile=args.compile,
    )


def cmd_bench(args) -> int:
    from .reporting import write_json_atomic

    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {message}", flush=True)

    report = run_bench(settings_from_args(args), log=log)
    print()
    print(format_report(report))
    path = write_json_atomic(report, args.output or f"results/bench-{device_name()}.json")
    print(f"Benchmark written to {path}")
    return 0


def main_probe(argv) -> int:
    """Entry of the memory probe process: read the request, write the measurement."""
    src, dst = argv
    result = run_memory_probe(json.loads(Path(src).read_text(encoding="utf-8")))
    Path(dst).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main_probe(sys.argv[1:]))
