"""The four ways to fine-tune: what each trains, and `compare` end to end on a tiny model."""

import pytest
from safetensors import safe_open

from lft_helpers import cli
from lft_helpers.experiment import prepare_model
from lft_helpers.reporting import load_results
from lft_helpers.specs import VARIANT_SPECS

HEAD = ("pre_classifier.", "classifier.")


def trainable_names(model) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def prepare_variant(name, config):
    spec = VARIANT_SPECS[name]
    return prepare_model(spec, config), spec.learning_rate(config)


def test_head_only_trains_exactly_the_two_head_layers(tiny_config):
    model, lr = prepare_variant("head", tiny_config)
    names = trainable_names(model)
    assert sorted(names) == sorted(n for n, _ in model.named_parameters() if n.startswith(HEAD)), (
        names
    )
    assert {n.split(".")[0] for n in names} == {"pre_classifier", "classifier"}
    assert lr == tiny_config.learning_rate


def test_full_trains_every_parameter_at_its_own_rate(tiny_config):
    model, lr = prepare_variant("full", tiny_config)
    assert len(trainable_names(model)) == len(list(model.parameters()))
    assert lr == tiny_config.full_learning_rate


def test_lora_trains_adapters_and_head_only(tiny_config):
    model, _ = prepare_variant("lora", tiny_config)
    names = trainable_names(model)
    adapters = [n for n in names if "lora_" in n]
    heads = [n for n in names if "modules_to_save" in n]
    assert adapters and heads
    assert sorted(adapters + heads) == sorted(names)
    assert all(n.split(".lora_")[0].endswith(("q_lin", "v_lin")) for n in adapters)
    assert {n.split(".modules_to_save")[0].rsplit(".", 1)[-1] for n in heads} == {
        "pre_classifier",
        "classifier",
    }


@pytest.fixture(scope="module")
def compared(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "run"
    args = ["--model", str(tiny_model_dir), "--data", str(synthetic_data_dir), "--preset"]
    args += ["smoke", "--train-size", "16", "--val-size", "0", "--eval-size", "16"]
    args += ["--max-length", "32", "--precision", "fp32", "--output-dir", str(out)]
    code = cli.main(["compare", *args])
    assert code == 0
    return out, load_results(out)


def test_compare_runs_all_four_variants(compared):
    _, results = compared
    runs = results["runs"]
    assert list(runs) == ["baseline", "head", "lora", "full"]
    assert runs["baseline"]["trainable_params"] == 0
    trained = [runs[n]["trainable_params"] for n in ("head", "lora", "full")]
    assert 0 < trained[0] < trained[1] < trained[2] == runs["full"]["total_params"]
    for name in ("head", "lora", "full"):
        assert runs[name]["train_runtime_s"] > 0
        assert len(runs[name]["positive_prob"]) == 16


def safetensors_keys(path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def test_each_variant_saves_a_safetensors_artifact(compared):
    out, _ = compared
    head = safetensors_keys(out / "head" / "head.safetensors")
    assert head and all(k.startswith(HEAD) for k in head)
    adapter = safetensors_keys(out / "adapter" / "adapter_model.safetensors")
    assert any("lora_A" in k for k in adapter)
    assert any("pre_classifier" in k for k in adapter)
    full = safetensors_keys(out / "full_model" / "model.safetensors")
    assert any("q_lin" in k for k in full) and not any("lora" in k for k in full)
    for folder in ("head", "adapter", "full_model"):
        assert not list((out / folder).glob("*.bin")), f"{folder} should hold safetensors only"


def test_compare_writes_its_figures(compared):
    out, _ = compared
    for name in ("accuracy.png", "params_vs_accuracy.png"):
        assert (out / name).stat().st_size > 0


def test_lora_artifact_is_far_smaller_than_the_full_model(compared):
    _, results = compared
    runs = results["runs"]
    assert runs["head"]["saved_size_mb"] < runs["lora"]["saved_size_mb"]
    # Even on a 2-layer, 32-wide model the adapter and head are under a quarter of the weights.
    assert runs["lora"]["saved_size_mb"] < runs["full"]["saved_size_mb"] / 4
