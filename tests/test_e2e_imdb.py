"""End to end on real IMDb with the real (offline) MiniLM encoder, at smoke size."""

import numpy as np
import pytest

from lft_helpers.config import make_config
from lft_helpers.experiment import run_experiment
from lft_helpers.shipping import rescore_saved_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smoke_run(imdb_dir, minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    config = make_config(
        "smoke", model=minilm, data=str(imdb_dir), output_dir=str(out), eval_size=48
    )
    return out, run_experiment(config, log=lambda _: None)


def test_real_data_subsets_are_balanced(smoke_run, imdb_dir):
    import pandas as pd

    _, results = smoke_run
    labels = pd.read_parquet(imdb_dir / "test.parquet", columns=["label"])["label"].to_numpy()
    picked = labels[results["eval_indices"]]
    assert picked.sum() == len(picked) // 2
    assert results["model_label"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_saved_adapter_reproduces_accuracy_on_eval_indices(smoke_run):
    out, results = smoke_run
    rescored = rescore_saved_run(out)
    # results.json rounds to 6 decimals; one review more or less would move it by 1/48.
    assert rescored["accuracy"] == pytest.approx(results["runs"]["lora"]["accuracy"], abs=1e-6)
    probs = np.array(results["runs"]["lora"]["positive_prob"])
    logits = rescored["logits"]
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(shifted[:, 1] / shifted.sum(-1), probs, atol=2e-2)


def test_lora_trains_a_small_fraction(smoke_run):
    _, results = smoke_run
    lora = results["runs"]["lora"]
    assert 0 < lora["trainable_pct"] < 2
    assert lora["saved_size_mb"] < 5
