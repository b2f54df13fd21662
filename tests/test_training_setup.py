"""`run` and the bench train through one Trainer setup (`training.build_trainer`): given the
batches a run trained on, in the run's order, the bench's steps train the same weights, bit for
bit."""

import torch
import transformers
from datasets import Dataset

from lft_helpers.bench.train_speed import build_variant, run_steps
from lft_helpers.pipeline import prepare_data
from lft_helpers.training import fast_training_callbacks, train_model


def quiet(*args, **kwargs):
    pass


def plain(value):
    return value.tolist() if hasattr(value, "tolist") else value


def test_bench_steps_train_the_weights_run_trains(tiny_config, tmp_path, monkeypatch):
    # No validation: every batch the collator sees is a training batch. No dropout at all (the
    # fast path turns the model's off; LoRA's is 0), so no random masks enter the comparison.
    config = tiny_config.replace(val_size=0, precision="fp32", lora_dropout=0.0)
    assert config.fast_training
    prepared = prepare_data(config)
    seen = []

    class Recording(transformers.DataCollatorWithPadding):
        """The batches as the Trainer hands them over, in order, as plain lists."""

        def __call__(self, features):
            seen.append([{k: plain(v) for k, v in f.items()} for f in features])
            return super().__call__(features)

    monkeypatch.setattr(transformers, "DataCollatorWithPadding", Recording)

    run_model, learning_rate = build_variant(config.model, config, "lora")
    train_model(
        run_model, prepared.train, None, prepared.tokenizer, config, tmp_path / "run", log=quiet
    )
    run_batches = list(seen)
    seen.clear()
    size = config.train_batch_size
    assert len(prepared.train) % size == 0  # full batches only: the bench cuts none
    assert len(run_batches) == len(prepared.train) // size * int(config.epochs)
    assert {len(batch) for batch in run_batches} == {size}

    # The bench's path, on those batches in that order.
    features = Dataset.from_list([row for batch in run_batches for row in batch])
    rows = [list(range(i * size, (i + 1) * size)) for i in range(len(run_batches))]
    bench_model, bench_rate = build_variant(config.model, config, "lora")
    assert bench_rate == learning_rate
    run_steps(
        bench_model,
        features,
        prepared.tokenizer,
        config,
        learning_rate=learning_rate,
        rows=rows,
        pad_to=None,
        callbacks=fast_training_callbacks(config),
    )
    assert seen == run_batches

    fresh, _ = build_variant(config.model, config, "lora")
    start = dict(fresh.named_parameters())
    trained = dict(run_model.named_parameters())
    moved = 0
    for name, param in bench_model.named_parameters():
        assert torch.equal(param, trained[name]), name
        moved += not torch.equal(param, start[name])
    assert moved > 0  # training changed the weights, so their equality says something
