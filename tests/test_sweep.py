"""The LoRA rank/target sweep: target names, budget, and a tiny sweep through the CLI."""

from types import SimpleNamespace

import pytest

from conftest import tiny_bert_config
from lft_helpers import cli, modeling
from lft_helpers.config import make_config
from lft_helpers.errors import LFTError
from lft_helpers.modeling import adapted_modules, all_linear_targets, load_model, wrap_with_lora
from lft_helpers.reporting import load_results
from lft_helpers.specs import run_slug
from lft_helpers.sweep import check_prepared, sweep_config, sweep_table


def tiny_bert():
    """A 2-layer random BERT classifier: its pooler and its encoder both use `dense`."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    config = tiny_bert_config(vocab_size=40, hidden_size=16, intermediate_size=32)
    return BertForSequenceClassification(config)


def test_all_linear_targets_of_distilbert_leave_out_the_head(tiny_config):
    targets = all_linear_targets(load_model(tiny_config))
    assert targets == ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]


def test_bert_dense_adapts_the_encoder_but_not_the_pooler(tiny_config):
    model = tiny_bert()
    targets = all_linear_targets(model)
    assert targets == ["query", "key", "value", "dense"]
    wrapped = wrap_with_lora(model, tiny_config, targets)
    adapted = adapted_modules(wrapped)
    # Per layer: query, key, value, attention output dense, intermediate dense, output dense.
    assert len(adapted) == 2 * 6
    assert not any("pooler" in m or "classifier" in m for m in adapted)
    trained = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert any("pooler" in n and "modules_to_save" in n for n in trained)


def test_a_pooler_outside_the_head_is_refused(monkeypatch):
    monkeypatch.setitem(modeling.HEAD_MODULES, "bert", ["classifier"])
    with pytest.raises(LFTError, match="pooler"):
        all_linear_targets(tiny_bert())


def test_sweep_config_cuts_the_cpu_budget_and_remembers_the_main_one():
    main = make_config("cpu", model="m", data="d", output_dir="runs/x")
    swept = sweep_config(main)
    assert (swept.train_size, swept.eval_size, swept.max_length, swept.epochs) == (
        1000,
        1000,
        128,
        1.0,
    )
    assert swept.output_dir.endswith("sweep")
    assert sweep_config(main.replace(train_size=300)).train_size == 300  # never above the main
    assert sweep_config(main, train_size=3000, epochs=None).train_size == 3000  # explicit wins


def test_smoke_sweep_keeps_its_tiny_budget():
    main = make_config("smoke", model="m", data="d")
    swept = sweep_config(main)
    assert (swept.train_size, swept.eval_size, swept.max_length) == (
        main.train_size,
        main.eval_size,
        main.max_length,
    )


def test_data_prepared_for_another_budget_is_refused():
    config = make_config("smoke", model="m", data="d", train_size=8, eval_size=8)
    with pytest.raises(LFTError, match="prepared"):
        check_prepared(SimpleNamespace(train=[0] * 16, eval=[0] * 8), config)


def test_run_names_make_plain_folder_names():
    assert run_slug("r=8 all-linear") == "r8-all-linear"


@pytest.fixture(scope="module")
def swept(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    args = ["--model", str(tiny_model_dir), "--data", str(synthetic_data_dir), "--preset"]
    args += ["smoke", "--train-size", "16", "--val-size", "0", "--eval-size", "16"]
    args += ["--max-length", "32", "--precision", "fp32", "--output-dir", str(out)]
    assert cli.main(["sweep", *args, "--ranks", "1,8"]) == 0
    return out / "sweep", load_results(out / "sweep")


def lora_params_per_rank(model, targets) -> int:
    """Adapter parameters one unit of rank adds: in + out features of every targeted layer."""
    return sum(
        m.in_features + m.out_features
        for name, m in model.named_modules()
        if name.rsplit(".", 1)[-1] in targets and hasattr(m, "in_features")
    )


def test_sweep_runs_each_rank_and_all_linear(swept, tiny_config):
    _, results = swept
    runs = results["runs"]
    assert list(runs) == ["r=1", "r=8", "r=8 all-linear"]
    assert [runs[n]["lora_alpha"] for n in runs] == [2, 16, 16]
    assert runs["r=8"]["targets"] == ["q_lin", "v_lin"]
    base = load_model(tiny_config)
    per_rank = lora_params_per_rank(base, ["q_lin", "v_lin"])
    assert runs["r=8"]["trainable_params"] - runs["r=1"]["trainable_params"] == 7 * per_rank
    assert [runs[n]["adapter_params"] for n in ("r=1", "r=8")] == [per_rank, 8 * per_rank]
    heads = {run["trainable_params"] - run["adapter_params"] for run in runs.values()}
    assert len(heads) == 1, "the fully trained head is the same size in every run"
    assert runs["r=8 all-linear"]["trainable_params"] > runs["r=8"]["trainable_params"]


def test_sweep_records_its_budget_and_saves_each_adapter(swept):
    out, results = swept
    assert results["sweep"]["budget"]["train_size"] == 16
    assert results["sweep"]["main_budget"]["max_length"] == 32
    assert results["sweep"]["alpha_rule"] == "lora_alpha = 2 * r"
    assert results["config"]["train_size"] == 16
    for name in results["runs"]:
        assert (out / run_slug(name) / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "sweep.png").stat().st_size > 0


def test_sweep_table_has_one_row_per_run(swept):
    _, results = swept
    table = sweep_table(results)
    assert list(table.index) == list(results["runs"])
    assert table["adapter params"].is_monotonic_increasing
    assert len(table.columns) <= 7, "narrow enough for GitHub's width"
    assert table.loc["r=8 all-linear", "adapter params"] > table.loc["r=8", "adapter params"]
