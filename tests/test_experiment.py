"""Experiments as data: specs, and the one runner that executes them."""

import math

import pytest

from lft_helpers.errors import LFTError
from lft_helpers.experiment import prepare_model, run_specs
from lft_helpers.modeling import model_label
from lft_helpers.pipeline import prepare_data
from lft_helpers.specs import VARIANT_SPECS, Spec, sweep_specs, variant_specs


def trainable(model) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_the_baseline_spec_trains_nothing(tiny_config):
    spec = VARIANT_SPECS["baseline"]
    assert spec.learning_rate(tiny_config) is None
    assert trainable(prepare_model(spec, tiny_config)) == []


def test_full_fine_tuning_uses_its_own_learning_rate(tiny_config):
    assert VARIANT_SPECS["full"].learning_rate(tiny_config) == tiny_config.full_learning_rate
    assert VARIANT_SPECS["lora"].learning_rate(tiny_config) == tiny_config.learning_rate


def test_a_spec_refuses_unknown_modes_and_fields():
    with pytest.raises(LFTError, match="train="):
        Spec("x", "some")
    with pytest.raises(LFTError, match="lora_rank"):
        Spec("x", "peft", overrides={"lora_rank": 4})
    with pytest.raises(LFTError, match="Unknown variant"):
        variant_specs(["lora", "qlora"])


def test_sweep_specs_scale_alpha_with_rank(tiny_config):
    specs = sweep_specs((1, 4), all_linear=True)
    configs = [s.config_for(tiny_config) for s in specs]
    assert [(c.lora_r, c.lora_alpha) for c in configs] == [(1, 2), (4, 8), (8, 16)]
    assert configs[-1].target_modules == ("all-linear",)
    assert configs[0].target_modules == tiny_config.target_modules


@pytest.fixture(scope="module")
def prepared_tiny(tiny_model_dir, synthetic_data_dir):
    from conftest import tiny_run_config

    config = tiny_run_config(
        tiny_model_dir, synthetic_data_dir, train_size=16, val_size=0, eval_size=16
    )
    return config, prepare_data(config)


def test_a_new_lora_variant_is_one_spec(prepared_tiny, tmp_path):
    """rsLoRA: no new code path, only a spec; its record says what was applied."""
    config, prepared = prepared_tiny
    config = config.replace(output_dir=str(tmp_path))
    rslora = Spec("rslora", "peft", peft={"peft_type": "LORA", "use_rslora": True}, save_dir="rs")
    saved = []
    runs = run_specs([rslora], prepared, config, log=lambda line: None, save=saved.append)
    record = runs["rslora"]
    assert record["peft_config"]["use_rslora"] is True
    assert record["peft_config"]["target_modules"] == ["q_lin", "v_lin"]
    # PEFT keeps the folder the base was loaded from; the record names the model instead.
    assert record["peft_config"]["base_model_name_or_path"] == model_label(config.model)
    assert not record["peft_config"]["base_model_name_or_path"].startswith("/")
    assert record["spec"]["peft"] == {"peft_type": "LORA", "use_rslora": True}
    assert record["r"] == config.lora_r and record["train_runtime_s"] > 0
    assert (tmp_path / "rs" / "adapter_model.safetensors").is_file()
    assert len(saved) == 1 and "rslora" in saved[0]


def test_the_applied_scaling_follows_the_spec(prepared_tiny):
    config, _ = prepared_tiny
    plain = prepare_model(VARIANT_SPECS["lora"], config)
    rs = prepare_model(Spec("rs", "peft", peft={"use_rslora": True}), config)

    def scaling(model):
        layer = next(m for n, m in model.named_modules() if n.endswith("q_lin"))
        return layer.scaling["default"]

    assert scaling(plain) == pytest.approx(config.lora_alpha / config.lora_r)
    assert scaling(rs) == pytest.approx(config.lora_alpha / math.sqrt(config.lora_r))
