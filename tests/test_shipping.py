"""Shipping an adapter: reload, merge (DistilBERT and BERT heads), plain pipeline, speed."""

import pytest
import torch

from conftest import tiny_bert_config, tiny_run_config
from lft_helpers.evaluation import positive_prob
from lft_helpers.labels import LABEL_NAMES
from lft_helpers.modeling import all_linear_targets, load_model, wrap_with_lora
from lft_helpers.pipeline import prepare_data
from lft_helpers.shipping import (
    check_reload,
    classify_with_pipeline,
    compare_inference_speed,
    compare_logits,
    load_adapter,
    merge_adapter,
    merged_head_matches,
    save_merged,
)

TEXTS = ["a wonderful and moving film", "boring, dull and tedious", "the plot was the plot"]


def trained_looking(peft_model):
    """Nudge every trainable weight so the adapters (B starts at zero) and head do something."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in peft_model.parameters():
            if param.requires_grad:
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
    return peft_model


def small_config(model_dir, data_dir, out):
    return tiny_run_config(
        model_dir,
        data_dir,
        train_size=8,
        val_size=0,
        eval_size=24,
        max_length=32,
        output_dir=str(out),
    )


@pytest.fixture(scope="module")
def tiny_bert_dir(tiny_model_dir, tmp_path_factory):
    """A 2-layer random BERT (pooler + classifier head) with the tiny WordPiece vocabulary."""
    from transformers import BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = BertTokenizerFast(vocab=str(tiny_model_dir / "vocab.txt"))
    tokenizer.model_max_length = 64
    torch.manual_seed(0)
    config = tiny_bert_config(vocab_size=tokenizer.vocab_size)
    BertModel(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def shipped(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    """The notebook's shipping steps on 20 eval reviews: reload the saved adapter, merge it,
    keep the trained head, save the merged model, classify TEXTS with a plain `pipeline`, and
    time merged against unmerged."""
    out = tmp_path_factory.mktemp("ship")
    config = small_config(tiny_model_dir, synthetic_data_dir, out / "run")
    prepared = prepare_data(config)
    model = trained_looking(wrap_with_lora(load_model(config), config))
    tokenizer, reviews = prepared.tokenizer, prepared.eval.select(range(20))
    merged = merge_adapter(model)
    report = {
        "reload": check_reload(model, tokenizer, reviews, out / "adapter"),
        "merge": compare_logits(model, merged, reviews, tokenizer),
        "head_kept": merged_head_matches(model, merged),
        "merged_size_mb": save_merged(merged, tokenizer, out / "merged"),
        "pipeline": classify_with_pipeline(out / "merged", TEXTS),
        "speed": compare_inference_speed(model, merged, reviews, tokenizer, precision="fp32"),
    }
    return out, model, prepared, report


def test_reloaded_adapter_predicts_identically(shipped):
    out, _, _, report = shipped
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert report["reload"]["argmax_agree"]
    assert report["reload"]["max_abs_diff"] < 1e-6
    assert report["reload"]["reviews"] == 20


def test_a_reloaded_adapter_keeps_the_label_names(shipped):
    out, _, _, _ = shipped
    reloaded, _ = load_adapter(out / "adapter")
    assert reloaded.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    assert merge_adapter(reloaded).config.label2id == {"NEGATIVE": 0, "POSITIVE": 1}


def test_merged_logits_match_the_unmerged_model(shipped):
    _, model, _, report = shipped
    assert report["merge"]["max_abs_diff"] < 1e-4
    assert report["merge"]["argmax_agree"]
    assert report["head_kept"] == {"pre_classifier": True, "classifier": True}
    assert any("lora_A" in n for n, _ in model.named_parameters()), "original left unmerged"


def test_merging_changes_the_base_weights(shipped):
    _, model, _, _ = shipped
    merged = merge_adapter(model)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    base = model.get_base_model().distilbert.transformer.layer[0].attention.q_lin.base_layer
    folded = merged.distilbert.transformer.layer[0].attention.q_lin
    assert not torch.allclose(base.weight, folded.weight)


def test_merged_model_is_plain_transformers_safetensors(shipped):
    out, _, _, report = shipped
    merged_dir = out / "merged"
    assert (merged_dir / "model.safetensors").is_file()
    assert not (merged_dir / "adapter_config.json").exists()
    assert report["merged_size_mb"] > 0


def test_pipeline_on_merged_model_agrees_with_the_adapter(shipped):
    _, model, prepared, report = shipped
    batch = prepared.tokenizer(TEXTS, truncation=True, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = positive_prob(model(**batch).logits.float().numpy())
    got = report["pipeline"]
    assert [g["label"] for g in got] == [LABEL_NAMES[int(p > 0.5)] for p in expected]
    for g, p in zip(got, expected, strict=True):
        positive = g["score"] if g["label"] == "POSITIVE" else 1 - g["score"]
        assert positive == pytest.approx(p, abs=1e-4)
    assert [g["text"] for g in got] == TEXTS


def test_pipeline_loads_any_saved_merged_model(shipped):
    out, _, _, report = shipped
    again = classify_with_pipeline(out / "merged", TEXTS[:1])
    assert again[0]["label"] == report["pipeline"][0]["label"]
    assert again[0]["score"] == pytest.approx(report["pipeline"][0]["score"], abs=1e-6)


def test_speed_is_measured_for_every_path(shipped):
    speed = shipped[3]["speed"]
    for path in ("unmerged", "merged", "prepared"):
        assert speed[path]["samples_per_second"] > 0
    assert speed["reviews"] == 20
    # fp32 (the test's precision): merging and row-wise attention change no prediction.
    assert speed["merged"]["same_predictions"] == speed["prepared"]["same_predictions"] == 1.0


# 16 reviews per batch is the prepared path on a CPU; its attention is row-wise where that
# pays (tests/test_inference.py covers which CPUs), and the report names the one used.
@pytest.mark.skipif(torch.cuda.is_available(), reason="batches of 16 are for CPUs only")
def test_prepared_path_on_a_cpu_runs_batches_of_16_and_names_its_attention(shipped):
    from lft_helpers.inference import ROWWISE, rowwise_attention_pays
    from lft_helpers.reporting import describe_inference_speed

    speed = shipped[3]["speed"]
    attention = ROWWISE if rowwise_attention_pays("cpu") else "sdpa"
    assert speed["prepared_with"]["attention"] == attention
    assert speed["prepared"]["batch_size"] == 16
    line = describe_inference_speed(speed).splitlines()[3]
    assert f"{attention} attention, batch 16" in line


def test_bert_pooler_and_classifier_survive_merging(tiny_bert_dir, synthetic_data_dir, tmp_path):
    config = small_config(tiny_bert_dir, synthetic_data_dir, tmp_path / "run")
    prepared = prepare_data(config)
    base = load_model(config)
    original_pooler = base.bert.pooler.dense.weight.detach().clone()
    model = trained_looking(wrap_with_lora(base, config, all_linear_targets(base)))
    merged = merge_adapter(model)
    assert merged_head_matches(model, merged) == {"bert.pooler": True, "classifier": True}
    assert not torch.equal(merged.bert.pooler.dense.weight, original_pooler)
    diff = compare_logits(model, merged, prepared.eval, prepared.tokenizer)
    assert diff["max_abs_diff"] < 1e-4


def test_inference_speed_reads_as_one_line_per_path(shipped):
    from lft_helpers.reporting import describe_inference_speed

    text = describe_inference_speed(shipped[3]["speed"])
    lines = text.splitlines()
    assert lines[0] == "inference on 20 reviews:" and len(lines) == 4
    assert "100.00% of predictions" in lines[3]
