"""`prepare-imdb` on a tiny archive with the layout of Stanford's aclImdb_v1.tar.gz."""

import io
import random
import tarfile

import pandas as pd
import pytest

from conftest import run_cli
from lft_helpers import prepare_imdb
from lft_helpers.errors import LFTError

# (split, polarity, review_id, rating, text): two of each class per split, ids out of order.
REVIEWS = [
    ("train", "pos", 12, 9, "A moving film.<br /><br />Loved it."),
    ("train", "pos", 3, 10, "Superb: caf\u00e9 scenes, na\u00efve hero \u2605\u2605\u2605"),
    ("train", "neg", 7, 2, "Dull and clumsy."),
    ("train", "neg", 0, 4, "Weak plot,\nweaker acting."),
    ("test", "pos", 5, 8, "Charming."),
    ("test", "pos", 1, 7, "Funny enough."),
    ("test", "neg", 10, 1, "Awful."),
    ("test", "neg", 2, 3, "Tedious."),
]
NOISE = {  # in the real archive too, and none of it is a labelled review
    "aclImdb/README": "Large Movie Review Dataset v1.0",
    "aclImdb/imdb.vocab": "the\nand\n",
    "aclImdb/train/unsup/0_0.txt": "An unlabelled review.",
    "aclImdb/train/urls_pos.txt": "http://www.imdb.com/title/tt0000000/usercomments",
    "aclImdb/train/labeledBow.feat": "9 0:1",
}


def archive_members(reviews=REVIEWS) -> dict[str, str]:
    files = {f"aclImdb/{s}/{p}/{i}_{r}.txt": text for s, p, i, r, text in reviews}
    return {**files, **NOISE}


def write_archive(path, members: dict[str, str], seed: int = 0):
    """A .tar.gz of `members` in shuffled order (the real archive is not sorted by label)."""
    names = sorted(members)
    random.Random(seed).shuffle(names)
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            data = members[name].encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_folder(root, members: dict[str, str]):
    for name, text in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def archive(tmp_path):
    return write_archive(tmp_path / "aclImdb_v1.tar.gz", archive_members())


def expected_frame(split: str) -> pd.DataFrame:
    rows = [(text, {"neg": 0, "pos": 1}[p], r, i) for s, p, i, r, text in REVIEWS if s == split]
    frame = pd.DataFrame(rows, columns=["text", "label", "rating", "review_id"])
    return frame.sort_values(["label", "review_id"], ignore_index=True).astype(
        {"label": "int64", "rating": "int8", "review_id": "int32"}
    )


def test_cli_turns_the_archive_into_hub_shaped_parquet(archive, tmp_path):
    out = run_cli(
        "prepare-imdb", str(archive), "--output", str(tmp_path / "imdb"), "--expected-reviews", "4"
    )
    assert out.returncode == 0, out.stderr
    assert "read 8 reviews in all" in out.stdout and "LFT_DATA=" in out.stdout
    for split in ("train", "test"):
        frame = pd.read_parquet(tmp_path / "imdb" / f"{split}.parquet")
        pd.testing.assert_frame_equal(frame, expected_frame(split))
    train = pd.read_parquet(tmp_path / "imdb" / "train.parquet")
    assert train["label"].tolist() == [0, 0, 1, 1]  # sorted by label, like the Hub
    assert train["review_id"].tolist() == [0, 7, 3, 12]


def test_the_extracted_folder_gives_the_same_frames(archive, tmp_path):
    folder = write_folder(tmp_path / "extracted", archive_members())
    from_archive = prepare_imdb.read_imdb(archive)
    for source in (folder, folder / "aclImdb"):  # the folder holding aclImdb, or aclImdb itself
        frames = prepare_imdb.read_imdb(source)
        for split in ("train", "test"):
            pd.testing.assert_frame_equal(frames[split], from_archive[split])


def test_progress_is_reported_while_reading(archive, monkeypatch):
    monkeypatch.setattr(prepare_imdb, "PROGRESS_EVERY", 3)
    counts = []
    prepare_imdb.read_imdb(archive, progress=counts.append)
    assert counts == [3, 6]


def test_counts_are_checked_against_aclimdb(archive, tmp_path):
    out = run_cli("prepare-imdb", str(archive), "--output", str(tmp_path / "imdb"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "The train split has 4 reviews, 2 of them positive; aclImdb v1 has 25,000" in out.stderr
    assert not (tmp_path / "imdb").exists()  # nothing written from an incomplete archive


def test_an_unbalanced_split_is_refused(tmp_path):
    reviews = [*REVIEWS[:3], ("train", "pos", 4, 9, "Great."), *REVIEWS[4:]]
    frames = prepare_imdb.read_imdb(write_folder(tmp_path, archive_members(reviews)))
    with pytest.raises(LFTError, match="train split has 4 reviews, 3 of them positive"):
        prepare_imdb.check_counts(frames, expected=4)
    prepare_imdb.check_counts({"test": frames["test"]}, expected=4)  # the balanced one passes


@pytest.mark.parametrize("kept", [0.05, 0.25, 0.5, 0.9])
def test_a_truncated_download_says_to_download_again(archive, tmp_path, kept):
    # A cut inside a member fails the read; a cut between members reads as a short archive.
    data = archive.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(LFTError, match="download it again"):
        prepare_imdb.check_counts(prepare_imdb.read_imdb(truncated), expected=4)


def test_a_missing_path_names_the_download(tmp_path):
    out = run_cli("prepare-imdb", str(tmp_path / "aclImdb_v1.tar.gz"))
    assert out.returncode == 2
    assert "does not exist" in out.stderr and prepare_imdb.DOWNLOAD_URL in out.stderr
