"""What the benchmark measures on: the models (loaded, or DistilBERT-base with random weights)
and the real reviews."""

from __future__ import annotations

from ..config import Config
from ..data import load_imdb, stratified_indices, tokenize_dataset
from ..errors import LFTError
from ..modeling import OFFLINE_ALIAS, load_model, model_label, quiet_peft, wrap_with_lora

# DistilBERT-base's shape with random weights: speed does not depend on the weights, and the
# MiniLM package's tokenizer has the same 30,522-token uncased vocabulary.
RANDOM_DISTILBERT = "distilbert-base-random"
DEFAULT_MODELS = (OFFLINE_ALIAS, RANDOM_DISTILBERT)


def build_base_model(spec: str, config: Config):
    """A 2-class sequence classifier: loaded from `spec`, or DistilBERT-base with random weights.

    Every weight of a fresh model trains: this is the full fine-tuning variant as it is.
    """
    if spec != RANDOM_DISTILBERT:
        return load_model(config.replace(model=spec))
    import transformers
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    transformers.set_seed(config.seed)
    return DistilBertForSequenceClassification(DistilBertConfig(num_labels=2))


def build_lora_model(spec: str, config: Config, adapter: str | None = None):
    """The LoRA model: a trained adapter when given, else a fresh (untrained) one."""
    base = build_base_model(spec, config)
    if not adapter:
        return wrap_with_lora(base, config)
    from peft import PeftModel

    try:
        with quiet_peft():
            return PeftModel.from_pretrained(base, adapter)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise LFTError(
            f"Adapter `{adapter}` does not fit model `{model_label(spec)}` ({err}); pass the "
            "adapter trained on that model, or drop --adapter."
        ) from None


def spec_label(spec: str) -> str:
    if spec == RANDOM_DISTILBERT:
        return "distilbert-base-uncased architecture"
    return model_label(spec)


def bench_model_source(spec: str) -> str:
    """The model whose tokenizer and config sizes a benchmarked spec uses."""
    return OFFLINE_ALIAS if spec == RANDOM_DISTILBERT else spec


def select_reviews(config: Config, reviews: int, tokenizer):
    """`reviews` test-split reviews, both classes in equal share, tokenized and truncated."""
    test = load_imdb(config)["test"]
    rows = stratified_indices(test["label"], reviews, config.seed)
    return tokenize_dataset(test.select(rows), tokenizer, config.max_length)


def accuracy_note(spec: str, adapter: str | None) -> str:
    if spec == RANDOM_DISTILBERT:
        return "random weights: accuracy not reported; agreement checks the numerics only"
    if adapter:
        return "trained adapter: accuracy is meaningful"
    return (
        "untrained adapter and head: accuracy is near chance and says nothing about quality; "
        "naive/fast agreement still checks the numerics (pass --adapter for a real accuracy)"
    )
