"""Error analysis on synthetic labels and probabilities, where the right answers are known."""

import math

import numpy as np
import pytest

from lft_helpers.analysis import (
    accuracy_by_length,
    check_predictions,
    confident_mistakes,
    discordant_counts,
    excerpt,
    length_bin_names,
    predicted_labels,
    split_p_value,
)


def test_split_p_value_is_two_sided_binomial():
    assert split_p_value(0, 0) == 1.0
    assert split_p_value(5, 5) == 1.0
    # all 6 one way: 2 * 0.5**6
    assert split_p_value(6, 0) == pytest.approx(2 / 64)
    assert split_p_value(141, 138) > 0.8
    assert split_p_value(100, 50) < 0.001


def test_discordant_counts_without_labels_match_the_labelled_count():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    probs_a, probs_b = rng.random(400), rng.random(400)
    right_a = (probs_a > 0.5) == labels
    right_b = (probs_b > 0.5) == labels
    only_a, only_b = discordant_counts(int(right_a.sum()), int(right_b.sum()), probs_a, probs_b)
    assert only_a == int(np.sum(right_a & ~right_b))
    assert only_b == int(np.sum(right_b & ~right_a))


def test_check_predictions_marks_each_answer():
    answers = [
        {"text": "loved it", "label": "POSITIVE", "score": 0.9},
        {"text": "pretty but dull", "label": "POSITIVE", "score": 0.96},
    ]
    table = check_predictions(answers, ["positive", "negative"])
    assert table["right"].tolist() == [True, False]
    assert table["review"].tolist() == ["loved it", "pretty but dull"]
    with pytest.raises(ValueError):
        check_predictions(answers, ["positive"])


def test_a_tie_is_negative_like_argmax():
    assert predicted_labels([0.5, 0.50001, 0.49999]).tolist() == [0, 1, 0]


def test_confident_mistakes_are_the_surest_wrong_answers():
    texts = [f"review number {i} " + "word " * 100 for i in range(6)]
    labels = [1, 0, 1, 0, 1, 0]
    probs = [0.9, 0.6, 0.02, 0.99, 0.3, 0.1]  # wrong: 1 (0.6), 2 (0.98), 3 (0.99), 4 (0.7)
    table = confident_mistakes(texts, labels, probs, k=3, excerpt_chars=40)
    assert list(table.index) == [3, 2, 4]
    assert table["true label"].tolist() == ["NEGATIVE", "POSITIVE", "POSITIVE"]
    assert table["predicted"].tolist() == ["POSITIVE", "NEGATIVE", "NEGATIVE"]
    np.testing.assert_allclose(table["confidence"], [0.99, 0.98, 0.7])
    np.testing.assert_allclose(table["positive prob"], [0.99, 0.02, 0.3])
    assert table.loc[3, "excerpt"].startswith("review number 3")
    assert len(table.loc[3, "excerpt"]) <= 42


def test_no_mistakes_gives_an_empty_table():
    table = confident_mistakes(["a", "b"], [0, 1], [0.1, 0.9])
    assert table.empty
    assert "excerpt" in table.columns


def test_excerpt_flattens_markup_and_cuts_at_a_word():
    text = "Great film.<br /><br />The   acting\nwas superb and the plot moved along"
    assert excerpt(text, 200) == "Great film. The acting was superb and the plot moved along"
    short = excerpt(text, 24)
    assert short == "Great film. The acting …"
    assert len(excerpt("word " * 100, 160)) <= 160


def test_length_bins_are_named_by_token_range():
    assert length_bin_names((128, 256, 512)) == ["<=128", "129-256", "257-512", ">512"]


def test_accuracy_by_length_counts_edges_into_the_right_bins():
    counts = [10, 128, 129, 256, 257, 512, 513, 900]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    probs = [0.9, 0.8, 0.2, 0.7, 0.1, 0.3, 0.8, 0.9]  # wrong: 129 tokens, 513, 900
    table = accuracy_by_length(counts, labels, probs)
    assert table["reviews"].tolist() == [2, 2, 2, 2]
    assert table["accuracy"].tolist() == [1.0, 0.5, 1.0, 0.0]
    assert table["errors"].tolist() == [0, 1, 0, 2]
    assert table["share"].sum() == 1.0
    assert (table["acc low"] <= table["accuracy"]).all()
    assert (table["accuracy"] <= table["acc high"]).all()
    assert table.loc[">512", "min tokens"] == 513


def test_an_empty_length_bin_has_no_accuracy():
    table = accuracy_by_length([5, 6], [0, 1], [0.2, 0.8], bins=(64, 128))
    assert table["reviews"].tolist() == [2, 0, 0]
    assert math.isnan(table.loc["65-128", "accuracy"])


def test_accuracy_by_length_plot_is_written(tmp_path):
    from lft_helpers.plotting import plot_accuracy_by_length

    table = accuracy_by_length([50, 200, 300, 700], [1, 0, 1, 0], [0.9, 0.4, 0.2, 0.7])
    fig = plot_accuracy_by_length(table, tmp_path / "length.png", max_length=256)
    assert (tmp_path / "length.png").stat().st_size > 0
    hatched = [bar.get_hatch() for bar in fig.axes[0].patches]
    assert hatched == ["", "", "//", "//"]
