import numpy as np
import pytest

from lft_helpers.evaluation import (
    accuracy_interval,
    batch_order,
    compute_metrics,
    predict_logits,
)
from lft_helpers.modeling import load_model
from lft_helpers.pipeline import prepare_data


def test_metrics_from_logits_by_hand():
    labels = np.array([0, 1, 1, 0, 1])
    # argmax: 0, 1, 0, 0, 1 -> 4 of 5 right; positives: 2 found, none false, 1 missed
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.2, 0.1], [-1.0, 3.0]])
    metrics = compute_metrics(labels, logits)
    assert metrics["accuracy"] == 0.8
    assert metrics["f1"] == 0.8  # precision 1, recall 2/3
    # cross-entropy of the true class is log(1 + exp(other logit - true logit))
    margins = [0.0 - 2.0, 0.0 - 1.0, 1.0 - 0.5, 0.1 - 0.2, -1.0 - 3.0]
    expected = np.mean([np.log1p(np.exp(m)) for m in margins])
    assert abs(metrics["eval_loss"] - expected) < 1e-12


def test_batches_cover_every_row_once():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = batch_order(lengths, 3, sort_by_length=True)
    flat = np.concatenate(batches)
    assert sorted(flat) == list(range(7))
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_fast_path_matches_naive_predictions(tiny_config):
    prepared = prepare_data(tiny_config)
    model = load_model(tiny_config)
    naive = predict_logits(
        model, prepared.eval, prepared.tokenizer, 8, "fp32", sort_by_length=False, pad_to=48
    )
    fast = predict_logits(model, prepared.eval, prepared.tokenizer, 8, "fp32")
    np.testing.assert_allclose(naive, fast, atol=1e-4)
    assert np.array_equal(naive.argmax(-1), fast.argmax(-1))


@pytest.mark.parametrize(
    ("hits", "n", "low", "high"),
    # Wilson score intervals worked in Newcombe (1998), Statistics in Medicine 17:857-872
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611)],
)
def test_wilson_interval_matches_published_values(hits, n, low, high):
    got = accuracy_interval(hits / n, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_narrows_with_more_reviews():
    low, high = accuracy_interval(0.85, 2000)
    assert low < 0.85 < high
    assert 0.02 < high - low < 0.04
    wide_low, wide_high = accuracy_interval(0.85, 200)
    assert wide_high - wide_low > 3 * (high - low)
