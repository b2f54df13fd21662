"""The ways to fine-tune that we compare: untrained baseline, head only, LoRA, full."""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .errors import LFTError
from .modeling import head_modules, load_model, wrap_with_lora

VARIANTS = ("baseline", "head", "lora", "full")
TRAINED = ("head", "lora", "full")


def freeze_all_but(model, module_names) -> None:
    """Train only parameters under the named modules (by last name component)."""
    for name, param in model.named_parameters():
        parts = name.split(".")
        param.requires_grad = any(m in parts for m in module_names)


def prepare_variant(name: str, config: Config):
    """A fresh model for `name` and the learning rate to train it with (None: not trained)."""
    if name not in VARIANTS:
        raise LFTError(f"Unknown variant `{name}`: choose from {', '.join(VARIANTS)}.")
    model = load_model(config)
    if name == "baseline":
        return model, None
    if name == "lora":
        return wrap_with_lora(model, config), config.learning_rate
    if name == "head":
        freeze_all_but(model, head_modules(model))
        return model, config.learning_rate
    for param in model.parameters():
        param.requires_grad = True
    return model, config.full_learning_rate


def save_variant(model, name: str, directory: str | Path, tokenizer=None) -> float | None:
    """Save what must be kept to reuse the variant (safetensors); return its size in MB."""
    from safetensors.torch import save_file

    if name == "baseline":
        return None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if name == "head":
        heads = head_modules(model)
        state = {
            k: v.detach().contiguous()
            for k, v in model.state_dict().items()
            if any(m in k.split(".") for m in heads)
        }
        save_file(state, str(directory / "head.safetensors"))
    else:
        model.save_pretrained(str(directory), safe_serialization=True)
    size = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return round(size / 2**20, 3)


SAVE_DIRS = {"lora": "adapter", "full": "full_model", "head": "head"}
