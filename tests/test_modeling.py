import pytest
import torch

from lft_helpers.errors import LFTError
from lft_helpers.modeling import (
    adapted_modules,
    check_model,
    count_parameters,
    describe_model,
    head_modules,
    load_model,
    model_label,
    offline_model_path,
    wrap_with_lora,
)
from lft_helpers.pipeline import prepare_data
from lft_helpers.training import train_model


def _inputs():
    return {"input_ids": torch.tensor([[2, 7, 20, 25, 3]]), "attention_mask": torch.ones(1, 5)}


def test_model_has_named_labels(tiny_config):
    model = load_model(tiny_config)
    assert model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    assert head_modules(model) == ["pre_classifier", "classifier"]


def test_lora_trains_only_adapters_and_head(tiny_config):
    peft_model = wrap_with_lora(load_model(tiny_config), tiny_config)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable, "something must train"
    for name in trainable:
        assert "lora_" in name or "modules_to_save" in name, name
    assert any("pre_classifier" in n and "modules_to_save" in n for n in trainable)
    assert any(".classifier" in n and "modules_to_save" in n for n in trainable)
    assert all(m.endswith(("q_lin", "v_lin")) for m in adapted_modules(peft_model))
    counts = count_parameters(peft_model)
    assert counts["trainable_params"] == sum(
        p.numel() for p in peft_model.parameters() if p.requires_grad
    )
    assert 0 < counts["trainable_pct"] < 100


def test_wrapping_does_not_change_outputs(tiny_config):
    base = load_model(tiny_config).eval()
    with torch.no_grad():
        before = base(**_inputs()).logits.clone()
    wrapped = wrap_with_lora(base, tiny_config).eval()
    with torch.no_grad():
        after = wrapped(**_inputs()).logits
    torch.testing.assert_close(before, after)


def test_unknown_target_is_an_error(tiny_config):
    with pytest.raises(LFTError, match="match nothing"):
        wrap_with_lora(load_model(tiny_config), tiny_config.replace(target_modules=("query",)))


def test_training_changes_adapters_not_base_and_saves_head(tiny_config, tmp_path):
    from safetensors.torch import load_file

    prepared = prepare_data(tiny_config)
    model = wrap_with_lora(load_model(tiny_config), tiny_config)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    head = model.base_model.model.pre_classifier.modules_to_save["default"].weight.detach().clone()
    train_model(
        model, prepared.train, prepared.val, prepared.tokenizer, tiny_config, tmp_path / "ck"
    )
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f"base weight {name} changed"
    trained_head = model.base_model.model.pre_classifier.modules_to_save["default"].weight
    assert not torch.equal(head, trained_head)
    model.save_pretrained(str(tmp_path / "adapter"))
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any("pre_classifier" in k for k in saved)
    assert any(k.endswith("classifier.weight") and "pre_" not in k for k in saved)
    assert any("lora_A" in k for k in saved)


def test_bad_model_path_is_explained(tiny_config, tmp_path):
    with pytest.raises(LFTError, match="not a model directory"):
        load_model(tiny_config.replace(model=str(tmp_path)))


def test_model_names_in_logs_and_results(tiny_model_dir, minilm):
    package_dir = str(offline_model_path())
    assert (
        model_label(package_dir) == model_label(minilm) == "sentence-transformers/all-MiniLM-L6-v2"
    )
    assert describe_model(minilm) == "sentence-transformers/all-MiniLM-L6-v2 (minilm-offline)"
    assert describe_model(package_dir).startswith("sentence-transformers/all-MiniLM-L6-v2 (")
    assert describe_model(str(tiny_model_dir)) == str(tiny_model_dir)  # far away: absolute
    assert model_label(str(tiny_model_dir)) == tiny_model_dir.name  # results: no machine path
    assert describe_model("distilbert-base-uncased") == "distilbert-base-uncased"


def test_model_check_runs_on_the_meta_device_before_any_weights(tiny_config):
    check_model(tiny_config.replace(target_modules="all-linear"))  # resolved, not refused
    check_model(tiny_config.replace(target_modules="query"), lora_configs=())
    with pytest.raises(LFTError, match=r"\['query'\] match nothing.*q_lin"):
        check_model(tiny_config.replace(target_modules="query"))
