"""Scoring a model on the eval subset: accuracy, F1, loss and speed (scikit-learn metrics)."""

from __future__ import annotations

import time

import numpy as np
from scipy.special import log_softmax, softmax
from scipy.stats import binomtest

from .runtime import autocast, device_name, resolve_precision


def compute_metrics(labels, logits) -> dict:
    """Accuracy, F1 (positive class) and mean cross-entropy from logits."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    preds = logits.argmax(axis=-1)
    log_probs = log_softmax(logits, axis=-1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, zero_division=0)),
        "eval_loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
    }


def positive_prob(logits) -> np.ndarray:
    """Each review's probability of the positive class (label 1), from two-class logits."""
    # In the logits' own dtype (float32 from `predict_logits`): the probabilities results files
    # record stay exactly those of earlier runs.
    return softmax(np.asarray(logits), axis=-1)[:, 1]


def batch_order(lengths, batch_size: int, *, sort_by_length: bool) -> list[np.ndarray]:
    """Row indices per batch; sorted by length so each batch pads to a similar size."""
    order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(lengths))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batch_outputs(
    forward,
    dataset,
    tokenizer,
    width: int,
    batch_size: int,
    precision: str,
    *,
    sort_by_length: bool = True,
    pad_to: int | None = None,
) -> np.ndarray:
    """`forward(batch)` ([rows, width]) for every review of a tokenized dataset, as float32 in
    the dataset's own order, under `precision`'s autocast and without gradients.

    Batches are sorted by length and padded to their longest review unless `sort_by_length` is
    False or `pad_to` pads every one to that length (the naive configuration).
    """
    import torch

    device = device_name()
    input_ids = dataset["input_ids"]
    lengths = np.array([len(ids) for ids in input_ids])
    out = np.zeros((len(lengths), width), dtype=np.float32)
    padding = "max_length" if pad_to else "longest"
    with torch.inference_mode(), autocast(precision):
        for rows in batch_order(lengths, batch_size, sort_by_length=sort_by_length):
            batch = tokenizer.pad(
                {"input_ids": [input_ids[i] for i in rows]},
                padding=padding,
                max_length=pad_to,
                return_tensors="pt",
            )
            out[rows] = forward({k: v.to(device) for k, v in batch.items()}).float().cpu()
    return out


def predict_logits(
    model,
    dataset,
    tokenizer,
    batch_size: int = 64,
    precision: str = "auto",
    *,
    sort_by_length: bool = True,
    pad_to: int | None = None,
) -> np.ndarray:
    """Logits for a tokenized dataset, returned in the dataset's own order.

    The fast path (the default) sorts by length, pads each batch to its longest review and runs
    under autocast; `pad_to` and `sort_by_length=False` give the naive configuration.
    """
    import torch

    precision = resolve_precision(precision)
    model.eval().to(device_name())
    if next(model.parameters()).dtype != torch.float32:
        precision = "fp32"  # weights already cast (inference.cast_weights): no autocast
    return batch_outputs(
        lambda batch: model(**batch).logits,
        dataset,
        tokenizer,
        model.config.num_labels,
        batch_size,
        precision,
        sort_by_length=sort_by_length,
        pad_to=pad_to,
    )


def first_token_states(model, dataset, tokenizer, batch_size: int, precision: str) -> np.ndarray:
    """The encoder's final state of each review's first token ([CLS]), [reviews, width]: all
    that the classification heads of `modeling.FIRST_TOKEN_HEADS` read of a review."""
    precision = resolve_precision(precision)
    model.eval().to(device_name())
    encoder = model.base_model
    return batch_outputs(
        lambda batch: encoder(**batch).last_hidden_state[:, 0],
        dataset,
        tokenizer,
        model.config.hidden_size,
        batch_size,
        precision,
    )


def evaluate_model(model, dataset, tokenizer, batch_size=64, precision="auto", **kwargs) -> dict:
    """Metrics plus evaluation time and samples/s; `logits` kept for later analysis."""
    # One untimed batch first: kernel selection and allocator warm-up are not throughput.
    predict_logits(model, dataset.select(range(min(2, len(dataset)))), tokenizer, 2, precision)
    start = time.perf_counter()
    logits = predict_logits(model, dataset, tokenizer, batch_size, precision, **kwargs)
    runtime = time.perf_counter() - start
    metrics = compute_metrics(dataset["labels"], logits)
    metrics.update(
        eval_runtime_s=round(runtime, 3),
        eval_samples_per_second=round(len(logits) / runtime, 3),
        eval_samples=len(logits),
    )
    return {"metrics": metrics, "logits": logits}


def accuracy_interval(accuracy: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (95% by default) for an accuracy measured on `n` reviews."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(round(accuracy * n), n).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def confusion(labels, logits) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(
        np.asarray(labels), np.asarray(logits).argmax(-1), labels=[0, 1]
    ).tolist()
