"""Looking at the data and the models before trusting any number (notebook helpers)."""

from __future__ import annotations

import numpy as np

from .analysis import excerpt
from .evaluation import predict_logits
from .labels import LABEL_NAMES


def peek_reviews(dataset, n: int = 3, chars: int = 220, seed: int = 0):
    """A few reviews, shortened, with their labels."""
    import pandas as pd

    rows = np.random.default_rng(seed).choice(
        len(dataset), size=min(n, len(dataset)), replace=False
    )
    return pd.DataFrame(
        {
            "label": [LABEL_NAMES[dataset[int(i)]["label"]].lower() for i in rows],
            "review (start)": [excerpt(dataset[int(i)]["text"], chars) for i in rows],
        }
    )


def class_balance(subsets):
    """Rows and share of positive reviews in each subset actually used."""
    import pandas as pd

    rows = []
    for name in ("train", "val", "eval"):
        labels = np.asarray(getattr(subsets, name)["label"])
        rows.append({"subset": name, "reviews": len(labels), "positive share": labels.mean()})
    return pd.DataFrame(rows).set_index("subset")


def length_summary(lengths, max_length: int) -> dict:
    """Token-length quantiles and the share of reviews truncation cuts."""
    lengths = np.asarray(lengths)
    return {
        "median_tokens": int(np.median(lengths)),
        "p90_tokens": int(np.percentile(lengths, 90)),
        "max_tokens": int(lengths.max()),
        "truncated_share": float((lengths > max_length).mean()),
    }


def sample_logits(model, dataset, tokenizer, n: int = 16) -> np.ndarray:
    """fp32 logits on the first `n` reviews, for before/after comparisons of one model."""
    subset = dataset.select(range(min(n, len(dataset))))
    return predict_logits(model, subset, tokenizer, precision="fp32")
