"""The whole experiment, step by step: what the notebook and the command line both call."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .data import describe_overlap, load_imdb, select_subsets, tokenize_as_configured
from .errors import LFTError, RunInterrupted
from .evaluation import accuracy_interval, confusion, evaluate_model, positive_prob
from .hub import display_name, is_local, readable_path
from .modeling import (
    check_max_length,
    count_parameters,
    load_tokenizer,
    model_label,
    model_source,
)
from .reporting import build_results, load_results, write_json_atomic
from .runtime import configure_allocator, is_main_process, world_size
from .training import train_model

RESULTS, PARTIAL = "results.json", "results.partial.json"
# Settings that may change between a run and its --resume; everything else must match.
RESUME_FREE = {
    "output_dir",
    "preset",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "eval_steps",
    "eval_batch_size",
}


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
        split: tokenize_as_configured(getattr(subsets, split), tokenizer, config)
        for split in ("train", "val", "eval")
    }
    return Prepared(tokenizer, subsets, tok["train"], tok["val"], tok["eval"])


def prepare_data(config: Config, log=None) -> Prepared:
    """Load and check the data, subset (stratified, seeded, disjoint) and tokenize.

    `log` gets the data notes and, when a review occurs twice, one warning line with the counts.
    """
    data = load_imdb(config, log)
    subsets = select_subsets(data, config)
    warning = describe_overlap(subsets.overlap)
    if warning and log:
        log(warning)
    tokenizer = load_tokenizer(config)
    check_max_length(config, tokenizer)
    return tokenize_subsets(subsets, tokenizer, config)


def save_run(
    config: Config, runs: dict, prepared: Prepared, *, complete: bool = True, extra=None
) -> dict:
    """Build the results document from the runs so far and write it atomically.

    A complete run goes to `results.json` (and its progress file is removed); a run still
    going goes to `results.partial.json`, so it never replaces the results of a finished run.
    `extra` adds top-level entries (the sweep's budget, say).
    """
    results = build_results(config, run_labels(config), runs, prepared.subsets.eval_indices)
    results.update(complete=complete, overlap=prepared.subsets.overlap, **(extra or {}))
    if is_main_process():  # under torchrun every rank scores; rank 0 alone writes
        out = Path(config.output_dir)
        write_json_atomic(results, out / (RESULTS if complete else PARTIAL))
        if complete:
            (out / PARTIAL).unlink(missing_ok=True)
    return results


def score_model(model, prepared: Prepared, config: Config) -> dict:
    """Everything the results file keeps about one model on the eval subset."""
    configure_allocator(config.keep_freed_memory)
    scored = evaluate_model(
        model, prepared.eval, prepared.tokenizer, config.eval_batch_size, config.precision
    )
    metrics, logits = scored["metrics"], scored["logits"]
    labels = np.asarray(prepared.eval["labels"])
    return {
        **{k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()},
        "accuracy_ci": [round(x, 4) for x in accuracy_interval(metrics["accuracy"], len(labels))],
        **count_parameters(model),
        "confusion_matrix": confusion(labels, logits),
        "positive_prob": [round(float(p), 5) for p in positive_prob(logits)],
    }


def run_labels(config: Config) -> dict:
    """Which model and data produced the numbers, without machine paths."""
    return {
        "model_label": model_label(config.model),
        "data_label": display_name(config.data),
        "model_source": model_source(config.model),
    }


def check_output_dir(output_dir: str | Path, *, overwrite: bool, resume: bool = False) -> Path:
    """Refuse to clobber another run's results; fail early if the folder is not writable."""
    path = Path(output_dir)
    checkpoints = any(path.glob("checkpoints/*/checkpoint-*"))
    held = [name for name in (RESULTS, PARTIAL) if (path / name).exists()]
    held += ["checkpoints"] if checkpoints else []
    unfinished = checkpoints or PARTIAL in held
    if held and not (overwrite or resume):
        raise LFTError(
            f"Output directory `{output_dir}` already holds {' and '.join(held)} from another "
            f"run. Pass {'--resume to continue it, ' if unfinished else ''}--overwrite to "
            "replace it, or choose another --output-dir."
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
    if (path / RESULTS).exists():
        log(
            f"Overwriting the results in {path} (--overwrite): the old {RESULTS} stays until "
            "this run completes"
        )
    (path / PARTIAL).unlink(missing_ok=True)
    shutil.rmtree(path / "checkpoints", ignore_errors=True)


def train_variant(
    name: str,
    model,
    lr: float,
    prepared: Prepared,
    config: Config,
    *,
    log=print,
    resume=False,
    **hooks,
) -> dict:
    """Train a prepared variant in place; checkpoints go to `<output_dir>/checkpoints/<name>`.

    `hooks` (a spec's `optimizer`, `callbacks`) go to `train_model` as they are.
    """
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
        **hooks,
    )
    fit.pop("is_main_process")
    return {"learning_rate": lr, "world_size": world_size(), **fit}


# Resuming, and stopping so that a resume is easy


def comparable(name: str, value):
    """A config value as compared on --resume: local paths resolved, lists as tuples."""
    if name in ("model", "data") and isinstance(value, str) and is_local(value):
        return str(Path(value).expanduser().resolve())
    return tuple(value) if isinstance(value, list) else value


def changed_settings(before: dict, config: Config) -> list[str]:
    """The settings a --resume may not change that differ from the recorded config `before`."""
    now = {k: v for k, v in config.to_dict().items() if k in before and k not in RESUME_FREE}
    return [
        f"{k} {before[k]!r} there, {v!r} now"
        for k, v in now.items()
        if comparable(k, before[k]) != comparable(k, v)
    ]


def check_resume_config(output_dir: str | Path, config: Config) -> None:
    """--resume continues the run in `output_dir` only with the settings it was started with.

    That run's record is its progress file, or, once it completed, its results.json.
    """
    out = Path(output_dir)
    path = next((out / n for n in (PARTIAL, RESULTS) if (out / n).is_file()), None)
    if path is None:
        return
    try:
        before = load_results(path)["config"]
    except (OSError, ValueError, KeyError):
        return  # no readable record to compare with: nothing to protect
    changed = changed_settings(before, config)
    if changed:
        raise LFTError(
            f"--resume: the run in `{output_dir}` was started with other settings "
            f"({'; '.join(changed)}). Rerun with the same settings, or pass --overwrite to "
            "start over."
        )


def latest_checkpoint(output_dir: str | Path, since: float = 0.0) -> Path | None:
    """The checkpoint written last under `output_dir` (any variant or sweep run), if complete
    and written after `since` (a time.time() value).

    The Trainer writes trainer_state.json last, so a checkpoint without a readable one was cut
    short and is skipped (as `--resume` skips it).
    """
    complete = []
    for folder in Path(output_dir).glob("**/checkpoint-*"):
        state = folder / "trainer_state.json"
        try:
            json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if state.stat().st_mtime >= since:
            complete.append((state.stat().st_mtime, folder))
    return max(complete)[1] if complete else None


def saved_since(output_dir: str | Path, since: float) -> bool:
    """Whether anything a run keeps (results, progress, checkpoints) was written under
    `output_dir` after `since`."""
    kept = (RESULTS, PARTIAL, "trainer_state.json")
    return any(
        p.stat().st_mtime >= since for name in kept for p in Path(output_dir).glob(f"**/{name}")
    )


def python_command() -> str:
    """How to call this interpreter again: `python` when that is the one on PATH."""
    for name in ("python", "python3"):
        found = shutil.which(name)
        if found and os.path.abspath(found) == os.path.abspath(sys.executable):
            return name
    return readable_path(sys.executable)


def resume_command(argv) -> str:
    """The command line that continues an interrupted one: the same flags, plus --resume.

    --overwrite is dropped: a resumed run keeps what the first part of the run wrote.
    """
    args = without_resume_flags(argv)
    return shlex.join([*shlex.split(python_command()), "-m", "lft_helpers", *args, "--resume"])


def without_resume_flags(argv) -> list[str]:
    """The command's flags without --overwrite and --resume: how the run was asked for."""
    return [a for a in argv if a not in ("--overwrite", "--resume")]


def interrupted_message(signum: int, output_dir, argv, started: float = 0.0) -> str:
    """One line for a run stopped by a signal: where its latest checkpoint is, how to go on.

    An --overwrite run (begun at `started`, a time.time() value) stopped before it saved
    anything has not replaced the old run yet: its files are the old run's, so a --resume
    would continue or keep that run, and the way on is the same command again.
    """
    name = signal.Signals(signum).name
    if output_dir is None:  # not a training command: nothing to continue
        return f"Interrupted by {name}."
    overwriting = "--overwrite" in argv and "--resume" not in argv
    if overwriting and not saved_since(output_dir, started):
        again = shlex.join([*shlex.split(python_command()), "-m", "lft_helpers", *argv])
        return (
            f"Interrupted by {name} before this run saved anything: {readable_path(output_dir)} "
            f"still holds the previous run. Start again with: {again}"
        )
    checkpoint = latest_checkpoint(output_dir, since=started if overwriting else 0.0)
    where = (
        f"latest complete checkpoint: {readable_path(checkpoint)}"
        if checkpoint
        else "no complete checkpoint yet (--save-steps N saves one every N steps)"
    )
    return f"Interrupted by {name}; {where}. Continue with: {resume_command(argv)}"


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside, SIGTERM (`kill`, a scheduler's time limit) stops like Ctrl-C: by unwinding, so
    files being written are finished or removed and the interruption message is printed."""

    def interrupt(signum, frame):
        raise RunInterrupted(signum)

    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
