"""Loading IMDb (Hub or local files), stratified seeded subsets, and tokenization."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .errors import LFTError
from .hub import is_local, require_hub

SPLITS = ("train", "test")
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}
LABEL_NAMES = ("NEGATIVE", "POSITIVE")


def find_split_files(directory: str | Path) -> dict[str, Path]:
    """Locate `train.*` and `test.*` (parquet, csv or jsonl) in a directory."""
    directory = Path(directory).expanduser()
    if not directory.exists():
        raise LFTError(
            f"Data path `{directory}` does not exist. Pass a Hub dataset id or a directory "
            "holding train and test files with --data or LFT_DATA."
        )
    found = {}
    for split in SPLITS:
        matches = sorted(p for p in directory.glob(f"{split}*") if p.suffix in FORMATS)
        if not matches:
            raise LFTError(
                f"Data directory `{directory}` has no {split} file: expected {split}.parquet, "
                f"{split}.csv or {split}.jsonl next to the other split."
            )
        found[split] = matches[0]
    return found


def load_imdb(config: Config, log=None):
    """Load the train and test splits as a `datasets.DatasetDict` with `text` and `label`.

    The rows are checked and cleaned here (see `validation`); `log` receives notes such as
    how many rows without text were dropped. Subset sizes are checked in `prepare_data`.
    """
    import datasets

    from .validation import read_split_file, validate_splits

    datasets.disable_progress_bars()
    if is_local(config.data):
        files = find_split_files(config.data)
        data = {s: read_split_file(p, FORMATS[p.suffix]) for s, p in files.items()}
        sources = {s: str(p) for s, p in files.items()}
    else:
        require_hub("dataset", config.data)
        loaded = datasets.load_dataset(config.data)
        data = {s: loaded[s] for s in SPLITS}
        sources = {s: f"{config.data} ({s} split)" for s in SPLITS}
    data, notes = validate_splits(data, config, sources)
    for note in notes if log else ():
        log(note)
    return data


def stratified_indices(labels, size: int, seed: int, exclude=()) -> np.ndarray:
    """`size` row indices with both classes in equal share, shuffled with `seed`.

    IMDb files are sorted by label, so a plain head of the file would be a single class.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    available = np.setdiff1d(np.arange(len(labels)), np.asarray(list(exclude), dtype=int))
    picked = []
    for cls, count in ((0, size // 2), (1, size - size // 2)):
        pool = available[labels[available] == cls]
        if len(pool) < count:
            raise LFTError(
                f"Asked for {size} examples but class {cls} has only {len(pool)} available rows "
                "(after excluding other subsets); lower the size."
            )
        picked.append(rng.choice(pool, size=count, replace=False))
    out = np.concatenate(picked)
    rng.shuffle(out)
    return out


@dataclass
class Subsets:
    """Rows chosen for one experiment; `*_indices` are row numbers in the source splits."""

    train: object
    val: object
    eval: object
    train_indices: np.ndarray
    val_indices: np.ndarray
    eval_indices: np.ndarray


def select_subsets(data, config: Config) -> Subsets:
    """Disjoint train/validation subsets from `train`, the eval subset from `test`.

    The eval subset depends only on the seed and its size, so every variant compared (and any
    later re-scoring) sees exactly the same reviews.
    """
    train_labels = data["train"]["label"]
    train_idx = stratified_indices(train_labels, config.train_size, config.seed)
    val_idx = (
        stratified_indices(train_labels, config.val_size, config.seed + 1, exclude=train_idx)
        if config.val_size
        else np.array([], dtype=int)
    )
    eval_idx = stratified_indices(data["test"]["label"], config.eval_size, config.seed + 2)
    return Subsets(
        train=data["train"].select(train_idx),
        val=data["train"].select(val_idx),
        eval=data["test"].select(eval_idx),
        train_indices=train_idx,
        val_indices=val_idx,
        eval_indices=eval_idx,
    )


def tokenize_dataset(dataset, tokenizer, max_length: int):
    """Token ids truncated to `max_length`, unpadded: batches are padded per batch later."""

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["labels"] = batch["label"]
        return enc

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names)


def token_lengths(dataset, tokenizer) -> np.ndarray:
    """Untruncated token count of each review (for the length plots and analysis)."""
    # verbose=False: counting long reviews is the point, not a reason to warn.
    enc = tokenizer(list(dataset["text"]), truncation=False, add_special_tokens=True, verbose=False)
    return np.array([len(ids) for ids in enc["input_ids"]])
