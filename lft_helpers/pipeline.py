"""The whole experiment, step by step: what the notebook and the command line both call."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .data import load_imdb, select_subsets, tokenize_dataset
from .errors import LFTError
from .evaluation import accuracy_interval, confusion, evaluate_model
from .hub import display_name
from .modeling import check_max_length, count_parameters, load_tokenizer, model_label
from .reporting import build_results, write_json_atomic
from .runtime import is_main_process, world_size
from .training import train_model
from .validation import check_model, check_resume_config, check_sizes
from .variants import SAVE_DIRS, prepare_variant, save_variant


@dataclass
class Prepared:
    """Tokenizer, chosen subsets and their tokenized forms."""

    tokenizer: object
    subsets: object
    train: object
    val: object
    eval: object


def tokenize_subsets(subsets, tokenizer, config: Config) -> Prepared:
    """Tokenize the train, validation and eval subsets (truncated, padded later per batch)."""
    tok = {
        split: tokenize_dataset(getattr(subsets, split), tokenizer, config.max_length)
        for split in ("train", "val", "eval")
    }
    return Prepared(tokenizer, subsets, tok["train"], tok["val"], tok["eval"])


def prepare_data(config: Config, log=None) -> Prepared:
    """Load and check the data, subset (stratified, seeded, disjoint) and tokenize."""
    data = load_imdb(config, log)
    check_sizes(data, config)
    tokenizer = load_tokenizer(config)
    check_max_length(config, tokenizer)
    return tokenize_subsets(select_subsets(data, config), tokenizer, config)


def save_run(config: Config, runs: dict, prepared: Prepared) -> dict:
    """Build the results document from the runs so far and write it atomically."""
    results = build_results(config, run_labels(config), runs, prepared.subsets.eval_indices)
    if is_main_process():  # under torchrun every rank scores; rank 0 alone writes
        write_json_atomic(results, Path(config.output_dir) / "results.json")
    return results


def score_model(model, prepared: Prepared, config: Config) -> dict:
    """Everything the results file keeps about one model on the eval subset."""
    scored = evaluate_model(
        model, prepared.eval, prepared.tokenizer, config.eval_batch_size, config.precision
    )
    metrics, logits = scored["metrics"], scored["logits"]
    labels = np.asarray(prepared.eval["labels"])
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return {
        **{k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()},
        "accuracy_ci": [round(x, 4) for x in accuracy_interval(metrics["accuracy"], len(labels))],
        **count_parameters(model),
        "confusion_matrix": confusion(labels, logits),
        "positive_prob": [round(float(p), 5) for p in shifted[:, 1] / shifted.sum(axis=1)],
    }


def run_labels(config: Config) -> dict:
    """Which model and data produced the numbers, without machine paths."""
    return {"model_label": model_label(config.model), "data_label": display_name(config.data)}


def check_output_dir(output_dir: str | Path, overwrite: bool, resume: bool = False) -> Path:
    """Refuse to clobber another run's results; fail early if the folder is not writable."""
    path = Path(output_dir)
    checkpoints = any(path.glob("checkpoints/*/checkpoint-*"))
    if ((path / "results.json").exists() or checkpoints) and not (overwrite or resume):
        what = "results.json and checkpoints" if checkpoints else "results.json"
        raise LFTError(
            f"Output directory `{output_dir}` already holds {what} from another run. Pass "
            f"{'--resume to continue it, ' if checkpoints else ''}--overwrite to replace it, "
            "or choose another --output-dir."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LFTError(
            f"Output directory `{output_dir}` cannot be created: {err.strerror}."
        ) from None
    if not os.access(path, os.W_OK):
        raise LFTError(f"Output directory `{output_dir}` is not writable; choose another.")
    return path


def start_over(output_dir: str | Path, log=print) -> None:
    """--overwrite: say so, and drop the old checkpoints so a later --resume cannot pick them."""
    path = Path(output_dir)
    if (path / "results.json").exists():
        log(f"Overwriting the results in {path} (--overwrite)")
    shutil.rmtree(path / "checkpoints", ignore_errors=True)


def train_variant(
    name: str, model, lr: float, prepared: Prepared, config: Config, log=print, resume=False
) -> dict:
    """Train a prepared variant in place; checkpoints go to `<output_dir>/checkpoints/<name>`."""
    fit = train_model(
        model,
        prepared.train,
        prepared.val,
        prepared.tokenizer,
        config,
        Path(config.output_dir) / "checkpoints" / name,
        learning_rate=lr,
        log=log,
        resume=resume,
    )
    fit.pop("is_main_process")
    return {"learning_rate": lr, "world_size": world_size(), **fit}


def finish_variant(name: str, model, prepared: Prepared, config: Config, fit=None) -> dict:
    """Score a (trained) variant and save what must be kept; return its full record."""
    record = {**score_model(model, prepared, config), **(fit or {})}
    if not fit:  # the baseline trains nothing
        record.update(trainable_params=0, trainable_pct=0.0)
    if name in SAVE_DIRS and is_main_process():
        directory = Path(config.output_dir) / SAVE_DIRS[name]
        record["saved_size_mb"] = save_variant(model, name, directory, prepared.tokenizer)
    return record


def fit_variant(name: str, prepared: Prepared, config: Config, log=print, resume=False):
    """Build, train, score and save one variant; return the model and its record."""
    model, lr = prepare_variant(name, config)
    fit = train_variant(name, model, lr, prepared, config, log, resume) if lr else None
    return model, finish_variant(name, model, prepared, config, fit)


def run_experiment(
    config: Config, variants=("baseline", "lora"), log=print, resume=False, overwrite=False
) -> dict:
    """Run each variant on the same data and write `<output_dir>/results.json` after each."""
    if is_main_process():  # other ranks could meet rank 0's fresh results.json and refuse
        check_output_dir(config.output_dir, overwrite, resume)
    if resume:
        check_resume_config(config.output_dir, config)
    log(f"Loading data from {display_name(config.data)} and model {model_label(config.model)}")
    prepared = prepare_data(config, log)
    check_model(config, variants)
    # Only now, on rank 0: a run refused by any check above leaves the old one intact.
    if overwrite and not resume and is_main_process():
        start_over(config.output_dir, log)
    log(
        f"  {len(prepared.train)} train, {len(prepared.val)} validation, "
        f"{len(prepared.eval)} eval reviews; max length {config.max_length}"
    )
    runs: dict = {}
    results = None
    for name in variants:
        log(f"Variant {name}:")
        _, runs[name] = fit_variant(name, prepared, config, log=log, resume=resume)
        log(f"  accuracy {runs[name]['accuracy']:.4f}, F1 {runs[name]['f1']:.4f}")
        results = save_run(config, runs, prepared)
    return results
