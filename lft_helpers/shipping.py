"""Reusing a trained adapter: reload it with plain PEFT and re-score the saved eval reviews."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import load_imdb, tokenize_dataset
from .evaluation import compute_metrics, predict_logits
from .reporting import load_results


def load_adapter(adapter_dir: str | Path):
    """The base model plus adapter and head, exactly as a user would load it with PEFT."""
    import transformers
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    model = AutoPeftModelForSequenceClassification.from_pretrained(str(adapter_dir))
    return model.eval(), AutoTokenizer.from_pretrained(str(adapter_dir))


def rescore_saved_run(output_dir: str | Path, precision: str = "auto") -> dict:
    """Reload `<output_dir>/adapter` and score it on the run's own `eval_indices`."""
    from .config import Config

    results = load_results(output_dir)
    config = Config(**{**results["config"], "target_modules": results["config"]["target_modules"]})
    model, tokenizer = load_adapter(Path(output_dir) / "adapter")
    test = load_imdb(config)["test"].select(results["eval_indices"])
    encoded = tokenize_dataset(test, tokenizer, config.max_length)
    logits = predict_logits(model, encoded, tokenizer, config.eval_batch_size, precision)
    return {**compute_metrics(encoded["labels"], logits), "logits": logits}


def predict_texts(model, tokenizer, texts, max_length: int = 512) -> list[dict]:
    """Label and probability for new reviews."""
    import torch

    enc = tokenizer(
        list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        probs = torch.softmax(model(**enc).logits.float(), dim=-1).numpy()
    labels = model.config.id2label if hasattr(model, "config") else {0: "NEGATIVE", 1: "POSITIVE"}
    return [
        {
            "text": t,
            "label": labels.get(int(np.argmax(p)), str(np.argmax(p))),
            "positive_prob": float(p[1]),
        }
        for t, p in zip(texts, probs, strict=True)
    ]
