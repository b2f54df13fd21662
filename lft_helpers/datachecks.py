"""Checks on the user's data that run before any training, and the fixes made instead of failing.

Each check raises :class:`LFTError` with one message naming the input (a file, a column, a flag),
what is wrong with it and how to fix it. Fixable problems are fixed and reported instead: label
words such as ``neg``/``pos`` are mapped to 0/1, and a few rows without text are dropped.
Duplicate reviews are counted here too (`duplicate_rows`, `rows_also_in`); `data` decides what to
do with them.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from .config import Config
from .errors import LFTError, first_line
from .hub import readable_path

# Spelled-out labels accepted in a label column (compared lower-case, stripped).
LABEL_WORDS = {"0": 0, "1": 1, "neg": 0, "pos": 1, "negative": 0, "positive": 1}
LABEL_HELP = "0/1, or the words neg/pos or negative/positive"
# Up to this share of rows without text is dropped with a note; more means a wrong column or file.
MAX_DROPPED_SHARE = 0.10


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


def mark_source(dataset, source: str):
    """Record where a split came from (a file, or a Hub dataset and split) for later messages.

    It goes in the split's own `DatasetInfo`, which `select` and column edits carry along, so
    a check on subset sizes can name the file without looking for it again.
    """
    dataset.info.description = source
    return dataset


def source_of(dataset, split: str) -> str:
    """What a message calls a split: its recorded source, else the split's name."""
    return dataset.info.description or f"the {split} split"


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
    shown = readable_path(source) if Path(source).exists() else source  # a file, or a Hub split
    note = f"  dropped {dropped} of {len(texts)} rows with empty or missing text from `{shown}`"
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
    """(negative, positive) rows."""
    labels = np.asarray(labels)
    positive = int((labels == 1).sum())
    return len(labels) - positive, positive


def class_shares(size: int) -> tuple[int, int]:
    """(negative, positive) rows in a balanced subset of `size`: the odd row goes to positive."""
    return size // 2, size - size // 2


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
    return mark_source(dataset, source), note


def validate_splits(data: dict, config: Config, sources: dict):
    """All data checks on the loaded splits; return (clean DatasetDict, notes to show)."""
    import datasets

    cleaned, notes = {}, []
    for split, dataset in data.items():
        cleaned[split], note = clean_split(dataset, sources[split], config)
        if note:
            notes.append(note)
    return datasets.DatasetDict(cleaned), notes


def check_sizes(data, config: Config, eval_excluded=()) -> None:
    """Train+validation and eval sizes fit the rows each class has, balanced.

    `eval_excluded` are test rows the eval subset may not use (reviews also in train).
    """
    train, val = class_shares(config.train_size), class_shares(config.val_size)
    test_labels = np.delete(np.asarray(data["test"]["label"]), np.asarray(eval_excluded, int))
    wanted = {
        "train": (
            (train[0] + val[0], train[1] + val[1]),
            np.asarray(data["train"]["label"]),
            f"train_size={config.train_size} plus val_size={config.val_size}",
            "Lower --train-size/--val-size",
        ),
        "test": (
            class_shares(config.eval_size),
            test_labels,
            f"eval_size={config.eval_size}",
            "Lower --eval-size",
        ),
    }
    for split, (need, labels, asked, fix) in wanted.items():
        have = class_counts(labels)
        if have[0] >= need[0] and have[1] >= need[1]:
            continue
        left_out = ""
        if split == "test" and len(eval_excluded):
            left_out = f" not counting {len(eval_excluded)} that repeat a train review,"
            fix += ", or pass --keep-eval-duplicates to evaluate on those too"
        raise LFTError(
            f"Data file `{source_of(data[split], split)}` has {have[0]} negative and {have[1]} "
            f"positive reviews ({sum(have)} rows),{left_out} too few for {asked}, which takes "
            f"{need[0]} negative and {need[1]} positive. {fix}."
        )


def normalize_text(text: str) -> str:
    """The form duplicates are compared in: runs of whitespace as one space, ends stripped."""
    return " ".join(text.split())


def duplicate_rows(texts) -> int:
    """Rows of `texts` (normalised) that repeat an earlier row."""
    texts = list(texts)
    return len(texts) - len(set(texts))


def rows_also_in(texts, reference) -> np.ndarray:
    """Row numbers of `texts` that also occur in `reference` (both normalised)."""
    seen = set(reference)
    return np.array([i for i, t in enumerate(texts) if t in seen], dtype=int)
