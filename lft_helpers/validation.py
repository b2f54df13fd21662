"""Checks on the user's data, model and output folder that run before any training.

Each check raises :class:`LFTError` with one message naming the input (a file, a column, a flag),
what is wrong with it and how to fix it. Fixable problems are fixed and reported instead: label
words such as ``neg``/``pos`` are mapped to 0/1, and a few rows without text are dropped.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from .config import Config
from .errors import LFTError
from .hub import is_local

# Spelled-out labels accepted in a label column (compared lower-case, stripped).
LABEL_WORDS = {"0": 0, "1": 1, "neg": 0, "pos": 1, "negative": 0, "positive": 1}
LABEL_HELP = "0/1, or the words neg/pos or negative/positive"
# Up to this share of rows without text is dropped with a note; more means a wrong column or file.
MAX_DROPPED_SHARE = 0.10
# Settings that may change between a run and its --resume; everything else must match.
RESUME_FREE = {
    "output_dir",
    "preset",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "eval_steps",
    "eval_batch_size",
    "extra",
}


def first_line(err: BaseException, limit: int = 200) -> str:
    """A library error's root cause, cut to one short line for an LFTError message."""
    root = err.__cause__ or err
    text = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.rstrip(".") or type(root).__name__  # the message adds its own full stop


@contextlib.contextmanager
def quiet_datasets_log():
    """`datasets` logs its own copy of a read error; the LFTError alone should reach the user."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_split_file(path: str | Path, fmt: str):
    """One local data file as a `datasets.Dataset`; an unreadable file is an LFTError."""
    import datasets

    try:
        with quiet_datasets_log():
            dataset = datasets.load_dataset(fmt, data_files={"rows": str(path)}, split="rows")
    except Exception as err:  # a corrupt file fails deep inside pyarrow/pandas in many ways
        raise LFTError(
            f"Data file `{path}` cannot be read as {fmt}: {first_line(err)}. Replace it with a "
            "valid parquet, csv or jsonl file (columns text and label)."
        ) from None
    if dataset.num_rows == 0:
        raise LFTError(f"Data file `{path}` has no rows. Point --data at a directory with reviews.")
    return dataset


def check_columns(dataset, source: str, config: Config) -> None:
    """The configured text and label columns exist (with the flag that renames them)."""
    if config.text_column == config.label_column:
        raise LFTError(
            f"--text-column and --label-column both name `{config.text_column}`: the reviews "
            "and their labels must be two different columns."
        )
    columns = dataset.column_names
    for role, name, flag in (
        ("text", config.text_column, "--text-column"),
        ("label", config.label_column, "--label-column"),
    ):
        if name not in columns:
            raise LFTError(
                f"Data file `{source}` has no {role} column `{name}` (its columns: "
                f"{', '.join(columns)}). Pass {flag} with the name of the {role} column."
            )


def check_text_type(dataset, source: str, column: str) -> None:
    """A column of numbers under the text name means the wrong column was picked."""
    dtype = getattr(dataset.features["text"], "dtype", None)
    if dtype not in ("string", "large_string", "null"):
        raise LFTError(
            f"Data file `{source}` column `{column}` holds {dtype} values, not review text. "
            "Pass --text-column with the name of the column that holds the reviews."
        )


def drop_empty_texts(dataset, source: str, column: str):
    """Drop rows whose text is missing or blank; return (dataset, note or None)."""
    texts = list(dataset["text"])
    keep = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    dropped = len(texts) - len(keep)
    if not dropped:
        return dataset, None
    if dropped > MAX_DROPPED_SHARE * len(texts):
        raise LFTError(
            f"Data file `{source}` has {dropped} of {len(texts)} rows with empty or missing text "
            f"in column `{column}` (over {MAX_DROPPED_SHARE:.0%}). Fix the file, or pass "
            "--text-column if the reviews are in another column."
        )
    note = f"  dropped {dropped} of {len(texts)} rows with empty or missing text from `{source}`"
    return dataset.select(keep), note


def label_value(value) -> int | None:
    """0 or 1 for an accepted label (number, bool or label word), None for anything else."""
    if isinstance(value, str):
        return LABEL_WORDS.get(value.strip().lower())
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    return None


def normalize_labels(dataset, source: str, column: str):
    """Labels as integers 0/1; words such as `pos` are mapped, anything else is an error."""
    raw = list(dataset["label"])
    mapped = [label_value(v) for v in raw]
    bad = [v for v, m in zip(raw, mapped, strict=True) if m is None]
    if bad:
        shown = sorted({repr(v) for v in bad})[:5]
        raise LFTError(
            f"Data file `{source}` column `{column}` has {len(bad)} label(s) that are not one "
            f"of two classes: {', '.join(shown)}. Labels must be {LABEL_HELP}; remap or drop "
            "those rows, or pass --label-column if the labels are in another column."
        )
    if all(type(v) is int for v in raw):
        return dataset
    return dataset.remove_columns("label").add_column("label", mapped)


def class_counts(labels) -> tuple[int, int]:
    labels = list(labels)
    positive = sum(1 for v in labels if v == 1)
    return len(labels) - positive, positive


def check_two_classes(dataset, source: str) -> None:
    negative, positive = class_counts(dataset["label"])
    if not negative or not positive:
        only = "positive (1)" if positive else "negative (0)"
        raise LFTError(
            f"Data file `{source}` holds only {only} reviews ({dataset.num_rows} rows): "
            "training and evaluation need both classes. Use a file with both labels."
        )


def clean_split(dataset, source: str, config: Config):
    """Columns checked and renamed to text/label, empty texts dropped, labels made 0/1."""
    check_columns(dataset, source, config)
    dataset = dataset.select_columns([config.text_column, config.label_column])
    dataset = dataset.rename_columns({config.text_column: "text", config.label_column: "label"})
    check_text_type(dataset, source, config.text_column)
    dataset, note = drop_empty_texts(dataset, source, config.text_column)
    dataset = normalize_labels(dataset, source, config.label_column)
    check_two_classes(dataset, source)
    return dataset, note


def per_class(size: int) -> tuple[int, int]:
    """Rows each class gives to a balanced subset of `size` (as `stratified_indices` picks)."""
    return size // 2, size - size // 2


def split_sources(config: Config) -> dict:
    """What to call each split in a message: its file, or the Hub dataset and split."""
    if is_local(config.data):
        from .data import find_split_files

        return {split: str(path) for split, path in find_split_files(config.data).items()}
    return {split: f"{config.data} ({split} split)" for split in ("train", "test")}


def check_sizes(data, config: Config) -> None:
    """Train+validation and eval sizes fit the rows each class has, balanced."""
    train, val = per_class(config.train_size), per_class(config.val_size)
    train_need = (train[0] + val[0], train[1] + val[1])
    wanted = {
        "train": (
            train_need,
            f"train_size={config.train_size} plus val_size={config.val_size}",
            "--train-size/--val-size",
        ),
        "test": (per_class(config.eval_size), f"eval_size={config.eval_size}", "--eval-size"),
    }
    for split, (need, asked, flags) in wanted.items():
        have = class_counts(data[split]["label"])
        if have[0] < need[0] or have[1] < need[1]:
            source = split_sources(config)[split]
            raise LFTError(
                f"Data file `{source}` has {have[0]} negative and {have[1]} positive "
                f"reviews ({sum(have)} rows), too few for {asked}, which takes {need[0]} "
                f"negative and {need[1]} positive. Lower {flags}."
            )


def validate_splits(data: dict, config: Config, sources: dict):
    """All data checks on the loaded splits; return (clean DatasetDict, notes to show)."""
    import datasets

    cleaned, notes = {}, []
    for split, dataset in data.items():
        cleaned[split], note = clean_split(dataset, sources[split], config)
        if note:
            notes.append(note)
    return datasets.DatasetDict(cleaned), notes


def check_model(config: Config, variants=("lora",)) -> None:
    """The model can classify sequences and the LoRA targets exist, before any weights load.

    The model is built on the meta device from its config alone, so this costs milliseconds.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .modeling import check_targets, default_target_modules, head_modules, resolve_model_source

    source = resolve_model_source(config.model)
    try:
        model_config = AutoConfig.from_pretrained(source)
        model_config.num_labels = 2
        with torch.device("meta"):
            skeleton = AutoModelForSequenceClassification.from_config(model_config)
    except (OSError, ValueError, KeyError) as err:
        raise LFTError(
            f"Model `{config.model}` cannot be used for sequence classification "
            f"({first_line(err)}). Use a BERT-family encoder such as distilbert-base-uncased "
            "or `minilm-offline`."
        ) from None
    head_modules(skeleton)
    if "lora" in variants:
        check_targets(skeleton, list(config.target_modules or default_target_modules(skeleton)))


def comparable(name: str, value):
    """A config value as compared on --resume: local paths resolved, lists as tuples."""
    if name in ("model", "data") and isinstance(value, str) and is_local(value):
        return str(Path(value).expanduser().resolve())
    return tuple(value) if isinstance(value, list) else value


def check_resume_config(output_dir: str | Path, config: Config) -> None:
    """--resume continues the run in `output_dir` only with the settings it was started with."""
    from .reporting import load_results

    path = Path(output_dir) / "results.json"
    if not path.is_file():
        return
    try:
        before = load_results(path)["config"]
    except (OSError, ValueError, KeyError):
        return  # no readable record to compare with: nothing to protect
    now = {k: v for k, v in config.to_dict().items() if k in before and k not in RESUME_FREE}
    changed = [
        f"{k} {before[k]!r} there, {v!r} now"
        for k, v in now.items()
        if comparable(k, before[k]) != comparable(k, v)
    ]
    if changed:
        raise LFTError(
            f"--resume: the run in `{output_dir}` was started with other settings "
            f"({'; '.join(changed)}). Rerun with the same settings, or pass --overwrite to "
            "start over."
        )
