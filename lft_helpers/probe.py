"""The linear-probe baseline: scikit-learn logistic regression on the frozen encoder's pooled
embeddings (MTEB's ImdbClassification protocol), packaged as a classifier that the evaluation
code scores like any fine-tuned model.

Pooling follows the model's own convention: a sentence-transformers model (such as the offline
MiniLM) says in its `modules.json` and `1_Pooling/config.json` how it pools (MiniLM: the mean
of the token states, then unit length; its CLS token and pooler were never trained). Any other
model is pooled as its classification head reads it: the [CLS] token's final state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .config import Config
from .evaluation import batch_outputs
from .hub import is_local
from .modeling import OFFLINE_ALIAS, resolve_model_source
from .runtime import PeakMemory, device_name, resolve_precision

POOLING_MODES = {  # sentence-transformers' Pooling options -> ours
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
CLS_CONVENTION = {
    "pooling": "cls",
    "normalize": False,
    "source": "no sentence-transformers pooling config: the [CLS] token's final state, as the "
    "model's classification head reads it",
}
MAX_ITER = 1000


def model_file(model_name: str, filename: str) -> Path | None:
    """A file of the model's folder (local, the offline package, or the Hub cache), or None.

    Never a download: the model itself is loaded by then, so a Hub model is in the cache.
    """
    if is_local(model_name) or model_name == OFFLINE_ALIAS:
        path = Path(resolve_model_source(model_name)) / filename
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model_name, filename)
    except ValueError:  # not a repo id
        return None
    return Path(found) if isinstance(found, str) else None


def pooling_convention(model_name: str) -> dict:
    """How `model_name` turns token states into one embedding: its sentence-transformers
    pooling where it ships one, else the [CLS] token (`source` says which and why)."""
    modules_path = model_file(model_name, "modules.json")
    if modules_path is None:
        return dict(CLS_CONVENTION)
    modules = json.loads(modules_path.read_text(encoding="utf-8"))
    pooling = next((m for m in modules if m.get("type", "").endswith(".Pooling")), None)
    pooling_path = pooling and model_file(model_name, f"{pooling['path']}/config.json")
    if pooling_path is None:
        return dict(CLS_CONVENTION)
    options = json.loads(pooling_path.read_text(encoding="utf-8"))
    mode = next((ours for key, ours in POOLING_MODES.items() if options.get(key)), None)
    if mode is None:
        return dict(CLS_CONVENTION)
    return {
        "pooling": mode,
        "normalize": any(m.get("type", "").endswith(".Normalize") for m in modules),
        "source": f"the model's sentence-transformers config ({pooling['path']}/config.json)",
    }


def pool(hidden, attention_mask, convention: dict):
    """One vector per review from the final token states [batch, tokens, width]."""
    import torch

    if convention["pooling"] == "cls":
        pooled = hidden[:, 0]
    else:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if convention["pooling"] == "max":
            pooled = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1) if convention["normalize"] else pooled


def make_probe_model(model, convention: dict):
    """`model`'s frozen encoder, its pooling and one linear unit `classifier` (the logistic
    regression, set by `fit_probe`). Its logits are [0, z], so the softmax gives sigmoid(z):
    the regression's own probability."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class PooledLinearProbe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = model.config
            self.convention = dict(convention)
            self.encoder = model.base_model.requires_grad_(False)
            self.classifier = torch.nn.Linear(model.config.hidden_size, 1)

        def embed(self, input_ids, attention_mask=None, **kwargs):
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            return pool(out.last_hidden_state, attention_mask, self.convention)

        def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
            z = self.classifier(self.embed(input_ids, attention_mask).to(self.classifier.weight))
            return SequenceClassifierOutput(logits=torch.cat([torch.zeros_like(z), z], dim=-1))

    return PooledLinearProbe()


def pooled_embeddings(probe, dataset, tokenizer, batch_size: int, precision: str) -> np.ndarray:
    """The probe's pooled embeddings of a tokenized dataset, in the dataset's order (batches
    sorted by length and run as `evaluation.predict_logits` runs them)."""
    probe.eval().to(device_name())
    return batch_outputs(
        lambda batch: probe.embed(**batch),
        dataset,
        tokenizer,
        probe.config.hidden_size,
        batch_size,
        resolve_precision(precision),
    )


def fold_scaler(scaler, regression) -> tuple[np.ndarray, float]:
    """Weight and bias on raw embeddings of a logistic regression fitted on standardised ones:
    w . (x - mean) / scale + b  =  (w / scale) . x + (b - sum(w * mean / scale))."""
    weight = regression.coef_[0] / scaler.scale_
    return weight, float(regression.intercept_[0] - np.dot(weight, scaler.mean_))


def fit_probe(probe, train_dataset, tokenizer, config: Config, *, C: float = 1.0) -> dict:
    """Fit the probe's linear unit: logistic regression (L2, strength 1/C) on the standardised
    pooled embeddings of the training reviews. The time covers embedding and fitting."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    with PeakMemory() as memory:
        features = pooled_embeddings(
            probe, train_dataset, tokenizer, config.eval_batch_size, config.precision
        )
        labels = np.asarray(train_dataset["labels"])
        scaler = StandardScaler().fit(features)
        regression = LogisticRegression(C=C, max_iter=MAX_ITER, random_state=config.seed)
        regression.fit(scaler.transform(features), labels)
    runtime = time.perf_counter() - start
    weight, bias = fold_scaler(scaler, regression)
    with torch.no_grad():
        probe.classifier.weight.copy_(torch.as_tensor(weight, dtype=torch.float32)[None])
        probe.classifier.bias.fill_(bias)
    iterations = int(regression.n_iter_[0])
    return {
        "C": C,
        **{k: probe.convention[k] for k in ("pooling", "normalize")},
        "pooling_source": probe.convention["source"],
        "train_runtime_s": round(runtime, 2),
        "train_samples_per_second": round(len(labels) / max(runtime, 1e-9), 3),
        "peak_memory_mb": round(memory.peak_mb, 1),
        "memory_increase_mb": round(memory.peak_mb - memory.start_mb, 1),
        "memory_device": device_name(),
        "precision": resolve_precision(config.precision),
        "solver_iterations": iterations,
        "converged": iterations < MAX_ITER,
    }
