import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from lft_helpers.evaluation import (
    accuracy_interval,
    batch_order,
    compute_metrics,
    predict_logits,
)
from lft_helpers.modeling import load_model
from lft_helpers.pipeline import prepare_data


def test_metrics_match_sklearn_and_loss_is_cross_entropy():
    labels = np.array([0, 1, 1, 0, 1])
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.2, 0.1], [-1.0, 3.0]])
    metrics = compute_metrics(labels, logits)
    preds = logits.argmax(-1)
    assert metrics["accuracy"] == accuracy_score(labels, preds)
    assert metrics["f1"] == f1_score(labels, preds)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = -np.log(probs[np.arange(5), labels]).mean()
    assert abs(metrics["eval_loss"] - expected) < 1e-9


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


def test_wilson_interval_brackets_the_estimate():
    low, high = accuracy_interval(0.85, 2000)
    assert low < 0.85 < high
    assert 0.02 < high - low < 0.04
