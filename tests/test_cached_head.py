"""The head-only probe on its frozen encoder's states computed once: the same head as when the
encoder runs at every step, on every architecture that takes this path, and resumable."""

import pytest
import torch
import transformers
from transformers import BertForSequenceClassification, DistilBertForSequenceClassification

from conftest import keep_middle_checkpoint, tiny_bert_config, tiny_distilbert_config
from lft_helpers import training
from lft_helpers.experiment import freeze_all_but, prepare_model
from lft_helpers.modeling import FIRST_TOKEN_HEADS, head_modules, load_model
from lft_helpers.pipeline import prepare_data
from lft_helpers.specs import Spec
from lft_helpers.training import can_cache_encoder, train_model


@pytest.mark.parametrize(
    ("make_config", "model_class"),
    [
        (tiny_distilbert_config, DistilBertForSequenceClassification),
        (tiny_bert_config, BertForSequenceClassification),
    ],
)
def test_each_head_alone_gives_the_models_own_logits(make_config, model_class):
    torch.manual_seed(0)
    model = model_class(make_config(vocab_size=40, num_labels=2)).eval()
    ids = torch.randint(5, 40, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        states = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        got = FIRST_TOKEN_HEADS[model.config.model_type](model, states)
    torch.testing.assert_close(got, expected)


def head_only(config):
    transformers.set_seed(0)  # the same head for every path compared
    model = load_model(config)
    freeze_all_but(model, head_modules(model))
    return model


def fit(model, prepared, config, out, **options):
    return train_model(
        model, prepared.train, prepared.val, prepared.tokenizer, config, out, **options
    )


def test_cached_states_train_the_same_head_as_the_encoder_at_every_step(
    tiny_config, tmp_path, monkeypatch
):
    prepared = prepare_data(tiny_config)
    cached = head_only(tiny_config)
    start = {n: p.detach().clone() for n, p in cached.named_parameters()}
    once = fit(cached, prepared, tiny_config, tmp_path / "once")
    monkeypatch.setattr(training, "can_cache_encoder", lambda model, config: False)
    every = head_only(tiny_config)
    each_step = fit(every, prepared, tiny_config, tmp_path / "every")

    assert once["training_path"]["encoder"] == "states cached"
    assert each_step["training_path"]["encoder"] == "every step"
    trained = [n for n, p in cached.named_parameters() if p.requires_grad]
    assert any(not torch.equal(dict(cached.named_parameters())[n], start[n]) for n in trained)
    for (name, a), (_, b) in zip(cached.named_parameters(), every.named_parameters(), strict=True):
        if name in trained:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
        else:
            assert torch.equal(a, start[name]), name
    assert once["history"]["eval_steps"] == each_step["history"]["eval_steps"]
    torch.testing.assert_close(
        once["history"]["eval_loss"], each_step["history"]["eval_loss"], rtol=1e-3, atol=1e-4
    )


def test_only_a_frozen_encoder_without_dropout_is_cached(tiny_config):
    assert can_cache_encoder(head_only(tiny_config), tiny_config)
    # With --plain-training the frozen model keeps its dropout: other states at every pass.
    assert not can_cache_encoder(head_only(tiny_config), tiny_config.replace(fast_training=False))
    bitfit = Spec("bitfit", "head", trainable=("bias",))
    for spec in (bitfit, Spec("lora", "peft"), Spec("full", "full")):
        assert not can_cache_encoder(prepare_model(spec, tiny_config), tiny_config), spec.name


def test_a_resumed_head_only_run_ends_with_the_same_head(tiny_config, tmp_path):
    config = tiny_config.replace(save_steps=4, save_total_limit=10)
    prepared = prepare_data(config)
    whole = head_only(config)
    fit(whole, prepared, config, tmp_path / "ck")
    middle = keep_middle_checkpoint(tmp_path / "ck")  # in the second epoch: the order must match
    resumed = head_only(config)
    result = fit(resumed, prepared, config, tmp_path / "ck", resume=True, log=lambda line: None)
    assert result["resumed_from_step"] == middle
    assert result["training_path"]["encoder"] == "states cached"
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), name
