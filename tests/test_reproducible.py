"""The same config and seed give identical numbers and weights on the same machine."""

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_run_config
from lft_helpers.experiment import run_experiment

# Everything in a run's record that does not measure time or memory.
DETERMINISTIC = (
    "accuracy",
    "f1",
    "eval_loss",
    "positive_prob",
    "confusion_matrix",
    "trainable_params",
    "train_loss",
    "history",
)


def run_twice_and_once_more(config, tmp_path):
    quiet = [].append
    first = run_experiment(config.replace(output_dir=str(tmp_path / "a")), log=quiet)
    second = run_experiment(config.replace(output_dir=str(tmp_path / "b")), log=quiet)
    other = run_experiment(
        config.replace(output_dir=str(tmp_path / "c"), seed=config.seed + 1), ("lora",), log=quiet
    )
    return first, second, other


def adapter(path) -> dict:
    return load_file(str(path / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def results(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    config = tiny_run_config(
        tiny_model_dir,
        synthetic_data_dir,
        train_size=32,
        val_size=16,
        eval_size=40,
        epochs=1.0,
        learning_rate=5e-3,
    )
    root = tmp_path_factory.mktemp("reproducible")
    return run_twice_and_once_more(config, root), root


def test_same_seed_same_metrics_and_weights(results):
    (first, second, _), root = results
    assert first["eval_indices"] == second["eval_indices"]
    assert first["config"] == {**second["config"], "output_dir": first["config"]["output_dir"]}
    for variant in ("baseline", "lora"):
        for key in DETERMINISTIC:
            assert first["runs"][variant].get(key) == second["runs"][variant].get(key), key
    assert first["runs"]["lora"]["history"]["train_loss"], "the comparison must cover training"
    a, b = adapter(root / "a"), adapter(root / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_another_seed_changes_the_numbers(results):
    # Guards the test above: it must be able to see a difference when there is one.
    (first, _, other), root = results
    assert other["eval_indices"] != first["eval_indices"]
    assert other["runs"]["lora"]["history"] != first["runs"]["lora"]["history"]
    a, c = adapter(root / "a"), adapter(root / "c")
    assert any(not torch.equal(a[k], c[k]) for k in a)
