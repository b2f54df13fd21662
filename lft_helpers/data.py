"""Loading IMDb (Hub or local files), stratified seeded subsets, and tokenization."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Config
from .datachecks import (
    check_sizes,
    class_shares,
    duplicate_rows,
    normalize_text,
    read_split_file,
    rows_also_in,
    validate_splits,
)
from .errors import LFTError
from .hub import is_local, require_hub
from .truncation import encode_head_tail

SPLITS = ("train", "test")
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}


def find_split_files(directory: str | Path) -> dict[str, Path]:
    """Locate `train.*` and `test.*` (parquet, csv or jsonl) in a directory, one of each."""
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
        if len(matches) > 1:  # an old export beside a new one: never pick one silently
            names = ", ".join(f"`{p.name}`" for p in matches)
            raise LFTError(
                f"Data directory `{directory}` has {len(matches)} files for the {split} split: "
                f"{names}. Move all but one of them out of the folder, or point --data at a "
                "folder with one train and one test file."
            )
        found[split] = matches[0]
    return found


def load_imdb(config: Config, log=None):
    """Load the train and test splits as a `datasets.DatasetDict` with `text` and `label`.

    The rows are checked and cleaned here (see `datachecks`); `log` receives notes such as
    how many rows without text were dropped. Subset sizes are checked in `select_subsets`.
    """
    import datasets

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
    for cls, count in enumerate(class_shares(size)):
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


def stratified_indices_avoiding(labels, size: int, seed: int, avoid) -> np.ndarray:
    """`stratified_indices`, with each pick that falls in `avoid` swapped for another row.

    The swaps come from a stream of their own and keep the class, so every other pick stays
    where `stratified_indices` put it: data without such rows gets the very same subset, and
    data with them differs from the plain draw only in the swapped reviews. The result is still
    a uniform balanced draw from the rows outside `avoid`.
    """
    labels = np.asarray(labels)
    picked = stratified_indices(labels, size, seed)
    swap = np.isin(picked, np.asarray(avoid, dtype=int))
    if not swap.any():
        return picked
    rng = np.random.default_rng([seed, 1])
    taken = np.union1d(picked, np.asarray(avoid, dtype=int))
    for cls in (0, 1):
        slots = np.flatnonzero(swap & (labels[picked] == cls))
        pool = np.setdiff1d(np.flatnonzero(labels == cls), taken)
        if len(pool) < len(slots):
            raise LFTError(
                f"Asked for {size} examples but class {cls} has too few rows outside the "
                f"{len(avoid)} excluded ones; lower the size."
            )
        picked[slots] = rng.choice(pool, size=len(slots), replace=False)
    return picked


@dataclass
class Subsets:
    """Rows chosen for one experiment; `*_indices` are row numbers in the source splits.

    `overlap` counts reviews that occur twice (see `count_overlap`).
    """

    train: object
    val: object
    eval: object
    train_indices: np.ndarray
    val_indices: np.ndarray
    eval_indices: np.ndarray
    overlap: dict = field(default_factory=dict)


def count_overlap(train_texts, test_texts, subsets: dict, *, eval_duplicates: str) -> dict:
    """Duplicate reviews (exact text after normalising whitespace), in rows.

    `test_in_train`: test reviews that repeat a train review; `within_*`: rows that repeat an
    earlier row of the same split. `subsets` holds the row numbers chosen (train, val, eval),
    counted the same way; `eval_duplicates` says whether test reviews found in train were kept
    in the eval subset or excluded from it.
    """
    train_val = [train_texts[i] for i in (*subsets["train"], *subsets["val"])]
    eval_texts = [test_texts[i] for i in subsets["eval"]]
    return {
        "compared": "exact text, whitespace normalised",
        "test_in_train": len(rows_also_in(test_texts, train_texts)),
        "within_train": duplicate_rows(train_texts),
        "within_test": duplicate_rows(test_texts),
        "eval_duplicates": eval_duplicates,
        "subsets": {
            "eval_in_train_val": len(rows_also_in(eval_texts, train_val)),
            "within_train_val": duplicate_rows(train_val),
            "within_eval": duplicate_rows(eval_texts),
        },
    }


def describe_overlap(overlap: dict) -> str | None:
    """One warning line with the duplicate counts; None when no review occurs twice."""
    sub = overlap.get("subsets", {})
    counts = [overlap.get(k, 0) for k in ("test_in_train", "within_train", "within_test")]
    if not any(counts) and not any(sub.values()):
        return None
    kept = overlap.get("eval_duplicates") == "kept"
    fate = (
        "kept in the eval subset (--keep-eval-duplicates)"
        if kept
        else "left out of the eval subset (--keep-eval-duplicates keeps them)"
    )
    return (
        f"Warning: duplicate reviews ({overlap['compared']}): {counts[0]} test reviews repeat a "
        f"train review, {fate}; {counts[1]} repeats within train, {counts[2]} within test; in "
        f"the subsets, {sub['eval_in_train_val']} eval reviews are in train+validation, "
        f"{sub['within_train_val']} repeats within train+validation, {sub['within_eval']} "
        "within eval."
    )


def select_subsets(data, config: Config) -> Subsets:
    """Disjoint train/validation subsets from `train`, the eval subset from `test`.

    The eval subset depends only on the data, the seed and its size, so every variant compared
    (and any later re-scoring) sees exactly the same reviews. Test reviews that repeat a train
    review are left out of it unless `config.keep_eval_duplicates`: a model may have memorised
    them, so they would inflate its accuracy.
    """
    train_texts = [normalize_text(t) for t in data["train"]["text"]]
    test_texts = [normalize_text(t) for t in data["test"]["text"]]
    in_train = rows_also_in(test_texts, train_texts)
    excluded = () if config.keep_eval_duplicates else in_train
    check_sizes(data, config, eval_excluded=excluded)
    train_labels = data["train"]["label"]
    train_idx = stratified_indices(train_labels, config.train_size, config.seed)
    val_idx = (
        stratified_indices(train_labels, config.val_size, config.seed + 1, exclude=train_idx)
        if config.val_size
        else np.array([], dtype=int)
    )
    eval_idx = stratified_indices_avoiding(
        data["test"]["label"], config.eval_size, config.seed + 2, avoid=excluded
    )
    chosen = {"train": train_idx, "val": val_idx, "eval": eval_idx}
    return Subsets(
        train=data["train"].select(train_idx),
        val=data["train"].select(val_idx),
        eval=data["test"].select(eval_idx),
        train_indices=train_idx,
        val_indices=val_idx,
        eval_indices=eval_idx,
        overlap=count_overlap(
            train_texts,
            test_texts,
            chosen,
            eval_duplicates="kept" if config.keep_eval_duplicates else "excluded",
        ),
    )


def tokenize_dataset(dataset, tokenizer, max_length: int, *, truncation="head", head_tokens=128):
    """Token ids truncated to `max_length`, unpadded: batches are padded per batch later.

    `truncation="head+tail"` keeps a long review's first `head_tokens` and its last tokens
    (`truncation.encode_head_tail`) instead of its first ones only."""

    def encode(batch):
        if truncation == "head+tail":
            enc = encode_head_tail(tokenizer, batch["text"], max_length, head_tokens)
        else:
            enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["labels"] = batch["label"]
        return enc

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names)


def tokenize_as_configured(dataset, tokenizer, config: Config):
    """`tokenize_dataset` with the run's max length, truncation and head tokens."""
    return tokenize_dataset(
        dataset,
        tokenizer,
        config.max_length,
        truncation=config.truncation,
        head_tokens=config.head_tokens,
    )


def token_lengths(dataset, tokenizer) -> np.ndarray:
    """Untruncated token count of each review (for the length plots and analysis)."""
    # verbose=False: counting long reviews is the point, not a reason to warn.
    enc = tokenizer(list(dataset["text"]), truncation=False, add_special_tokens=True, verbose=False)
    return np.array([len(ids) for ids in enc["input_ids"]])
