"""The fast training path: frozen weights in the mixed precision and no dropout while training,
both undone when training ends, and a loss after a fixed number of steps within the bench's
tolerance of the plain fp32 path."""

import shutil

import pytest
import torch
import transformers
from transformers import TrainerCallback

from conftest import keep_middle_checkpoint
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
        attention = model.base_model.model.config._attn_implementation
        self.seen.append((frozen.dtype, lora["default"].weight.dtype, max(dropouts), attention))


def training_config(tiny_config, **changes):
    """A tiny bf16 LoRA run on every linear layer that trains far enough to be judged."""
    return tiny_config.replace(
        precision="bf16",
        target_modules=ALL_LINEAR,
        learning_rate=1e-2,
        train_size=96,
        val_size=8,
        epochs=4.0,
        **changes,
    )


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
    # Freed memory kept rides along on the fast path (this suite runs on Linux with glibc, where
    # mallopt can keep it); tests/test_runtime.py checks that asking for the default later in the
    # same process does not claim it back.
    config = tiny_config.replace(precision="bf16", fast_training=fast, keep_freed_memory=fast)
    prepared = prepare_data(config)
    fresh = fresh_lora(config)
    before = {n: p.detach().clone() for n, p in fresh.named_parameters()}
    rates = [m.p for m in fresh.modules() if isinstance(m, torch.nn.Dropout)]
    assert max(rates) > 0
    model, result, probe = train(config, prepared, tmp_path / "ck", monkeypatch)
    if fast:
        assert set(probe.seen) == {(torch.bfloat16, torch.float32, 0.0, training.FP32_ATTENTION)}
    else:
        assert set(probe.seen) == {(torch.float32, torch.float32, max(rates), "sdpa")}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.base_model.model.config._attn_implementation == "sdpa"
    for name, param in model.named_parameters():
        if not param.requires_grad:  # bit for bit the fp32 weights it started with
            assert torch.equal(param, before[name]), name
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == rates
    path = result["training_path"]
    assert path["fast_training"] is fast and path["lora_dropout"] == config.lora_dropout
    if fast:
        assert path["freed_memory_kept"] is True
    assert (path["frozen_weights"], path["model_dropout"], path["attention"]) == (
        ("bf16", "off", "fp32") if fast else ("fp32", "kept", "as the model's")
    )


def test_fp32_training_keeps_the_models_attention(tiny_config, tmp_path):
    """Without autocast there is no low precision to leave: attention stays as it was."""
    config = tiny_config.replace(precision="fp32")
    prepared = prepare_data(config)
    _, result, probe = train(config, prepared, tmp_path / "ck", pytest.MonkeyPatch())
    assert {seen[3] for seen in probe.seen} == {"sdpa"}
    assert result["training_path"]["attention"] == "as the model's"


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
    config = training_config(tiny_config, model=str(model_dir))
    prepared = prepare_data(config)
    trained = {}
    # Attention in fp32 is more exact than autocast's bf16, so it does change numbers: it is
    # left out here and checked on its own below.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            training,
            "fast_training_callbacks",
            lambda config: (
                [training.make_fast_training_callback("bf16", fp32_attention=False)]
                if config.fast_training
                else []
            ),
        )
        for fast in (False, True):
            model, _, _ = train(config.replace(fast_training=fast), prepared, tmp_path / str(fast))
            loss = held_out_loss(model, prepared.eval, prepared.tokenizer)
            adapters = {
                n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
            }
            trained[fast] = (loss, adapters)
    (plain_loss, plain), (fast_loss, fast) = trained[False], trained[True]
    start = held_out_loss(fresh_lora(config), prepared.eval, prepared.tokenizer)
    assert abs(start - plain_loss) > LOSS_TOLERANCE  # it trained: equality is not trivial
    assert fast_loss == pytest.approx(plain_loss, abs=1e-6)
    assert all(torch.allclose(fast[n], plain[n], atol=1e-6) for n in plain)


def test_an_unknown_dropout_scope_is_refused():
    with pytest.raises(training.LFTError, match="dropout scope"):
        training.make_fast_training_callback("bf16", dropout="some")


def attention_inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    query, key, value = (torch.randn(2, 4, 24, 8, generator=generator) for _ in range(3))
    mask = torch.ones(2, 1, 24, 24, dtype=torch.bool)
    mask[1, ..., 17:] = False  # the second review has 7 padding tokens
    return query, key, value, mask


def test_fp32_attention_is_exact_where_autocast_rounds(tiny_config):
    """Training under bf16 autocast, `fp32_attention` returns fp32's result on the bf16
    projections it is given (rounded once, to bf16, at the end), not bf16 SDPA's."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = load_model(tiny_config).distilbert.transformer.layer[0].attention.train()
    query, key, value, mask = attention_inputs()
    low = [t.bfloat16() for t in (query, key, value)]
    exact, _ = sdpa_attention_forward(module, *[t.float() for t in low], mask, dropout=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fp32, _ = training.fp32_attention(module, *low, mask, dropout=0.0)
        rounded, _ = sdpa_attention_forward(module, *low, mask, dropout=0.0)
    assert fp32.dtype == torch.bfloat16
    assert torch.equal(fp32, exact.bfloat16())
    # Rounded once, at the end, its error is smaller on average than bf16 SDPA's.
    assert (rounded.float() - exact).abs().mean() > (fp32.float() - exact).abs().mean()
    # A validation pass (eval mode) keeps the low precision: there fp32 gained nothing.
    module.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        evaluated, _ = training.fp32_attention(module, *low, mask, dropout=0.0)
    assert torch.equal(evaluated, rounded)


def test_fp32_attention_trains_within_the_loss_tolerance(tiny_config, tmp_path):
    """The bench keeps a step only if its loss after the same batches stays within
    LOSS_TOLERANCE of an fp32 training's; on a tiny model, attention in fp32 must not move the
    loss further from fp32's than that beyond where bf16 attention left it."""
    config = training_config(tiny_config)
    prepared = prepare_data(config)
    losses = {}
    for fp32 in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                training,
                "fast_training_callbacks",
                lambda config, fp32=fp32: [
                    training.make_fast_training_callback("bf16", fp32_attention=fp32)
                ],
            )
            model, result, _ = train(config, prepared, tmp_path / str(fp32))
        losses[fp32] = held_out_loss(model, prepared.eval, prepared.tokenizer)
        assert result["training_path"]["attention"] == ("fp32" if fp32 else "as the model's")
    start = held_out_loss(fresh_lora(config), prepared.eval, prepared.tokenizer)
    reference, _, _ = train(config.replace(precision="fp32"), prepared, tmp_path / "fp32")
    fp32 = held_out_loss(reference, prepared.eval, prepared.tokenizer)
    assert abs(start - losses[True]) > LOSS_TOLERANCE  # it trained
    assert losses[True] != losses[False]  # the attention's precision did change numbers
    # bf16 autocast alone moves the tiny model's loss past the tolerance (seen: 0.08 nats), so
    # the check here is the step's own: no further than LOSS_TOLERANCE beyond where it was.
    assert abs(losses[True] - fp32) <= abs(losses[False] - fp32) + LOSS_TOLERANCE


def test_validation_runs_shortest_first_with_the_same_loss(tiny_config, tmp_path):
    config = tiny_config.replace(precision="fp32", val_size=24, eval_batch_size=4)
    prepared = prepare_data(config)
    transformers.set_seed(0)
    model = wrap_with_lora(load_model(config), config)
    trainer = training.build_trainer(
        model, prepared.train, prepared.tokenizer, config, tmp_path, eval_dataset=prepared.val
    )
    batches = [b["input_ids"].shape for b in trainer.get_eval_dataloader()]
    lengths = sorted(len(ids) for ids in prepared.val["input_ids"])
    # Every review once, each batch padded to its own longest: the fewest tokens possible.
    assert sum(rows for rows, _ in batches) == len(lengths)
    assert [width for _, width in batches] == [max(lengths[i : i + 4]) for i in range(0, 24, 4)]
    stock = training.build_trainer(
        model, prepared.train, prepared.tokenizer, config, tmp_path, eval_dataset=prepared.val
    )
    stock._get_eval_sampler = lambda dataset: transformers.Trainer._get_eval_sampler(stock, dataset)
    stock_widths = [b["input_ids"].shape[1] for b in stock.get_eval_dataloader()]
    assert sum(stock_widths) > sum(width for _, width in batches)
    # The validation loss is a mean over reviews: the order leaves it as it was.
    assert trainer.evaluate()["eval_loss"] == pytest.approx(stock.evaluate()["eval_loss"], abs=1e-5)


def test_dropout_masks_drop_at_the_rate_and_follow_the_seed():
    torch.manual_seed(3)
    first = training.dropout_mask((1000, 1000), 0.1)
    second = training.dropout_mask((1000, 1000), 0.1)
    torch.manual_seed(3)
    again = training.dropout_mask((1000, 1000), 0.1)
    assert first.shape == (1000, 1000) and first.dtype == torch.bool
    # A million draws: the rate's standard error is 0.0003.
    assert float(first.float().mean()) == pytest.approx(0.1, abs=0.0015)
    assert torch.equal(first, again) and not torch.equal(first, second)
    assert not training.dropout_mask((64,), 0.0).any()


def test_masked_dropout_is_dropout_forward_and_backward():
    """Kept elements scaled by 1 / (1 - rate), dropped ones 0, and the gradient masked alike;
    off in eval mode, as `torch.nn.Dropout` is."""
    module = torch.nn.Dropout(0.25)
    module.forward = training.make_masked_dropout().__get__(module)
    x = torch.randn(8, 50, 16, requires_grad=True)
    torch.manual_seed(0)
    out = module(x)
    torch.manual_seed(0)
    dropped = training.dropout_mask(x.shape, 0.25)
    assert 0.15 < float(dropped.float().mean()) < 0.35
    torch.testing.assert_close(out, torch.where(dropped, 0.0, x / 0.75))
    weights = torch.randn_like(x)
    (out * weights).sum().backward()
    torch.testing.assert_close(x.grad, torch.where(dropped, 0.0, weights / 0.75))
    module.eval()
    assert torch.equal(module(x), x)


def test_full_fine_tuning_draws_its_masks_fast_and_resumes_exactly(tiny_config, tmp_path):
    """The hidden dropout full fine-tuning keeps draws its masks with `dropout_mask` while
    training, its class's own forward comes back after, and a run resumed from a checkpoint
    draws the same masks as one never stopped: it ends with the same weights."""
    config = tiny_config.replace(save_steps=4, save_total_limit=10)
    prepared = prepare_data(config)
    forwards = []

    class Forwards(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
            forwards.append({"forward" in vars(m) for m in dropouts if m.p > 0})

    def full(resume=False):
        transformers.set_seed(0)
        model = load_model(config).requires_grad_(True)
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(training.CALLBACKS, "forwards", Forwards)
            result = train_model(
                model,
                prepared.train,
                prepared.val,
                prepared.tokenizer,
                config,
                tmp_path / "ck",
                learning_rate=1e-3,
                callbacks=("forwards",),
                resume=resume,
                log=lambda line: None,
            )
        return model, result

    whole, result = full()
    assert forwards and all(seen == {True} for seen in forwards)
    assert result["training_path"]["dropout_masks"] == "numpy PCG64"
    assert not any("forward" in vars(m) for m in whole.modules())
    middle = keep_middle_checkpoint(tmp_path / "ck")
    resumed, again = full(resume=True)
    assert again["resumed_from_step"] == middle
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), name
