"""Reusing a trained adapter: reload it with plain PEFT and re-score the saved eval reviews."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from .analysis import predicted_labels
from .config import Config
from .data import load_imdb, tokenize_as_configured
from .errors import LFTError
from .evaluation import compute_metrics, evaluate_model, positive_prob, predict_logits
from .inference import inference_batch_size, prepare_inference_model
from .labels import LABEL_NAMES
from .modeling import quiet_peft
from .reporting import collect_environment, load_results
from .runtime import device_name
from .specs import Spec


def load_adapter(adapter_dir: str | Path):
    """The base model plus adapter and head, exactly as a user would load it with PEFT."""
    import transformers
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    with quiet_peft():
        model = AutoPeftModelForSequenceClassification.from_pretrained(str(adapter_dir))
    # The adapter keeps no label names (the base loads as LABEL_0/1); a merged copy would
    # carry those generic names into every pipeline() answer.
    base_config = model.get_base_model().config
    base_config.id2label = dict(enumerate(LABEL_NAMES))
    base_config.label2id = {name: i for i, name in enumerate(LABEL_NAMES)}
    return model.eval(), AutoTokenizer.from_pretrained(str(adapter_dir))


def load_saved_model(directory: str | Path, spec: Spec):
    """A saved run's model and tokenizer, ready to score: a PEFT adapter with its head (as
    `load_adapter`), or a fully fine-tuned model."""
    if spec.train == "peft":
        return load_adapter(directory)
    if spec.train != "full":
        raise LFTError(
            f"Spec `{spec.name}` saves only part of a model ({spec.train}); reload the base "
            "model and its saved weights instead."
        )
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(directory))
    return model.eval(), AutoTokenizer.from_pretrained(str(directory))


def saved_eval_reviews(results: dict, config: Config):
    """The raw reviews a finished run scored: its data's test split at its `eval_indices`."""
    return load_imdb(config)["test"].select(results["eval_indices"])


def score_reviews(model, tokenizer, reviews, config: Config) -> np.ndarray:
    """Logits for raw reviews, tokenized and scored as `config` says (max length, truncation
    and its head tokens, eval batch size, precision): how a run scored its own."""
    encoded = tokenize_as_configured(reviews, tokenizer, config)
    return predict_logits(model, encoded, tokenizer, config.eval_batch_size, config.precision)


def rescore_saved_run(output_dir: str | Path, precision: str = "auto") -> dict:
    """Reload `<output_dir>/adapter` and score it on the run's own `eval_indices`."""
    results = load_results(output_dir)
    config = Config.from_dict(results["config"]).replace(precision=precision)
    model, tokenizer = load_adapter(Path(output_dir) / "adapter")
    reviews = saved_eval_reviews(results, config)
    logits = score_reviews(model, tokenizer, reviews, config)
    return {**compute_metrics(reviews["label"], logits), "logits": logits}


def check_rescore(output_dir: str | Path, precision: str = "auto") -> dict:
    """`rescore_saved_run` set against what the run recorded: does the saved adapter, reloaded
    with plain PEFT, give the same accuracy on the same reviews? Probabilities may move in
    the last digits (another batch order or precision); the accuracy must not."""
    results = load_results(output_dir)
    recorded = results["runs"]["lora"]
    rescored = rescore_saved_run(output_dir, precision)
    probs = positive_prob(rescored["logits"])
    before = np.asarray(recorded["positive_prob"])
    changed = predicted_labels(probs) != predicted_labels(before)
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": results["created"],
        "eval_reviews": len(results["eval_indices"]),
        "recorded_accuracy": recorded["accuracy"],
        "accuracy": round(float(rescored["accuracy"]), 6),
        "same_accuracy": round(float(rescored["accuracy"]), 6) == recorded["accuracy"],
        "changed_predictions": int(changed.sum()),
        "max_prob_difference": round(float(np.abs(probs - before).max()), 6),
        "precision": precision,
        "environment": collect_environment(),
    }


def describe_rescore(check: dict) -> str:
    verdict = "the same accuracy" if check["same_accuracy"] else "a DIFFERENT accuracy"
    return (
        f"Reloaded adapter on the run's {check['eval_reviews']:,} eval reviews: accuracy "
        f"{check['accuracy']:.6f} against {check['recorded_accuracy']:.6f} recorded, {verdict}; "
        f"{check['changed_predictions']} predictions changed, probabilities within "
        f"{check['max_prob_difference']:.2g}."
    )


def compare_logits(model_a, model_b, dataset, tokenizer, batch_size: int = 64) -> dict:
    """Largest logit difference between two models on a tokenized dataset, and argmax agreement.

    Both run in fp32: under autocast the rounding alone would exceed the 1e-4 a merge must meet.
    """
    a = predict_logits(model_a, dataset, tokenizer, batch_size, precision="fp32")
    b = predict_logits(model_b, dataset, tokenizer, batch_size, precision="fp32")
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "argmax_agree": bool((a.argmax(-1) == b.argmax(-1)).all()),
        "reviews": len(a),
    }


def check_reload(peft_model, tokenizer, dataset, adapter_dir: str | Path, batch_size=64) -> dict:
    """Save the adapter, load it into a fresh base model, and compare predictions."""
    adapter_dir = Path(adapter_dir)
    peft_model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    reloaded, _ = load_adapter(adapter_dir)
    return compare_logits(peft_model, reloaded, dataset, tokenizer, batch_size)


def merge_adapter(peft_model):
    """A plain transformers model with the adapter folded into its weights and the trained head
    in place; the PEFT model itself is left unmerged."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload().eval()


def merged_head_matches(peft_model, merged) -> dict[str, bool]:
    """For each fully trained head module (`modules_to_save`, e.g. BERT's pooler and classifier),
    whether the merged model holds the trained copy rather than the original weights."""
    import torch
    from peft.utils import ModulesToSaveWrapper

    kept = dict(merged.named_modules())
    matches = {}
    for name, module in peft_model.get_base_model().named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            trained = module.modules_to_save[module.active_adapters[0]].state_dict()
            merged_state = kept[name].state_dict()
            matches[name] = trained.keys() == merged_state.keys() and all(
                torch.equal(value, merged_state[key]) for key, value in trained.items()
            )
    return matches


def save_merged(merged, tokenizer, directory: str | Path) -> float:
    """Save the merged model and tokenizer (safetensors); return the weights' size in MB."""
    directory = Path(directory)
    merged.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return round(sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 1e6, 3)


def classify_with_pipeline(model_dir: str | Path, texts, max_length: int | None = None):
    """Classify texts with a plain `transformers.pipeline`: no PEFT, no lft_helpers needed.

    Long texts are truncated to `max_length` (default: the tokenizer's own limit)."""
    import transformers

    transformers.logging.set_verbosity_error()
    classifier = transformers.pipeline(
        "text-classification", model=str(model_dir), tokenizer=str(model_dir)
    )
    limit = {} if max_length is None else {"max_length": max_length}
    outputs = classifier(list(texts), truncation=True, **limit)
    return [{"text": t, **out} for t, out in zip(texts, outputs, strict=True)]


def time_inference(model, dataset, tokenizer, batch_size=64, precision="auto") -> dict:
    """Samples per second over the dataset, warmed up and timed as `evaluate_model` times every
    run's scoring; the logits are kept so faster paths can be checked against slower ones."""
    scored = evaluate_model(model, dataset, tokenizer, batch_size, precision)
    metrics = scored["metrics"]
    return {
        "seconds": metrics["eval_runtime_s"],
        "samples_per_second": metrics["eval_samples_per_second"],
        "batch_size": batch_size,
        "logits": scored["logits"],
    }


def compare_inference_speed(unmerged, merged, dataset, tokenizer, batch_size=64, precision="auto"):
    """Inference speed on the same reviews of the unmerged PEFT model, the merged one, and a
    copy of the merged one prepared for pure inference (`inference.prepare_inference_model`:
    cast weights, and on a CPU its batch size and, without AMX, row-wise attention), with how
    many predictions each faster path shares with the unmerged model."""
    import copy

    sample = dataset.select(range(min(inference_batch_size(device_name()), len(dataset))))
    ready, how = prepare_inference_model(copy.deepcopy(merged), sample, tokenizer, precision)
    speeds = {
        "unmerged": time_inference(unmerged, dataset, tokenizer, batch_size, precision),
        "merged": time_inference(merged, dataset, tokenizer, batch_size, precision),
        "prepared": time_inference(ready, dataset, tokenizer, how["batch_size"], precision),
    }
    reference = speeds["unmerged"]["samples_per_second"]
    labels = speeds["unmerged"]["logits"].argmax(-1)
    for name in ("merged", "prepared"):
        entry = speeds[name]
        entry["speedup"] = round(entry["samples_per_second"] / reference, 3)
        entry["same_predictions"] = round(float((entry["logits"].argmax(-1) == labels).mean()), 4)
    for entry in speeds.values():
        del entry["logits"]
    return {
        **speeds,
        "speedup": speeds["merged"]["speedup"],
        "prepared_with": how,
        "reviews": len(dataset),
    }
