"""Fitting a model with the Hugging Face `Trainer`, measuring time and memory."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from .config import Config
from .errors import LFTError
from .evaluation import first_token_states
from .modeling import FIRST_TOKEN_HEADS, head_modules, model_type
from .runtime import (
    PeakMemory,
    configure_allocator,
    device_name,
    resolve_precision,
    torch_dtype,
)


def micro_batch_limit(config: Config) -> int:
    """Most reviews per forward pass (0: the whole batch). Not automatic on any device: on a
    CPU at max length 512, parts of 8 measured 1.16x in short probes but 0.94-0.99x in the
    committed bench (docs/performance.md), so whole batches stay the default."""
    return config.micro_batch_size


def micro_batches(batch_size: int, most: int) -> tuple[int, int]:
    """(reviews per forward pass, passes per batch): `batch_size` in the fewest equal parts of
    at most `most` reviews (0: the whole batch), so every part weighs the same in the mean."""
    if not most or most >= batch_size:
        return batch_size, 1
    parts = next(k for k in range(-(-batch_size // most), batch_size + 1) if batch_size % k == 0)
    return batch_size // parts, parts


def make_training_args(config: Config, output_dir: str | Path, learning_rate: float, **extra):
    """`TrainingArguments` with current names, plain-text progress and no external loggers."""
    import torch
    from transformers import TrainingArguments

    precision = resolve_precision(config.precision)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    micro, parts = micro_batches(config.train_batch_size, micro_batch_limit(config))
    kwargs = dict(
        output_dir=str(output_dir),
        # The length-grouped sampler groups micro-batch x accumulation steps: each optimizer
        # step sees the same reviews whatever the micro-batch.
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=parts,
        per_device_eval_batch_size=config.eval_batch_size,
        num_train_epochs=config.epochs,
        learning_rate=learning_rate,
        weight_decay=config.weight_decay,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        eval_strategy="steps" if config.val_size else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        report_to="none",
        label_names=["labels"],
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )
    # The classification loss is a plain mean: token-count averaging across processes would
    # multiply it (and its gradient) by the world size under DDP (transformers 5 does so).
    if "average_tokens_across_devices" in fields:
        kwargs["average_tokens_across_devices"] = False
    # Renamed across transformers releases: warmup ratio and length-grouped batches.
    if "warmup_ratio" in fields:
        kwargs["warmup_ratio"] = config.warmup_ratio
    else:
        kwargs["warmup_steps"] = config.warmup_ratio
    if "train_sampling_strategy" in fields:
        kwargs["train_sampling_strategy"] = "group_by_length"
    else:
        kwargs["group_by_length"] = True
    kwargs.update(extra)
    return TrainingArguments(**kwargs)


DROPOUT_SCOPES = ("auto", "off", "attention", "kept")
FP32_ATTENTION = "lft_fp32_sdpa"


def fp32_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, computed in fp32 when training on a CPU under autocast.

    On a CPU without AMX (AVX-512 BF16 measured), PyTorch's fused attention kernel ran forward
    and backward together faster in fp32 than in bf16 (docs/performance.md), while a forward
    pass alone gained nothing: validation passes keep the low precision. fp32 is the reference
    precision, so no number gets less exact.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    if dtype == torch.float32 or query.device.type != "cpu" or not module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
    return out.to(dtype), weights


def register_fp32_attention() -> str:
    """Make `FP32_ATTENTION` a valid `attn_implementation` (with SDPA's masks); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(FP32_ATTENTION, fp32_attention)
    AttentionMaskInterface.register(FP32_ATTENTION, sdpa_mask)
    return FP32_ATTENTION


def transformers_model(model):
    """The transformers model inside `model` (a PEFT model wraps one)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def use_fp32_attention(model) -> str | None:
    """Switch a model on SDPA to `fp32_attention`; its previous implementation, or None where
    it stays as it is (another implementation, or a model that only knows its own)."""
    inner = transformers_model(model)
    config = getattr(inner, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return None
    try:
        inner.set_attn_implementation(register_fp32_attention())
    except (ValueError, ImportError):
        return None
    return "sdpa" if inner.config._attn_implementation == FP32_ATTENTION else None


# Dropout masks drawn as 16-bit integers: an element is dropped when its draw is under
# round(p * 2^16), so the rate is p to within 2^-17, and the kept ones are scaled by that rate's
# own 1 / (1 - rate), so the mean stays exact.
MASK_LEVELS = 1 << 16


def dropout_mask(shape, p: float):
    """Which elements a dropout at rate `p` drops (True), drawn by numpy's PCG64 generator.

    On a CPU, PyTorch's `bernoulli_` (its dropout's mask) filled about 75 million elements a
    second, 18% of a full fine-tuning step of MiniLM (docs/performance.md); PCG64's 16-bit
    integers are about five times faster. Each mask's seed comes from PyTorch's global
    generator, so a seeded run draws the same masks, and a resumed run too (the Trainer keeps
    that generator's state in its checkpoints).
    """
    import numpy as np
    import torch

    seed = int(torch.randint(0, 2**62, (1,)))
    draws = np.random.Generator(np.random.PCG64(seed)).integers(
        0, MASK_LEVELS, int(np.prod(shape)), dtype=np.uint16
    )
    return torch.from_numpy(draws < round(p * MASK_LEVELS)).view(shape)


def make_masked_dropout():
    """Dropout with a mask from `dropout_mask`: the same function as `torch.nn.Dropout` in
    training (kept elements scaled by 1 / (1 - rate)), and its backward a masked product too."""
    import torch

    class MaskedDropout(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, dropped, scale: float):
            ctx.save_for_backward(dropped)
            ctx.scale = scale
            return (x * scale).masked_fill_(dropped, 0.0)

        @staticmethod
        def backward(ctx, grad):
            (dropped,) = ctx.saved_tensors
            return (grad * ctx.scale).masked_fill_(dropped, 0.0), None, None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        dropped = dropout_mask(x.shape, self.p)
        rate = round(self.p * MASK_LEVELS) / MASK_LEVELS
        return MaskedDropout.apply(x, dropped.to(x.device), 1.0 / (1.0 - rate))

    return forward


def make_fast_training_callback(
    precision: str,
    *,
    frozen_weights: bool = True,
    dropout="auto",
    fp32_attention: bool = True,
    fast_masks: bool = True,
):
    """Changes for the length of `Trainer.train()`, undone when it ends; `applied` says what
    they were.

    - Frozen linear weights held in `precision` (bf16 or fp16): autocast casts a weight that
      needs no gradient afresh at every use, forward and backward, because it caches only casts
      of trainable leaves. Trainable weights (adapters, head, a fully fine-tuned model) stay
      fp32 for the optimizer. Matmuls see exactly the weights they saw before.
    - The model's dropout `off` (LoRA's is left to `lora_dropout`), or only that on the
      attention probabilities (`attention`): on a CPU the random masks cost more than the
      matmuls around them, and without attention dropout SDPA takes its fused (flash) kernel
      instead of the math path. `auto` is `off` where the model is frozen and `attention` where
      every weight trains: there the hidden dropout regularises the weights being fitted, and
      the bench measured too little gain (1.01-1.11x) and too large a loss change for it.
    - With `fp32_attention`, on a CPU under bf16 or fp16 autocast, attention computed in fp32
      (`fp32_attention`): faster there than SDPA's low-precision CPU kernel, and exact.
    - With `fast_masks`, on a CPU, the dropout left on draws its masks with `dropout_mask`
      (`make_masked_dropout`): the same dropout, with masks from a faster generator.
    """
    import types

    import torch
    from transformers import TrainerCallback

    if dropout not in DROPOUT_SCOPES:
        raise LFTError(f"Unknown dropout scope `{dropout}`: choose from {DROPOUT_SCOPES}.")
    mixed = precision in ("bf16", "fp16")
    low = torch_dtype(precision) if frozen_weights and mixed else None
    attention_in_fp32 = fp32_attention and mixed and device_name() == "cpu"
    masked = make_masked_dropout() if fast_masks and device_name() == "cpu" else None

    def dropouts(model, scope: str):
        if scope == "kept":
            return []
        if scope == "off":  # the model's own; LoRA's follows config.lora_dropout
            return [
                m
                for name, m in model.named_modules()
                if isinstance(m, torch.nn.Dropout) and ".lora_dropout." not in f".{name}."
            ]
        return [
            m.dropout
            for m in model.modules()
            if type(m).__name__.endswith("SelfAttention")
            and isinstance(getattr(m, "dropout", None), torch.nn.Dropout)
        ]

    def drawn(model) -> str:
        left = any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
        return "torch" if left else "none drawn"

    class FastTraining(TrainerCallback):
        def __init__(self):
            self.weights, self.rates, self.masked, self.applied = [], [], [], {}
            self.attention = None  # (model, implementation to restore)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            scope = dropout
            if scope == "auto":
                frozen = any(not p.requires_grad for p in model.parameters())
                scope = "off" if frozen else "attention"
            for module in dropouts(model, scope):
                self.rates.append((module, module.p))
                module.p = 0.0
            if low is not None:
                for module in model.modules():
                    weight = getattr(module, "weight", None)
                    if (
                        isinstance(module, torch.nn.Linear)
                        and not weight.requires_grad
                        and weight.dtype == torch.float32
                    ):
                        self.weights.append((weight, weight.data))
                        weight.data = weight.data.to(low)
            previous = use_fp32_attention(model) if attention_in_fp32 else None
            if previous is not None:
                self.attention = (model, previous)
            if masked is not None:
                for module in model.modules():
                    if isinstance(module, torch.nn.Dropout) and module.p > 0:
                        module.forward = types.MethodType(masked, module)
                        self.masked.append(module)
            self.applied = {
                "frozen_weights": precision if self.weights else "fp32",
                "model_dropout": {"off": "off", "attention": "attention only off"}.get(
                    scope, "kept"
                ),
                "attention": "fp32" if previous is not None else "as the model's",
                "dropout_masks": "numpy PCG64" if self.masked else drawn(model),
            }

        def on_train_end(self, args, state, control, **kwargs):
            for weight, full in self.weights:
                weight.data = full
            for module, rate in self.rates:
                module.p = rate
            if self.attention is not None:
                model, previous = self.attention
                transformers_model(model).set_attn_implementation(previous)
            for module in self.masked:
                del module.forward  # the class's own again
            self.weights, self.rates, self.masked, self.attention = [], [], [], None

    return FastTraining()


def fast_training_callbacks(config: Config) -> list:
    """The fast training path as `config` asks for it (none with --plain-training)."""
    if not config.fast_training:
        return []
    return [make_fast_training_callback(resolve_precision(config.precision))]


def describe_training_path(
    config: Config, callbacks, *, freed_memory_kept: bool, encoder_cached: bool = False
) -> dict:
    """What results.json records about how a model was trained: what the fast training
    callbacks did (their `applied`), or the plain path, and whether the frozen encoder ran once
    per review (`encoder`: "states cached") or at every step."""
    applied = {
        "frozen_weights": "fp32",
        "model_dropout": "kept",
        "attention": "as the model's",
        "dropout_masks": "torch",
    }
    for callback in callbacks:
        applied.update(getattr(callback, "applied", {}))
    micro, parts = micro_batches(config.train_batch_size, micro_batch_limit(config))
    return {
        "fast_training": config.fast_training,
        **applied,
        "lora_dropout": config.lora_dropout,
        "micro_batch_size": micro,
        "accumulation_steps": parts,
        "freed_memory_kept": freed_memory_kept,
        "encoder": "states cached" if encoder_cached else "every step",
    }


def can_cache_encoder(model, config: Config) -> bool:
    """Whether only the classification head trains, on an encoder whose output for a review is
    the same at every step, through a head that `FIRST_TOKEN_HEADS` can run alone.

    The fast path turns the frozen model's dropout off; with --plain-training it stays on and
    every pass draws other states, so there the encoder runs at every step as before.
    """
    if not config.fast_training or model_type(model) not in FIRST_TOKEN_HEADS:
        return False
    heads = head_modules(model)  # a PEFT method's own weights sit outside them
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    return bool(trained) and all(any(m in name.split(".") for m in heads) for name in trained)


def make_cached_head_model(model):
    """`model`'s classification head alone, taking each review's first-token state from the
    frozen encoder (`first_token`) in place of its tokens, with the model's own loss.

    The head-only probe then runs its encoder once per review instead of at every step and
    validation pass. The head modules are `model`'s own, so training trains them in place.
    """
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    head = FIRST_TOKEN_HEADS[model_type(model)]

    class CachedEncoderHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        # `length` (the review's token count) is for the length-grouped sampler, which sees
        # only the columns that forward takes; the states need no padding.
        def forward(self, first_token, labels=None, length=None):
            logits = head(self.model, first_token)
            loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return CachedEncoderHead()


def encode_reviews(model, dataset, tokenizer, config: Config):
    """A tokenized dataset as `make_cached_head_model` takes it: first-token states, labels and
    each review's token count (so batches group by length as the reviews' would)."""
    from datasets import Dataset

    states = first_token_states(model, dataset, tokenizer, config.eval_batch_size, config.precision)
    return Dataset.from_dict(
        {
            "first_token": states,
            "labels": dataset["labels"],
            "length": [len(ids) for ids in dataset["input_ids"]],
        }
    ).with_format("torch")


def make_progress_callback(log=print):
    """One short plain-text line per logging step: readable in a notebook, a file or CI."""
    from transformers import TrainerCallback

    class PlainProgress(TrainerCallback):
        last_loss = float("nan")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            if "loss" in logs:
                self.last_loss = logs["loss"]
            # One line per validation pass (or per log step when there is no validation).
            if "eval_loss" in logs or ("loss" in logs and args.eval_strategy == "no"):
                where = f"step {state.global_step}/{state.max_steps} (epoch {state.epoch:.2f})"
                parts = f"training loss {self.last_loss:.4f}"
                if "eval_loss" in logs:
                    parts += f", validation loss {logs['eval_loss']:.4f}"
                log(f"  {where}: {parts}")

    return PlainProgress()


def extract_history(log_history) -> dict:
    """Training and validation loss per step, for plotting and the results file."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    val = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    return {
        "train_steps": [s for s, _ in train],
        "train_loss": [round(float(v), 5) for _, v in train],
        "eval_steps": [s for s, _ in val],
        "eval_loss": [round(float(v), 5) for _, v in val],
    }


def state_bytes(model, optimizer) -> dict:
    """Bytes held in gradients and in optimizer state: what LoRA saves besides compute."""
    grad = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    opt = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            opt += sum(t.numel() * t.element_size() for t in state.values() if hasattr(t, "numel"))
    return {"grad_bytes": int(grad), "optimizer_bytes": int(opt)}


def checkpoint_step(path: Path) -> int:
    suffix = path.name.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


def find_resume_checkpoint(folder: str | Path, log=print) -> str | None:
    """The newest complete `checkpoint-N` in `folder`; one cut short by a kill is skipped.

    The Trainer writes trainer_state.json last, so a checkpoint without a readable one is partial.
    """
    folder = Path(folder)
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0]
    for path in sorted(found, key=checkpoint_step, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log(f"  skipping {path.name}: incomplete (the run stopped while saving it)")
            continue
        log(f"  resuming from {path.name}")
        return str(path)
    log("  no checkpoint to resume from: training from the start")
    return None


def training_speed(
    log_history,
    *,
    runtime_s: float,
    first_step: int,
    max_steps: int,
    samples_per_epoch: int,
    epochs: float,
) -> dict:
    """Time and training speed of this process's steps, validation passes excluded.

    After a resume from step `first_step`, this process ran only the remaining steps: the time
    covers those, so the samples counted must too (the loss history covers all steps).
    """
    after = [e for e in log_history if e.get("step", 0) > first_step]
    val_time = sum(e.get("eval_runtime", 0.0) for e in after)
    samples = samples_per_epoch * epochs * (1 - first_step / max(max_steps, 1))
    return {
        "train_runtime_s": round(runtime_s, 2),
        "val_runtime_s": round(val_time, 2),
        "train_samples_per_second": round(samples / max(runtime_s - val_time, 1e-9), 3),
    }


def make_trainer_class():
    """A `Trainer` whose length-grouped batch order depends on (seed, epoch) alone, and whose
    validation runs in order of length.

    The stock sampler draws each epoch's order from the global RNG, which a run resumed mid-epoch
    restores only after that draw: from the second epoch on, a resumed run saw other batches than
    an uninterrupted one (tests/test_resume.py). A fixed order per epoch makes resuming exact.
    """
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeededSampler(LengthGroupedSampler):
        def __init__(self, batch_size: int, lengths, seed: int):
            super().__init__(batch_size, lengths=lengths)
            self.seed = seed
            self.set_epoch(0)

        def set_epoch(self, epoch: int) -> None:  # called by the Trainer before each epoch
            self.generator = torch.Generator().manual_seed(self.seed + epoch)

    class SeededTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # A classifier's loss is its batch's mean, so under gradient accumulation the
            # Trainer must divide it by the number of micro-batches. It skips that for a model
            # whose forward takes **kwargs (it expects such a model to divide by the
            # `num_items_in_batch` it passes), and the classifiers here ignore that count: their
            # gradients would be multiplied by the accumulation steps (tests/test_micro_batches.py).
            self.model_accepts_loss_kwargs = False

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is not LengthGroupedSampler:
                return sampler
            seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
            return EpochSeededSampler(sampler.batch_size, sampler.lengths, seed)

        def _get_eval_sampler(self, eval_dataset):
            # Validation shortest first: with the stock order (random batches, since a set of
            # a few hundred reviews makes one group per batch) nearly every batch pads to the
            # longest review; the loss and metrics are means over reviews, whatever the order.
            sampler = super()._get_eval_sampler(eval_dataset)
            if type(sampler) is not LengthGroupedSampler:
                return sampler
            return sorted(range(len(sampler.lengths)), key=sampler.lengths.__getitem__)

    return SeededTrainer


def build_trainer(
    model,
    train_dataset,
    tokenizer,
    config: Config,
    output_dir: str | Path,
    *,
    learning_rate: float | None = None,
    eval_dataset=None,
    callbacks=(),
    spec_callbacks=(),
    optimizer: dict | None = None,
    log=print,
    progress: bool = True,
    in_order: bool = False,
    pad_to: int | None = None,
    collator=None,
    **training_args,
):
    """The `Trainer` of `run` (`train_model`), which the bench's timed steps use too.

    The defaults are what `run` trains with: `config`'s training arguments at `learning_rate`
    (else `config.learning_rate`), dynamic padding (`DataCollatorWithPadding`), the seeded
    length-grouped batch order, validation on `eval_dataset` when `config.val_size` asks for it,
    and as callbacks one progress line per log step (to `log`), then `callbacks` (callback
    objects: the fast training path's, the bench's clock), then the `spec_callbacks` named in
    `CALLBACKS`. `optimizer` ({"name": ..., options}) replaces AdamW with a builder from
    `OPTIMIZERS`. `collator` replaces the padding collator (the head-only probe's states need
    none).

    Only the bench sets the rest, with its reasons at its call (`bench.train_speed.run_steps`):
    `progress=False`, `in_order` (batches in the dataset's order, not length-grouped), `pad_to`
    (every batch padded to that length, not to its longest review) and `training_args`
    (`TrainingArguments` fields set over `make_training_args`'s).
    """
    from torch.utils.data import SequentialSampler
    from transformers import DataCollatorWithPadding, PrinterCallback

    args = make_training_args(
        config, output_dir, learning_rate or config.learning_rate, **training_args
    )
    hooks = {}
    if optimizer:  # the Trainer still builds its warm-up and decay schedule around it
        hooks["optimizers"] = (make_optimizer(model, optimizer, args), None)
    trainer_class = make_trainer_class()
    if in_order:

        class InOrderTrainer(trainer_class):
            def _get_train_sampler(self, train_dataset=None):
                dataset = self.train_dataset if train_dataset is None else train_dataset
                return SequentialSampler(dataset)

        trainer_class = InOrderTrainer
    if pad_to:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to)
    elif collator is None:
        collator = DataCollatorWithPadding(tokenizer)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if config.val_size else None,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=[
            *([make_progress_callback(log)] if progress else []),
            *callbacks,
            *make_callbacks(spec_callbacks),
        ],
        **hooks,
    )
    # No raw log dicts: PlainProgress says it shorter, and the bench prints none.
    trainer.remove_callback(PrinterCallback)
    return trainer


def unwrap_mixed_precision(model) -> None:
    """Mixed precision leaves `model.forward` wrapped in autocast: unwrap it after training so
    later fp32 evaluation (the merge check, the naive benchmark, the bench's loss check) really
    runs in fp32."""
    from accelerate.utils import extract_model_from_parallel

    extract_model_from_parallel(model, keep_fp32_wrapper=False)


def train_model(
    model,
    train_dataset,
    val_dataset,
    tokenizer,
    config: Config,
    output_dir: str | Path,
    learning_rate: float | None = None,
    *,
    log=print,
    resume: bool = False,
    optimizer: dict | None = None,
    callbacks=(),
) -> dict:
    """Fit `model` in place; return time, speed, memory and the loss history.

    `optimizer` ({"name": ..., options}) replaces the Trainer's AdamW with a builder from
    `OPTIMIZERS`; `callbacks` name extra callbacks from `CALLBACKS` (see `specs.Spec`).
    """
    from transformers import default_data_collator

    kept = configure_allocator(config.keep_freed_memory)
    fast = fast_training_callbacks(config)
    cached = can_cache_encoder(model, config)
    trained = make_cached_head_model(model) if cached else model
    start = time.perf_counter()
    with PeakMemory() as memory:
        if cached:  # the encoder's one pass counts in the training time and memory
            train_dataset = encode_reviews(model, train_dataset, tokenizer, config)
            if val_dataset is not None and config.val_size:
                val_dataset = encode_reviews(model, val_dataset, tokenizer, config)
        trainer = build_trainer(
            trained,
            train_dataset,
            tokenizer,
            config,
            output_dir,
            learning_rate=learning_rate,
            eval_dataset=val_dataset,
            callbacks=fast,
            spec_callbacks=callbacks,
            optimizer=optimizer,
            log=log,
            collator=default_data_collator if cached else None,
        )
        checkpoint = find_resume_checkpoint(output_dir, log) if resume else None
        output = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.perf_counter() - start
    unwrap_mixed_precision(trained)
    history = extract_history(trainer.state.log_history)
    first = checkpoint_step(Path(checkpoint)) if checkpoint else 0
    return {
        **training_speed(
            trainer.state.log_history,
            runtime_s=runtime,
            first_step=first,
            max_steps=trainer.state.max_steps,
            samples_per_epoch=len(train_dataset),
            epochs=config.epochs,
        ),
        "train_loss": round(float(output.training_loss), 5),
        "peak_memory_mb": round(memory.peak_mb, 1),
        "memory_increase_mb": round(memory.peak_mb - memory.start_mb, 1),
        "memory_device": device_name(),
        "precision": resolve_precision(config.precision),
        "training_path": describe_training_path(
            config, fast, freed_memory_kept=kept, encoder_cached=cached
        ),
        **state_bytes(model, trainer.optimizer),
        "history": history,
        **({"resumed_from_step": first} if checkpoint else {}),
        "is_main_process": bool(trainer.is_world_process_zero()),
    }


# Training hooks a spec names (`Spec.optimizer`, `Spec.callbacks`): each is written once here,
# so a method that needs one is only a spec.


def loraplus_optimizer(model, args, *, loraplus_lr_ratio: float = 16.0, **options):
    """LoRA+ (Hayou et al. 2024): AdamW with the B matrices at `loraplus_lr_ratio` times the
    learning rate of A (PEFT's `create_loraplus_optimizer`); the head keeps the base rate."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model,
        torch.optim.AdamW,
        lr=args.learning_rate,
        loraplus_lr_ratio=loraplus_lr_ratio,
        weight_decay=args.weight_decay,
        **options,
    )


OPTIMIZERS = {"loraplus": loraplus_optimizer}


def make_optimizer(model, spec_optimizer: dict, args):
    """The optimizer a spec names, built for `model` at the run's learning rate and decay."""
    options = dict(spec_optimizer)
    name = options.pop("name")
    if name not in OPTIMIZERS:
        raise LFTError(f"Unknown optimizer `{name}`: choose from {', '.join(OPTIMIZERS)}.")
    return OPTIMIZERS[name](model, args, **options)


def make_adalora_callback():
    """AdaLoRA reallocates its rank budget from each weight's gradient sensitivity, so PEFT
    needs `update_and_allocate(step)` after every optimizer step, before the gradients are
    cleared: exactly where the Trainer calls `on_optimizer_step`."""
    from transformers import TrainerCallback

    class AdaLoraAllocation(TrainerCallback):
        def on_optimizer_step(self, args, state, control, model=None, **kwargs):
            model.base_model.update_and_allocate(state.global_step)

    return AdaLoraAllocation()


CALLBACKS = {"adalora": make_adalora_callback}


def make_callbacks(names) -> list:
    """The training callbacks a spec names, in order."""
    unknown = [n for n in names if n not in CALLBACKS]
    if unknown:
        known = ", ".join(CALLBACKS)
        raise LFTError(f"Unknown training callback(s) {unknown}: choose from {known}.")
    return [CALLBACKS[n]() for n in names]
