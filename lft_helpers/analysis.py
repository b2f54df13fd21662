"""Where the model goes wrong: confusion table, most confident mistakes, accuracy by length,
and the two tests that decide whether a difference is worth a sentence.

Every function takes plain arrays (labels, positive-class probabilities as stored per eval review
in the results file, token counts) and returns a DataFrame or numbers; plotting lives in
plotting.py, sentences in reporting.py.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
from scipy.stats import binomtest

from .evaluation import accuracy_interval
from .labels import LABEL_NAMES

LENGTH_BINS = (128, 256, 512)


def predicted_labels(positive_prob) -> np.ndarray:
    # Strictly above one half, as argmax over two logits picks the negative class on a tie.
    return (np.asarray(positive_prob, dtype=float) > 0.5).astype(int)


def excerpt(text: str, chars: int = 200) -> str:
    """The start of a review on one line, IMDb's `<br />` tags removed, cut at a word so that
    it holds at most `chars` characters, the closing " …" included."""
    return textwrap.shorten(re.sub(r"<br\s*/?>", " ", text), width=chars, placeholder=" …")


def split_p_value(a: int, b: int) -> float:
    """Two-sided binomial test: how likely counts as uneven as `a` against `b` are when each
    event is equally likely to fall either way (1.0 when there are none)."""
    return float(binomtest(a, a + b).pvalue) if a + b else 1.0


def discordant_counts(correct_a: int, correct_b: int, positive_prob_a, positive_prob_b):
    """Reviews only model A gets right, and reviews only model B gets right (McNemar's b, c).

    Where two binary classifiers disagree, exactly one is right; so the disagreements `d` and the
    difference in correct answers give both counts (b + c = d, b - c = correct_a - correct_b)
    without the labels, which the results file does not store.
    """
    disagree = int(np.sum(predicted_labels(positive_prob_a) != predicted_labels(positive_prob_b)))
    only_a = min(max(round((disagree + correct_a - correct_b) / 2), 0), disagree)
    return only_a, disagree - only_a


def confident_mistakes(texts, labels, positive_prob, k: int = 5, excerpt_chars: int = 200):
    """The `k` wrong predictions the model was surest of, most confident first."""
    import pandas as pd

    labels = np.asarray(labels)
    probs = np.asarray(positive_prob, dtype=float)
    preds = predicted_labels(probs)
    confidence = np.where(preds == 1, probs, 1 - probs)
    wrong = np.flatnonzero(preds != labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:k]
    return pd.DataFrame(
        {
            "review": [int(i) for i in order],
            "excerpt": [excerpt(texts[int(i)], excerpt_chars) for i in order],
            "true label": [LABEL_NAMES[labels[i]] for i in order],
            "predicted": [LABEL_NAMES[preds[i]] for i in order],
            "positive prob": probs[order],
            "confidence": confidence[order],
        }
    ).set_index("review")


def length_bin_names(bins) -> list[str]:
    """'<=128', '129-256', '257-512', '>512' for bins (128, 256, 512)."""
    edges = list(bins)
    names = [f"<={edges[0]}"]
    names += [f"{lo + 1}-{hi}" for lo, hi in zip(edges, edges[1:], strict=False)]
    return names + [f">{edges[-1]}"]


def accuracy_by_length(token_counts, labels, positive_prob, bins=LENGTH_BINS):
    """Accuracy (with its 95% interval) per review-length bin, counted in untruncated tokens."""
    import pandas as pd

    counts = np.asarray(token_counts)
    correct = predicted_labels(positive_prob) == np.asarray(labels)
    which = np.digitize(counts, np.asarray(bins), right=True)  # bin 0 holds counts <= bins[0]
    lows = [0, *(b + 1 for b in bins)]
    highs = [*bins, None]
    rows = []
    for i, name in enumerate(length_bin_names(bins)):
        hits, n = correct[which == i], int(np.sum(which == i))
        acc = float(hits.mean()) if n else float("nan")
        low, high = accuracy_interval(acc, n) if n else (float("nan"), float("nan"))
        rows.append(
            {
                "length (tokens)": name,
                "min tokens": lows[i],
                "max tokens": highs[i],
                "reviews": n,
                "share": n / max(len(counts), 1),
                "accuracy": acc,
                "acc low": low,
                "acc high": high,
                "errors": int(n - hits.sum()),
            }
        )
    table = pd.DataFrame(rows).set_index("length (tokens)")
    table["max tokens"] = table["max tokens"].astype("Int64")  # the open last bin has none
    return table


def check_predictions(outputs, expected):
    """A pipeline's answers (`shipping.classify_with_pipeline`) next to the label each review was
    written to have, with whether the model got it right."""
    import pandas as pd

    if len(outputs) != len(expected):
        raise ValueError(f"{len(outputs)} answers for {len(expected)} expected labels")
    return pd.DataFrame(
        {
            "review": [out["text"] for out in outputs],
            "expected": [label.upper() for label in expected],
            "predicted": [out["label"] for out in outputs],
            "score": [float(out["score"]) for out in outputs],
        }
    ).assign(right=lambda t: t["expected"] == t["predicted"])
