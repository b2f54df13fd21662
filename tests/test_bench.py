"""The benchmark: its fast path predicts what the naive one does, its FLOP count is exact, and
the command runs end to end at a tiny size."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lft_helpers import bench
from lft_helpers.pipeline import prepare_data


def perturb_adapter(model, seed=0):
    """Give the LoRA B matrices and the trained head non-zero random values, as training would:
    an untrained adapter adds nothing, so merging it would prove nothing."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def test_fast_path_predicts_what_the_naive_path_does(tiny_config):
    prepared = prepare_data(tiny_config)
    model = bench.build_lora_model(tiny_config.model, tiny_config)
    perturb_adapter(model)
    with model.disable_adapter():
        plain = bench.measure_eval(model, prepared.eval, prepared.tokenizer, 8, "fp32", 48)
    naive = bench.measure_eval(model, prepared.eval, prepared.tokenizer, 8, "fp32", 48)
    # The adapter must change the logits, else the merge below is not tested.
    assert np.abs(plain["logits"] - naive["logits"]).max() > 1e-2
    merged = model.merge_and_unload()
    assert not any("lora" in name for name, _ in merged.named_modules())
    fast = bench.measure_eval(merged, prepared.eval, prepared.tokenizer, 8, "fp32")
    assert fast["padding"] == "dynamic" and naive["padding"] == "max_length 48"
    np.testing.assert_allclose(naive["logits"], fast["logits"], atol=1e-4)
    compared = bench.compare_eval(naive, fast, accuracy_shown=True)
    assert compared["prediction_agreement"] == 1.0
    assert compared["accuracy_gap_points"] == 0.0


def test_trained_adapter_is_loaded_with_its_head(tiny_config, tmp_path):
    from lft_helpers.evaluation import predict_logits

    prepared = prepare_data(tiny_config)
    trained = bench.build_lora_model(tiny_config.model, tiny_config)
    perturb_adapter(trained)
    trained.save_pretrained(str(tmp_path / "adapter"))
    loaded = bench.build_lora_model(tiny_config.model, tiny_config, str(tmp_path / "adapter"))
    expected = predict_logits(trained, prepared.eval, prepared.tokenizer, 8, "fp32")
    got = predict_logits(loaded, prepared.eval, prepared.tokenizer, 8, "fp32")
    np.testing.assert_allclose(expected, got, atol=1e-5)


def test_flop_estimate_matches_torch_flop_counter(tiny_model_dir):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForSequenceClassification

    # Eager attention, so the counter sees the QK^T and AV matmuls too.
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model_dir), num_labels=2, attn_implementation="eager"
    ).eval()
    shape = bench.matmul_shape(model)
    assert shape["layers"] == 2 and shape["hidden"] == 32
    for length in (5, 40):
        ids = torch.randint(5, 20, (1, length))
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(input_ids=ids)
        assert bench.review_flops(shape, length) == counter.get_total_flops()


def test_grouped_training_batches_span_the_lengths():
    lengths = np.random.default_rng(0).integers(10, 500, size=200)
    grouped = bench.training_batches(lengths, 8, 5, grouped=True, seed=1)
    plain = bench.training_batches(lengths, 8, 5, grouped=False, seed=1)
    for batches in (grouped, plain):
        assert len(batches) == 5 and all(len(b) == 8 for b in batches)
        assert len({i for b in batches for i in b}) == 40  # no review twice
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert longest == sorted(longest) and longest[0] < longest[-1]
    # Length grouping wastes less padding than random batches.
    waste = [sum(max(lengths[b]) - lengths[b]) for b in (np.array(x) for x in grouped)]
    random_waste = [sum(max(lengths[b]) - lengths[b]) for b in (np.array(x) for x in plain)]
    assert sum(waste) < sum(random_waste)


def test_random_distilbert_has_base_shape_and_minilm_vocabulary(minilm):
    from lft_helpers.config import make_config
    from lft_helpers.modeling import load_tokenizer

    config = make_config("smoke", model=minilm)
    model = bench.build_base_model(bench.RANDOM_DISTILBERT, config)
    assert model.config.model_type == "distilbert"
    assert (model.config.dim, model.config.n_layers, model.config.n_heads) == (768, 6, 12)
    assert len(load_tokenizer(config)) == model.config.vocab_size


def test_bench_command_runs_end_to_end(tiny_model_dir, synthetic_data_dir, tmp_path):
    out = tmp_path / "bench.json"
    args = [
        *("--model", str(tiny_model_dir), "--data", str(synthetic_data_dir)),
        *("--reviews", "16", "--max-length", "48", "--train-steps", "2", "--warmup-steps", "1"),
        *("--eval-batch-size", "8", "--train-batch-size", "4", "--precision", "fp32"),
        *("--output", str(out)),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "lft_helpers", "bench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "eval samples/s" in done.stdout and "train samples/s" in done.stdout
    report = json.loads(out.read_text())
    assert set(report) >= {"environment", "settings", "matmul_peak", "models", "load_average"}
    assert report["matmul_peak"]["fp32"]["gflops"] > 0
    (model,) = report["models"].values()
    assert model["reviews"] == 16 and model["tokens"]["max"] <= 48
    for part in ("eval", "train"):
        for path in ("naive", "fast"):
            assert model[part][path]["samples_per_s"] > 0
        assert model[part]["speedup"] > 0
    assert model["eval"]["naive"]["padding"] == "max_length 48"
    assert model["eval"]["prediction_agreement"] == 1.0  # fp32: merging and padding change nothing
    assert model["eval"]["fast"]["fraction_of_peak"] > 0
    steps = model["eval"]["steps"]
    assert steps[0]["step"].startswith("naive") and steps[0] == {**model["eval"]["naive"]}
    assert steps[-1] == model["eval"]["fast"] and len(steps) == 5
    assert model["eval"]["inference"]["attention"] == "lft_rowwise"
    assert all(step["fraction_of_peak"] > 0 for step in steps)
    assert "eval, step by step" in done.stdout
    assert model["train"]["fast"]["computed_tokens"] < model["train"]["naive"]["computed_tokens"]
    memory = model["memory"]
    assert 0 < memory["lora"]["grad_bytes"] < memory["full"]["grad_bytes"]
    assert 0 < memory["lora"]["optimizer_bytes"] < memory["full"]["optimizer_bytes"]
    assert memory["lora"]["peak_mb"] > 0 and 0 < memory["state_fraction"] < 1
    assert set(model["checks"]) >= set(bench.TARGETS)


@pytest.mark.parametrize(
    "option", ["--reviews=0", "--adapter=/nonexistent", "--fast-batch-size=-1"]
)
def test_bad_bench_options_fail_with_one_line(option, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lft_helpers", "bench", option, "--output", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_failed_compile_still_measures_the_eager_fast_path(tiny_config, monkeypatch):
    import torch

    prepared = prepare_data(tiny_config)
    settings = bench.BenchSettings(breakdown=False, compile=True)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    ev = bench.measure_eval_steps(
        tiny_config.model, tiny_config, prepared.eval, prepared.tokenizer, settings, log=print
    )
    assert [step["step"].split(":")[0] for step in ev["steps"]] == [
        "naive",
        "+ lft_rowwise attention, batch 16",
    ]
    assert ev["inference"]["compile_error"] == "RuntimeError: no C++ compiler found"
    assert ev["fast"]["samples_per_s"] > 0 and ev["prediction_agreement"] == 1.0
