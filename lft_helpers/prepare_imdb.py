"""IMDb as files: Stanford's `aclImdb_v1.tar.gz` (or its extracted folder) to train/test parquet.

The Large Movie Review Dataset v1.0 (Maas et al., ACL 2011) ships its 25,000 + 25,000 labelled
reviews as `aclImdb/{train,test}/{pos,neg}/<review_id>_<rating>.txt` (the unlabelled
`train/unsup` part is left out here, as on the Hub). The parquet files have the columns and row
order of the Hub dataset `stanfordnlp/imdb`, plus the rating and id from each file name, so
`--data` / `LFT_DATA` can point at them.
"""

from __future__ import annotations

import argparse
import re
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from .errors import LFTError

DOWNLOAD_URL = "https://ai.stanford.edu/~amaas/data/sentiment/"
SPLITS = ("train", "test")
LABELS = {"neg": 0, "pos": 1}  # as on the Hub: 0 = negative (rating <= 4), 1 = positive (>= 7)
COLUMNS = ("text", "label", "rating", "review_id")
EXPECTED_PER_SPLIT = 25_000
PROGRESS_EVERY = 5_000
# A labelled review inside the archive or the folder; anything else (unsup, vocab) is skipped.
REVIEW_PATH = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")

Review = tuple[str, int, int, int, str]  # split, label, rating, review_id, text


def _review(match: re.Match, text: str) -> Review:
    split, polarity, review_id, rating = match.groups()
    return split, LABELS[polarity], int(rating), int(review_id), text


def iter_archive(path: Path) -> Iterator[Review]:
    """Each labelled review of a .tar.gz, read in one streaming pass, nothing extracted."""
    try:
        with tarfile.open(path, mode="r|*") as tar:  # "|": a stream, members read in order
            for member in tar:
                match = REVIEW_PATH.search(member.name) if member.isfile() else None
                if match:
                    yield _review(match, tar.extractfile(member).read().decode("utf-8"))
    except (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeDecodeError) as err:
        raise LFTError(
            f"Cannot read `{path}` as the IMDb archive ({err}). Pass aclImdb_v1.tar.gz as "
            f"downloaded from {DOWNLOAD_URL} (download it again if it is truncated), or the "
            "aclImdb folder it unpacks to."
        ) from None


def iter_folder(folder: Path) -> Iterator[Review]:
    """Each labelled review of an extracted `aclImdb` folder (or the folder holding it)."""
    root = folder / "aclImdb" if (folder / "aclImdb").is_dir() else folder
    for path in sorted(root.glob("*/*/*.txt")):
        match = REVIEW_PATH.search(path.relative_to(root).as_posix())
        if match:
            yield _review(match, path.read_text(encoding="utf-8"))


def read_imdb(source: str | Path, progress: Callable[[int], None] | None = None) -> dict:
    """The train and test reviews of `source` (archive or folder) as two DataFrames.

    Rows are sorted by label, then review id: the Hub's order, so a plain head of a file is
    one class. `progress` is called with the running count every PROGRESS_EVERY reviews.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise LFTError(
            f"`{source}` does not exist. Download aclImdb_v1.tar.gz from {DOWNLOAD_URL} and "
            "pass its path (or the aclImdb folder it unpacks to)."
        )
    reviews = iter_folder(source) if source.is_dir() else iter_archive(source)
    rows: dict[str, list] = {split: [] for split in SPLITS}
    for count, (split, *row) in enumerate(reviews, 1):
        rows[split].append(row)
        if progress and count % PROGRESS_EVERY == 0:
            progress(count)
    return {split: to_frame(rows[split]) for split in SPLITS}


def to_frame(rows: list) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["label", "rating", "review_id", "text"])
    frame = frame.astype({"label": "int64", "rating": "int8", "review_id": "int32"})
    frame = frame.sort_values(["label", "review_id"], kind="stable", ignore_index=True)
    return frame[list(COLUMNS)]


def check_counts(frames: dict, expected: int = EXPECTED_PER_SPLIT) -> None:
    """Each split must have `expected` reviews, half of them positive, as aclImdb v1 has."""
    for split, frame in frames.items():
        positives = int(frame["label"].sum())
        if len(frame) != expected or 2 * positives != len(frame):
            raise LFTError(
                f"The {split} split has {len(frame):,} reviews, {positives:,} of them positive; "
                f"aclImdb v1 has {expected:,}, half positive. The archive is incomplete or not "
                f"aclImdb_v1.tar.gz: download it again from {DOWNLOAD_URL}."
            )


def write_splits(frames: dict, output: str | Path) -> dict[str, Path]:
    """`<output>/<split>.parquet` (zstd) for each split; returns the paths written."""
    output = Path(output).expanduser()
    try:
        output.mkdir(parents=True, exist_ok=True)
        paths = {split: output / f"{split}.parquet" for split in frames}
        for split, frame in frames.items():
            frame.to_parquet(paths[split], compression="zstd", index=False)
    except OSError as err:
        raise LFTError(f"Cannot write the parquet files to `{output}` ({err}).") from None
    return paths


def add_prepare_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help=f"aclImdb_v1.tar.gz from {DOWNLOAD_URL}, or the aclImdb folder it unpacks to"
    )
    parser.add_argument(
        "--output",
        default="data/imdb",
        help="folder for train.parquet and test.parquet; then pass it as --data or LFT_DATA "
        "(default data/imdb)",
    )
    parser.add_argument(
        "--expected-reviews",
        type=int,
        default=EXPECTED_PER_SPLIT,
        help="reviews each split must have, half positive (default 25,000: aclImdb v1)",
    )


def cmd_prepare_imdb(args: argparse.Namespace) -> int:
    # One line updated in place on a terminal; one line per step in a log file.
    end = "\r" if sys.stdout.isatty() else "\n"

    def show(count: int) -> None:
        print(f"read {count:,} reviews", end=end, flush=True)

    frames = read_imdb(args.path, progress=show)
    print(f"read {sum(len(f) for f in frames.values()):,} reviews in all")
    check_counts(frames, expected=args.expected_reviews)
    paths = write_splits(frames, args.output)
    for split, path in paths.items():
        positives = int(frames[split]["label"].sum())
        print(f"{path}: {len(frames[split]):,} reviews ({positives:,} positive)")
    print(f"Use it with --data {args.output} or LFT_DATA={args.output}")
    return 0
