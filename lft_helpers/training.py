"""Fitting a model with the Hugging Face `Trainer`, measuring time and memory."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .config import Config
from .runtime import PeakMemory, device_name, resolve_precision


def make_training_args(config: Config, output_dir: str | Path, learning_rate: float, **extra):
    """`TrainingArguments` with current names, plain-text progress and no external loggers."""
    import torch
    from transformers import TrainingArguments

    precision = resolve_precision(config.precision)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    kwargs = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.train_batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        num_train_epochs=config.epochs,
        learning_rate=learning_rate,
        weight_decay=config.weight_decay,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        eval_strategy="steps" if config.val_size else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        report_to="none",
        label_names=["labels"],
        dataloader_num_workers=0,
    )
    # Renamed across transformers releases: warmup ratio and length-grouped batches.
    if "warmup_ratio" in fields:
        kwargs["warmup_ratio"] = config.warmup_ratio
    else:
        kwargs["warmup_steps"] = config.warmup_ratio
    if "train_sampling_strategy" in fields:
        kwargs["train_sampling_strategy"] = "group_by_length"
    else:
        kwargs["group_by_length"] = True
    kwargs.update(extra)
    return TrainingArguments(**kwargs)


def make_progress_callback(log=print):
    """One short plain-text line per logging step: readable in a notebook, a file or CI."""
    from transformers import TrainerCallback

    class PlainProgress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            shown = {k: v for k, v in logs.items() if k in ("loss", "eval_loss", "learning_rate")}
            if shown:
                parts = ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
                where = f"step {state.global_step}/{state.max_steps} (epoch {state.epoch:.2f})"
                log(f"  {where}: {parts}")

    return PlainProgress()


def extract_history(log_history) -> dict:
    """Training and validation loss per step, for plotting and the results file."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    val = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    return {
        "train_steps": [s for s, _ in train],
        "train_loss": [round(float(v), 5) for _, v in train],
        "eval_steps": [s for s, _ in val],
        "eval_loss": [round(float(v), 5) for _, v in val],
    }


def state_bytes(model, optimizer) -> dict:
    """Bytes held in gradients and in optimizer state: what LoRA saves besides compute."""
    grad = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    opt = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            opt += sum(t.numel() * t.element_size() for t in state.values() if hasattr(t, "numel"))
    return {"grad_bytes": int(grad), "optimizer_bytes": int(opt)}


def train_model(
    model,
    train_dataset,
    val_dataset,
    tokenizer,
    config: Config,
    output_dir: str | Path,
    learning_rate: float | None = None,
    log=print,
    resume: bool = False,
) -> dict:
    """Fit `model` in place; return time, speed, memory and the loss history."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer
    from transformers.trainer_utils import get_last_checkpoint

    args = make_training_args(config, output_dir, learning_rate or config.learning_rate)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=val_dataset if config.val_size else None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[make_progress_callback(log)],
    )
    trainer.remove_callback(PrinterCallback)  # raw log dicts; PlainProgress says it shorter
    checkpoint = None
    if resume and Path(output_dir).is_dir():
        checkpoint = get_last_checkpoint(str(output_dir))
        if checkpoint:
            log(f"  resuming from {Path(checkpoint).name}")
    start = time.perf_counter()
    with PeakMemory() as memory:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.perf_counter() - start
    history = extract_history(trainer.state.log_history)
    val_time = sum(e.get("eval_runtime", 0.0) for e in trainer.state.log_history)
    samples = len(train_dataset) * config.epochs
    return {
        "train_runtime_s": round(runtime, 2),
        "val_runtime_s": round(val_time, 2),
        # Validation passes during training are excluded from the training speed.
        "train_samples_per_second": round(samples / max(runtime - val_time, 1e-9), 3),
        "train_loss": round(float(output.training_loss), 5),
        "peak_memory_mb": round(memory.peak_mb, 1),
        "memory_increase_mb": round(memory.peak_mb - memory.start_mb, 1),
        "memory_device": device_name(),
        "precision": resolve_precision(config.precision),
        **state_bytes(model, trainer.optimizer),
        "history": history,
        "is_main_process": bool(trainer.is_world_process_zero()),
    }
