import numpy as np
import pytest

from conftest import write_dataset
from lft_helpers.data import find_split_files, load_imdb, select_subsets, stratified_indices
from lft_helpers.errors import LFTError


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
