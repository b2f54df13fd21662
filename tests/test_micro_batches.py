"""Micro-batches: a training batch run in parts, their gradients accumulated, trains as the
whole batch does, and the loss the Trainer logs is the batch's mean."""

import pytest
import torch
import transformers

from lft_helpers import training
from lft_helpers.errors import LFTError
from lft_helpers.modeling import load_model, wrap_with_lora
from lft_helpers.pipeline import prepare_data
from lft_helpers.specs import ALL_LINEAR
from lft_helpers.training import make_training_args, micro_batch_limit, micro_batches, train_model


def train(config, prepared, out):
    transformers.set_seed(0)  # the same head and adapters for both
    model = wrap_with_lora(load_model(config), config)
    result = train_model(model, prepared.train, prepared.val, prepared.tokenizer, config, out)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}, result


def test_micro_batches_train_as_the_whole_batch(tiny_config, tmp_path):
    # fp32 and no dropout (the fast path's default for a frozen model): only the split differs.
    config = tiny_config.replace(
        precision="fp32",
        target_modules=ALL_LINEAR,
        train_batch_size=8,
        learning_rate=1e-2,
        train_size=64,
        val_size=8,
        logging_steps=1,
    )
    args = make_training_args(config.replace(micro_batch_size=2), tmp_path / "args", 1e-3)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 4)
    prepared = prepare_data(config)
    whole, whole_run = train(config, prepared, tmp_path / "whole")
    parts, parts_run = train(config.replace(micro_batch_size=2), prepared, tmp_path / "parts")
    # Each optimizer step saw the same 8 reviews: one step per batch of 8, either way.
    assert whole_run["history"]["train_steps"] == parts_run["history"]["train_steps"]
    assert len(whole_run["history"]["train_steps"]) == 64 // 8 * config.epochs
    # The logged loss is the batch's mean, not the sum of its four parts' means (what the
    # Trainer reports, and trains on, when it leaves the division to a model that ignores it).
    assert parts_run["history"]["train_loss"] == pytest.approx(
        whole_run["history"]["train_loss"], abs=1e-4
    )
    transformers.set_seed(0)
    start = wrap_with_lora(load_model(config), config)
    moved = max((whole[n] - p).abs().max() for n, p in start.named_parameters() if n in whole)
    assert moved > 1e-3  # it trained: equal adapters are not trivial
    for name in whole:
        assert torch.allclose(parts[name], whole[name], atol=1e-5), name


@pytest.mark.parametrize(
    "batch, most, expected",
    [
        (16, 8, (8, 2)),
        (16, 0, (16, 1)),
        (4, 8, (4, 1)),
        (12, 8, (6, 2)),
        (10, 4, (2, 5)),
        (7, 4, (1, 7)),
    ],
)
def test_a_batch_runs_in_the_fewest_equal_parts_that_fit(batch, most, expected):
    assert micro_batches(batch, most) == expected


def test_a_negative_micro_batch_is_refused(tiny_config):
    with pytest.raises(LFTError, match="micro_batch_size"):
        tiny_config.replace(micro_batch_size=-1)


@pytest.mark.parametrize(
    "device, changes, limit",
    [
        ("cpu", dict(max_length=512), 0),  # whole batches by default: the bench saw no gain
        ("cuda", dict(max_length=512), 0),
        ("cpu", dict(max_length=512, micro_batch_size=4), 4),  # asked for, it is done anywhere
        ("cuda", dict(max_length=512, micro_batch_size=4), 4),
    ],
)
def test_micro_batches_only_when_asked(tiny_config, monkeypatch, device, changes, limit):
    monkeypatch.setattr(training, "device_name", lambda: device)
    config = tiny_config.replace(train_batch_size=16, **changes)
    assert micro_batch_limit(config) == limit
    args = make_training_args(config, "unused", 1e-3)
    size, parts = micro_batches(16, limit)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (size, parts)
