"""The fast training path: frozen weights in the mixed precision and no dropout while training,
both undone when training ends, and a loss after a fixed number of steps within the bench's
tolerance of the plain fp32 path."""

import shutil

import pytest
import torch
import transformers
from transformers import TrainerCallback

from lft_helpers import training
from lft_helpers.bench.train_speed import LOSS_TOLERANCE, held_out_loss
from lft_helpers.modeling import load_model, wrap_with_lora
from lft_helpers.pipeline import prepare_data
from lft_helpers.specs import ALL_LINEAR
from lft_helpers.training import train_model


class Probe(TrainerCallback):
    """What the model looks like at each step's end: after the fast path's changes."""

    def __init__(self):
        self.seen = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        frozen = model.base_model.model.distilbert.transformer.layer[0].ffn.lin1.weight
        lora = model.base_model.model.distilbert.transformer.layer[0].attention.q_lin.lora_A
        dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        self.seen.append((frozen.dtype, lora["default"].weight.dtype, max(dropouts)))


def fresh_lora(config):
    transformers.set_seed(0)  # the same head and adapters for every path compared
    return wrap_with_lora(load_model(config), config)


def train(config, prepared, out, monkeypatch=None):
    model = fresh_lora(config)
    probe = Probe()
    if monkeypatch is not None:
        monkeypatch.setitem(training.CALLBACKS, "probe", lambda: probe)
    result = train_model(
        model,
        prepared.train,
        prepared.val,
        prepared.tokenizer,
        config,
        out,
        callbacks=("probe",) if monkeypatch is not None else (),
    )
    return model, result, probe


@pytest.mark.parametrize("fast", [True, False])
def test_changes_hold_while_training_and_are_undone_after(tiny_config, tmp_path, monkeypatch, fast):
    config = tiny_config.replace(precision="bf16", fast_training=fast)
    prepared = prepare_data(config)
    fresh = fresh_lora(config)
    before = {n: p.detach().clone() for n, p in fresh.named_parameters()}
    rates = [m.p for m in fresh.modules() if isinstance(m, torch.nn.Dropout)]
    assert max(rates) > 0
    model, result, probe = train(config, prepared, tmp_path / "ck", monkeypatch)
    if fast:
        assert set(probe.seen) == {(torch.bfloat16, torch.float32, 0.0)}
    else:
        assert set(probe.seen) == {(torch.float32, torch.float32, max(rates))}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for name, param in model.named_parameters():
        if not param.requires_grad:  # bit for bit the fp32 weights it started with
            assert torch.equal(param, before[name]), name
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == rates
    path = result["training_path"]
    assert path["fast_training"] is fast and path["lora_dropout"] == config.lora_dropout
    assert (path["frozen_weights"], path["model_dropout"]) == (
        ("bf16", "off") if fast else ("fp32", "kept")
    )


def test_full_fine_tuning_keeps_its_hidden_dropout(tiny_config, tmp_path):
    """Where every weight trains, only the attention dropout goes (and nothing is frozen)."""
    config = tiny_config.replace(precision="bf16")
    prepared = prepare_data(config)
    model = load_model(config).requires_grad_(True)
    rates = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    seen = []

    class Rates(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            now = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
            seen.append(now)

    args = (prepared.train, prepared.val, prepared.tokenizer, config, tmp_path / "ck")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(training.CALLBACKS, "rates", Rates)
        result = train_model(model, *args, learning_rate=1e-4, callbacks=("rates",))
    attention = {n for n in rates if n.endswith("attention.dropout")}
    assert attention and all(rates[n] > 0 for n in attention)
    for now in seen:
        assert {n for n, p in now.items() if p == 0.0} >= attention
        assert all(now[n] == rates[n] for n in rates if n not in attention)
    assert result["training_path"]["model_dropout"] == "attention only off"
    assert result["training_path"]["frozen_weights"] == "fp32"


def test_frozen_weights_in_bf16_change_no_number(tiny_config, tmp_path):
    """Autocast rounds a frozen fp32 weight to bf16 at every use; holding it in bf16 rounds it
    once, to the same values. With the model's dropout already 0, the fast path must train to
    exactly the adapters and loss of plain autocast. (Against fp32 the tiny model is no judge:
    bf16 autocast alone moves its loss by up to 0.18 nats, so the bench checks the tolerance on
    the real models.)"""
    model_dir = tmp_path / "no-dropout"
    shutil.copytree(tiny_config.model, model_dir)
    base = transformers.AutoConfig.from_pretrained(model_dir)
    base.update({"dropout": 0.0, "attention_dropout": 0.0, "seq_classif_dropout": 0.0})
    base.save_pretrained(model_dir)
    config = tiny_config.replace(
        model=str(model_dir),
        precision="bf16",
        target_modules=ALL_LINEAR,
        learning_rate=1e-2,
        train_size=96,
        val_size=8,
        epochs=4.0,
    )
    prepared = prepare_data(config)
    trained = {}
    for fast in (False, True):
        model, _, _ = train(config.replace(fast_training=fast), prepared, tmp_path / str(fast))
        loss = held_out_loss(model, prepared.eval, prepared.tokenizer)
        adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        trained[fast] = (loss, adapters)
    (plain_loss, plain), (fast_loss, fast) = trained[False], trained[True]
    start = held_out_loss(fresh_lora(config), prepared.eval, prepared.tokenizer)
    assert abs(start - plain_loss) > LOSS_TOLERANCE  # it trained: equality is not trivial
    assert fast_loss == pytest.approx(plain_loss, abs=1e-6)
    assert all(torch.allclose(fast[n], plain[n], atol=1e-6) for n in plain)


def test_an_unknown_dropout_scope_is_refused():
    with pytest.raises(training.LFTError, match="dropout scope"):
        training.make_fast_training_callback("bf16", dropout="some")
