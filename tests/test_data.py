import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_reviews, write_dataset
from lft_helpers.data import (
    describe_overlap,
    find_split_files,
    load_imdb,
    select_subsets,
    stratified_indices,
    stratified_indices_avoiding,
)
from lft_helpers.errors import LFTError
from lft_helpers.hub import readable_path


def test_stratified_indices_are_balanced_seeded_and_shuffled():
    labels = np.array([0] * 500 + [1] * 500)  # sorted by label, like IMDb
    picked = stratified_indices(labels, 100, seed=3)
    assert len(set(picked)) == 100
    assert labels[picked].sum() == 50
    assert np.array_equal(picked, stratified_indices(labels, 100, seed=3))
    assert not np.array_equal(picked, stratified_indices(labels, 100, seed=4))
    assert 0 < labels[picked[:50]].sum() < 50  # classes interleaved, not blocks


def test_stratified_indices_respect_exclusions_and_limits():
    labels = np.array([0] * 20 + [1] * 20)
    first = stratified_indices(labels, 30, seed=0)
    second = stratified_indices(labels, 10, seed=1, exclude=first)
    assert not set(first) & set(second)
    with pytest.raises(LFTError, match="only"):
        stratified_indices(labels, 12, seed=2, exclude=first)


def test_subsets_are_disjoint_balanced_and_eval_is_stable(tiny_config):
    data = load_imdb(tiny_config)
    subsets = select_subsets(data, tiny_config)
    assert not set(subsets.train_indices) & set(subsets.val_indices)
    assert sum(subsets.train["label"]) == tiny_config.train_size // 2
    assert sum(subsets.eval["label"]) == tiny_config.eval_size // 2
    again = select_subsets(data, tiny_config.replace(train_size=20, learning_rate=1e-3))
    assert np.array_equal(subsets.eval_indices, again.eval_indices)
    assert subsets.eval["text"] == [data["test"][int(i)]["text"] for i in subsets.eval_indices]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_local_csv_and_jsonl_load(tmp_path, tiny_config, fmt):
    directory = write_dataset(tmp_path / fmt, n_train=30, n_test=20, fmt=fmt)
    data = load_imdb(tiny_config.replace(data=str(directory)))
    assert data["train"].num_rows == 30 and data["test"].num_rows == 20
    assert data["train"].column_names == ["text", "label"]


def test_missing_directory_and_split_are_explained(tmp_path):
    with pytest.raises(LFTError, match="does not exist"):
        find_split_files(tmp_path / "nope")
    (tmp_path / "train.csv").write_text("text,label\nok,1\n")
    with pytest.raises(LFTError, match="no test file"):
        find_split_files(tmp_path)


def test_avoiding_swaps_only_the_picks_it_must():
    labels = np.array([0] * 300 + [1] * 300)
    plain = stratified_indices(labels, 100, seed=5)
    avoid = plain[:7]  # seven rows the plain draw picked, of either class
    picked = stratified_indices_avoiding(labels, 100, seed=5, avoid=avoid)
    assert not set(picked) & set(avoid) and len(set(picked)) == 100
    assert (picked != plain).sum() == 7 and np.array_equal(picked[7:], plain[7:])
    assert labels[picked].sum() == 50  # still balanced: a swap keeps the class
    assert np.array_equal(stratified_indices_avoiding(labels, 100, 5, avoid=[]), plain)
    far = np.setdiff1d(np.arange(600), plain)[:50]  # rows the plain draw did not pick
    assert np.array_equal(stratified_indices_avoiding(labels, 100, 5, avoid=far), plain)


@pytest.fixture
def leaky_data(tmp_path):
    """Synthetic splits where 20 test rows repeat a train review (with other spacing), and each
    split repeats 3 of its own rows."""
    train = synthetic_reviews(120, seed=0)
    test = synthetic_reviews(80, seed=1)
    for k in range(20):
        source = train[k * 6]
        test[k * 4] = {
            "text": "  " + source["text"].replace(" ", "   ") + "\n",
            "label": source["label"],
        }
    for rows, k in ((train, 1), (test, 3)):
        for j in range(3):
            rows[k + 20 + 2 * j] = dict(rows[k + 2 * j + 40])  # same label parity, 20 rows away
    directory = tmp_path / "leaky"
    directory.mkdir()
    pd.DataFrame(train).to_parquet(directory / "train.parquet")
    pd.DataFrame(test).to_parquet(directory / "test.parquet")
    return directory, {k * 4 for k in range(20)}


def test_duplicate_reviews_are_counted_and_left_out_of_eval(tiny_config, leaky_data):
    directory, repeated = leaky_data
    config = tiny_config.replace(data=str(directory), eval_size=50)
    data = load_imdb(config)
    subsets = select_subsets(data, config)
    assert not repeated & set(subsets.eval_indices.tolist())
    assert len(set(subsets.eval_indices.tolist())) == 50 and sum(subsets.eval["label"]) == 25
    overlap = subsets.overlap
    assert (overlap["test_in_train"], overlap["within_train"], overlap["within_test"]) == (20, 3, 3)
    assert overlap["eval_duplicates"] == "excluded"
    assert overlap["subsets"]["eval_in_train_val"] == 0
    line = describe_overlap(overlap)
    assert line.startswith("Warning: duplicate reviews") and "\n" not in line
    assert "20 test reviews repeat a train review, left out of the eval subset" in line
    assert "3 repeats within train, 3 within test" in line


def test_keep_eval_duplicates_draws_the_plain_subset(tiny_config, leaky_data):
    directory, repeated = leaky_data
    config = tiny_config.replace(data=str(directory), eval_size=50, keep_eval_duplicates=True)
    data = load_imdb(config)
    subsets = select_subsets(data, config)
    plain = stratified_indices(data["test"]["label"], 50, config.seed + 2)
    assert np.array_equal(subsets.eval_indices, plain)
    kept = repeated & set(plain.tolist())
    assert kept and subsets.overlap["eval_duplicates"] == "kept"
    assert subsets.overlap["subsets"]["eval_in_train_val"] <= len(kept)
    assert "kept in the eval subset" in describe_overlap(subsets.overlap)


def test_clean_data_gets_no_warning_and_the_same_eval_subset(tiny_config):
    data = load_imdb(tiny_config)
    subsets = select_subsets(data, tiny_config)
    plain = stratified_indices(data["test"]["label"], tiny_config.eval_size, tiny_config.seed + 2)
    assert np.array_equal(subsets.eval_indices, plain)
    assert describe_overlap(subsets.overlap) is None


@pytest.mark.parametrize(
    "given,shown",
    [
        ("data/imdb", "data/imdb"),  # inside the current folder: relative
        ("../shared/imdb", "../shared/imdb"),  # one level up: still relative and shorter
        ("../../far/away", "/far/away"),  # climbing twice reads worse than the absolute path
    ],
)
def test_readable_path(tmp_path, monkeypatch, given, shown):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    expected = shown if not shown.startswith("/") else str(tmp_path / shown.lstrip("/"))
    assert readable_path(given) == expected
    assert readable_path(cwd / given) == expected  # absolute input: same answer
