"""Pure inference: row-wise attention computes what SDPA does, and the prepared (cast, compiled)
model predicts what the plain one does."""

import shutil

import numpy as np
import pytest
import torch

from conftest import tiny_bert_config, tiny_distilbert_config
from lft_helpers import inference
from lft_helpers.evaluation import predict_logits
from lft_helpers.pipeline import prepare_data

# Row-wise attention and 16 reviews per batch are the fast inference path on a CPU only.
CPU_ONLY = pytest.mark.skipif(
    torch.cuda.is_available(), reason="row-wise attention is for CPUs only"
)


def tiny_classifier(kind: str, seed: int = 0):
    """A random 2-layer BERT or DistilBERT classifier (the two attention modules we rely on),
    initialised wide so attention is peaked and a wrong mask shows in the outputs."""
    from transformers import BertForSequenceClassification, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    shape = dict(vocab_size=60, initializer_range=0.5)
    if kind == "bert":
        config = tiny_bert_config(num_attention_heads=4, num_labels=2, **shape)
        return BertForSequenceClassification(config).eval()
    config = tiny_distilbert_config(n_heads=4, num_labels=2, **shape)
    return DistilBertForSequenceClassification(config).eval()


def padded_batch(lengths, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (len(lengths), max(lengths)), generator=generator)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return {"input_ids": ids * mask, "attention_mask": mask}


def last_hidden(model, batch):
    return model(**batch, output_hidden_states=True).hidden_states[-1].float()


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_rowwise_attention_gives_sdpa_outputs(kind, monkeypatch):
    calls = []
    original = inference.key_lengths
    monkeypatch.setattr(inference, "key_lengths", lambda *a: calls.append(1) or original(*a))
    model = tiny_classifier(kind)
    batch = padded_batch([17, 3, 17, 9, 1])  # with a review of one token, and no padding at all
    alone = {"input_ids": batch["input_ids"][1:2, :3]}
    with torch.inference_mode():
        expected, expected_alone = last_hidden(model, batch), last_hidden(model, alone)
        model.set_attn_implementation(inference.register_rowwise_attention())
        assert model.config._attn_implementation == inference.ROWWISE
        got, got_alone = last_hidden(model, batch), last_hidden(model, alone)
    assert len(calls) == 2  # once per layer for the padded batch; none without padding
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_alone, expected_alone, atol=1e-5, rtol=1e-5)
    # A padded review's real tokens come out as they do with no padding at all.
    torch.testing.assert_close(got[1, :3], got_alone[0], atol=1e-5, rtol=1e-5)


def test_key_lengths_only_for_padding_prefixes():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    full = mask[:, None, None, :].expand(3, 1, 4, 4)
    assert inference.key_lengths(full, 4) == [3, 4, 1]
    holes = torch.tensor([[1, 0, 1, 1]], dtype=torch.bool)[:, None, None, :].expand(1, 1, 4, 4)
    assert inference.key_lengths(holes, 4) is None
    causal = torch.ones(4, 4, dtype=torch.bool).tril()[None, None]
    assert inference.key_lengths(causal, 4) is None


def test_rowwise_attention_applies_any_boolean_mask():
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=generator) for _ in range(3))
    mask = torch.rand(2, 1, 6, 6, generator=generator) > 0.3
    mask[..., 0] = True  # every query keeps one key
    module = torch.nn.Module().eval()
    got, weights = inference.rowwise_attention(module, q, k, v, mask, scaling=0.5)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.5)
    assert weights is None
    torch.testing.assert_close(got, expected.transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_training_keeps_stock_attention(monkeypatch):
    model = tiny_classifier("bert").train()
    model.config.attention_probs_dropout_prob = 0.0
    model.set_attn_implementation(inference.register_rowwise_attention())
    batch = padded_batch([6, 4])
    calls = []
    original = inference.key_lengths
    monkeypatch.setattr(inference, "key_lengths", lambda *a: calls.append(1) or original(*a))
    loss = torch.nn.functional.cross_entropy(model(**batch).logits, torch.tensor([0, 1]))
    loss.backward()
    assert calls == []  # the row-wise path never ran: training goes to SDPA
    assert model.classifier.weight.grad is not None


def test_prepared_model_predicts_what_the_plain_model_does(tiny_config):
    prepared = prepare_data(tiny_config)
    model = tiny_classifier("distilbert")
    tokenizer = prepared.tokenizer
    model.resize_token_embeddings(len(tokenizer))
    expected = predict_logits(model, prepared.eval, tokenizer, 8, "fp32")
    fast, info = inference.prepare_inference_model(
        model, prepared.eval.select(range(8)), tokenizer, "fp32", compile=True, batch_size=8
    )
    got = predict_logits(fast, prepared.eval, tokenizer, 8, "fp32")
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert info["weights"] == "fp32" and info["batch_size"] == 8
    if shutil.which("g++") or shutil.which("c++"):
        assert info["compiled"], info.get("compile_error")
        assert isinstance(fast, torch._dynamo.eval_frame.OptimizedModule)
        assert info["compile_s"] > 0


@CPU_ONLY
@pytest.mark.parametrize(
    ("flags", "attention"),
    [
        ({"avx2", "avx512_bf16"}, inference.ROWWISE),  # AVX-512 BF16 without AMX: row-wise gains
        ({"avx2"}, inference.ROWWISE),
        ({"avx2", "avx512_bf16", "amx_tile", "amx_bf16"}, "sdpa"),  # AMX: SDPA's kernel is faster
    ],
)
def test_prepared_model_attention_follows_the_cpu_at_batch_16(
    tiny_config, monkeypatch, flags, attention
):
    monkeypatch.setattr(inference, "cpu_flags", lambda: frozenset(flags))
    prepared = prepare_data(tiny_config)
    model = tiny_classifier("bert")
    _, info = inference.prepare_inference_model(
        model, prepared.eval.select(range(4)), prepared.tokenizer, "fp32"
    )
    assert info == {"weights": "fp32", "attention": attention, "batch_size": 16, "compiled": False}
    assert model.config._attn_implementation == attention


def test_bf16_weights_skip_autocast_and_keep_predictions(tiny_config):
    prepared = prepare_data(tiny_config)
    model = tiny_classifier("bert")
    model.resize_token_embeddings(len(prepared.tokenizer))
    expected = predict_logits(model, prepared.eval, prepared.tokenizer, 8, "fp32")
    cast = inference.cast_weights(model, "bf16")
    assert next(cast.parameters()).dtype == torch.bfloat16
    got = predict_logits(cast, prepared.eval, prepared.tokenizer, 8, "bf16")
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < 0.1 * np.abs(expected).max()  # bf16: 3 digits
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.9


def test_failed_compile_leaves_the_eager_model(tiny_config, monkeypatch):
    prepared = prepare_data(tiny_config)
    model = tiny_classifier("distilbert")
    model.resize_token_embeddings(len(prepared.tokenizer))

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", no_compiler)
    sample = prepared.eval.select(range(4))
    fast, info = inference.prepare_inference_model(
        model, sample, prepared.tokenizer, "fp32", compile=True
    )
    assert fast is model and info["compiled"] is False
    assert info["compile_error"] == "RuntimeError: no C++ compiler found"


def test_rowwise_attention_under_autocast_masks_padding():
    model = tiny_classifier("bert")
    batch = padded_batch([12, 5, 9])
    alone = {"input_ids": batch["input_ids"][1:2, :5]}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = last_hidden(model, batch)
        model.set_attn_implementation(inference.register_rowwise_attention())
        got, got_alone = last_hidden(model, batch), last_hidden(model, alone)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=0.1, rtol=0.05)
    torch.testing.assert_close(got[1, :5], got_alone[0], atol=0.1, rtol=0.05)
