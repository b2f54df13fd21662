"""The benchmark: its fast path predicts what the naive one does, its FLOP counts match torch's
counter, its flags come from its settings, and the command runs end to end at a tiny size.
Nothing here asserts a speed: the benchmark prints figures, the tests check structure."""

import json
import os
import re
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch

from lft_helpers import inference
from lft_helpers.bench import eval_speed, flops, peak, settings, subjects, train_speed
from lft_helpers.bench import report as report_module
from lft_helpers.modeling import wrap_with_lora
from lft_helpers.pipeline import prepare_data

# The fast inference path switches to row-wise attention at 16 reviews per batch on a CPU only.
CPU_ONLY = pytest.mark.skipif(
    torch.cuda.is_available(), reason="row-wise attention and batch 16 are the CPU's fast path"
)


def perturb_adapter(model, seed=0):
    """Give the LoRA B matrices and the trained head non-zero random values, as training would:
    an untrained adapter adds nothing, so merging it would prove nothing."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def measure(model, prepared, pad_to=None):
    return eval_speed.measure_eval(
        model, prepared.eval, prepared.tokenizer, batch_size=8, precision="fp32", pad_to=pad_to
    )


def test_fast_path_predicts_what_the_naive_path_does(tiny_config):
    prepared = prepare_data(tiny_config)
    model = subjects.build_lora_model(tiny_config.model, tiny_config)
    perturb_adapter(model)
    with model.disable_adapter():
        plain = measure(model, prepared, pad_to=48)
    naive = measure(model, prepared, pad_to=48)
    # The adapter must change the logits, else the merge below is not tested.
    assert np.abs(plain["logits"] - naive["logits"]).max() > 1e-2
    merged = model.merge_and_unload()
    assert not any("lora" in name for name, _ in merged.named_modules())
    fast = measure(merged, prepared)
    assert fast["padding"] == "dynamic" and naive["padding"] == "max_length 48"
    np.testing.assert_allclose(naive["logits"], fast["logits"], atol=1e-4)
    compared = eval_speed.compare_eval(naive, fast, accuracy_shown=True)
    assert compared["prediction_agreement"] == 1.0
    assert compared["accuracy_gap_points"] == 0.0


def test_trained_adapter_is_loaded_with_its_head(tiny_config, tmp_path):
    from lft_helpers.evaluation import predict_logits

    prepared = prepare_data(tiny_config)
    trained = subjects.build_lora_model(tiny_config.model, tiny_config)
    perturb_adapter(trained)
    trained.save_pretrained(str(tmp_path / "adapter"))
    loaded = subjects.build_lora_model(tiny_config.model, tiny_config, str(tmp_path / "adapter"))
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
    shape = flops.matmul_shape(model)
    assert shape["layers"] == 2 and shape["hidden"] == 32
    for length in (5, 40):
        ids = torch.randint(5, 20, (1, length))
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(input_ids=ids)
        assert flops.review_flops(shape, length) == counter.get_total_flops()


def test_grouped_training_batches_span_the_lengths():
    lengths = np.random.default_rng(0).integers(10, 500, size=200)
    grouped = train_speed.training_batches(lengths, 8, 5, grouped=True, seed=1)
    plain = train_speed.training_batches(lengths, 8, 5, grouped=False, seed=1)
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
    model = subjects.build_base_model(subjects.RANDOM_DISTILBERT, config)
    assert model.config.model_type == "distilbert"
    assert (model.config.dim, model.config.n_layers, model.config.n_heads) == (768, 6, 12)
    assert len(load_tokenizer(config)) == model.config.vocab_size


@pytest.fixture(scope="module")
def bench_run(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    """One tiny `bench` run in a subprocess, as a user runs it: its stdout and its report."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
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
    return done.stdout, json.loads(out.read_text())


def test_bench_command_runs_end_to_end(bench_run):
    stdout, report = bench_run
    assert "eval samples/s" in stdout and "train samples/s" in stdout
    assert set(report) >= {"environment", "settings", "matmul_peak", "models", "load_average"}
    # The yardstick is the median of readings before and after the model, not a best moment.
    fp32 = report["matmul_peak"]["fp32"]
    assert len(fp32["readings"]) == 2
    assert fp32["gflops"] == pytest.approx(statistics.median(fp32["readings"]), abs=0.01)
    assert fp32["best_burst"] == max(fp32["burst_readings"]) > 0
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
    assert all(step["fraction_of_peak"] > 0 for step in steps)
    assert "eval, step by step" in stdout
    memory = model["memory"]
    assert 0 < memory["lora"]["grad_bytes"] < memory["full"]["grad_bytes"]
    assert 0 < memory["lora"]["optimizer_bytes"] < memory["full"]["optimizer_bytes"]
    assert memory["lora"]["peak_mb"] > 0 and 0 < memory["state_fraction"] < 1
    assert set(model["checks"]) >= set(report_module.TARGETS)


def test_bench_measures_lora_and_full_training_against_the_peak(bench_run):
    stdout, report = bench_run
    (model,) = report["models"].values()
    train = model["train"]
    lora, full = (train["naive"], train["fast"]), (train["full"]["naive"], train["full"]["fast"])
    for entry in (*lora, *full):
        assert entry["steps"] == 2 and entry["warmup_steps"] == 1
        assert entry["gflops_executed"] >= entry["gflops_useful"] > 0
        assert entry["fraction_of_fast_peak"] > 0 and entry["fraction_of_peak"] > 0
    # Padded to 48 tokens, the naive path computes more tokens than it needs.
    assert train["naive"]["computed_tokens"] == 2 * 4 * 48 > train["naive"]["real_tokens"]
    assert train["fast"]["computed_tokens"] < train["naive"]["computed_tokens"]
    # Full fine-tuning computes every weight gradient: more FLOPs per step on the same batches.
    assert train["full"]["fast"]["gflop_per_step"] > train["fast"]["gflop_per_step"]
    assert "full FT train samples/s" in stdout and "% of fp32 peak" in stdout


def test_bench_trains_step_by_step_and_checks_the_loss(bench_run):
    stdout, report = bench_run
    (model,) = report["models"].values()
    train = model["train"]
    names = [step["step"] for step in train["steps"]]
    assert names == ["naive", "before", "frozen", "attention", "dropout", "fast"]
    # Full fine-tuning freezes nothing, and keeps its hidden dropout: its default turns off only
    # the attention dropout.
    full = ["naive", "before", "attention", "fp32", "fast"]
    assert [step["step"] for step in train["full"]["steps"]] == full
    assert train["steps"][1] == train["before"] and train["steps"][-1] == train["fast"]
    assert train["gain_over_before"] == pytest.approx(
        train["fast"]["samples_per_s"] / train["before"]["samples_per_s"], rel=1e-2
    )
    check = train["loss_check"]
    # Only steps on the reference's batches are compared: the naive step's are random.
    assert set(check["differences"]) == set(names) - {"naive"}
    # At fp32 the `before` step is the reference's own path from the same start: seeded
    # alike, it must land on exactly the same loss.
    assert check["differences"]["before"] == 0.0
    assert check["loss_before_training"] != check["reference_loss"]
    # A second fp32 reference from another seed sets how finely a step can be judged.
    assert check["reference_seed_spread"] > 0.0
    assert check["tolerance"] == max(check["tolerance_floor"], check["reference_seed_spread"])
    assert model["checks"]["lora_loss_within_tolerance"]["met"] is check["within"]
    assert "train LoRA, step by step" in stdout and "default vs before" in stdout


def test_loss_check_tolerance_is_the_references_own_seed_spread_at_least():
    def entry(step, loss, order="length-grouped"):
        return {"step": step, "loss_after": loss, "order": order, "held_out_reviews": 4}

    steps = [entry("naive", 0.9, "random"), entry("before", 0.60), entry("fast", 0.65)]
    reference = {**entry("reference", 0.60), "samples_per_s": 1.0}
    # Alone, the reference gives the floor: the fast step is 0.05 above it and fails.
    alone = train_speed.loss_check_of(steps, reference, start=0.7)
    assert alone["tolerance"] == train_speed.LOSS_TOLERANCE and not alone["within"]
    assert set(alone["differences"]) == {"before", "fast"}
    # fp32 from another seed landing 0.08 away shows 0.05 is within fp32's own noise.
    noisy = train_speed.loss_check_of(steps, reference, {"loss_after": 0.52}, start=0.7)
    assert noisy["reference_seed_spread"] == pytest.approx(0.08) and noisy["within"]
    # A tight spread does not lower the floor.
    tight = train_speed.loss_check_of(steps, reference, {"loss_after": 0.601}, start=0.7)
    assert tight["tolerance"] == train_speed.LOSS_TOLERANCE and not tight["within"]


def test_bench_profiles_one_fast_training_step(bench_run):
    stdout, report = bench_run
    (model,) = report["models"].values()
    profile, before = model["train_profile"], model["train_profile_before"]
    # Before and after the training work, on the same batch.
    assert profile["step"].startswith("lora fast,") and before["step"].startswith("lora before,")
    assert profile["step"].split(",", 1)[1] == before["step"].split(",", 1)[1]
    operators = profile["operators"]
    assert 0 < len(operators) <= train_speed.PROFILE_TOP and profile["seconds"] > 0
    shares = [op["share"] for op in operators]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
    assert any(op["op"].startswith("aten::") for op in operators)
    assert "where one training step's time goes" in stdout and operators[0]["op"][:40] in stdout
    # The step's products, split into linear layers and attention, add up to the FLOPs the
    # step's cost gives for that batch, and each part is timed and set against its own peak.
    reviews, padded = map(int, re.findall(r"(\d+) (?:reviews|tokens)", profile["step"]))
    cost = flops.StepCost(**model["train"]["fast"]["step_cost"])
    parts = {part["part"]: part for part in profile["parts"]}
    assert sum(p["gflop"] for p in parts.values()) == pytest.approx(
        cost.flops([padded] * reviews) / 1e9, abs=0.01
    )
    for part in parts.values():
        assert part["self_cpu_ms"] > 0 and part["fraction_of_own_peak"] > 0
    assert parts["attention products"]["precision"] == "fp32" and "products, by part" in stdout


@CPU_ONLY
def test_bench_fast_path_on_a_cpu_runs_batches_of_16_with_the_cpus_attention(bench_run):
    _, report = bench_run
    (model,) = report["models"].values()
    expected = inference.ROWWISE if inference.rowwise_attention_pays("cpu") else "sdpa"
    assert model["eval"]["inference"]["attention"] == expected
    assert model["eval"]["fast"]["batch_size"] == 16


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


@CPU_ONLY
def test_failed_compile_still_measures_the_eager_fast_path(tiny_config, monkeypatch):
    import torch

    prepared = prepare_data(tiny_config)
    chosen = settings.BenchSettings(breakdown=False, compile=True)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setattr(inference, "cpu_flags", lambda: frozenset({"avx512_bf16"}))  # no AMX
    ev = eval_speed.measure_eval_steps(
        tiny_config.model, tiny_config, prepared.eval, prepared.tokenizer, chosen, log=print
    )
    assert [step["step"].split(":")[0] for step in ev["steps"]] == [
        "naive",
        "+ lft_rowwise attention, batch 16",
    ]
    assert ev["inference"]["compile_error"] == "RuntimeError: no C++ compiler found"
    assert ev["fast"]["samples_per_s"] > 0 and ev["prediction_agreement"] == 1.0


def one_training_step_flops(model, lengths, width):
    """What torch's counter sees in one training step: forward, loss, backward."""
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.randint(5, 20, (len(lengths), width), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 1])[: len(ids)])
        out.loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("variant", ["lora", "full"])
def test_training_step_flops_match_torch_flop_counter(variant, tiny_config, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    # Eager attention, so the counter sees the QK^T and AV products and their gradients.
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model_dir), num_labels=2, attn_implementation="eager"
    )
    if variant == "lora":
        model = wrap_with_lora(model, tiny_config)
    cost = flops.training_step_cost(model)
    lengths, width = [7, 19, 30], 30
    counted = one_training_step_flops(model, lengths, width)
    assert cost.flops([width] * len(lengths)) == pytest.approx(counted, rel=1e-3)


def test_lora_step_needs_fewer_flops_than_full(tiny_config, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    def cost(lora):
        model = AutoModelForSequenceClassification.from_pretrained(
            str(tiny_model_dir), num_labels=2
        )
        return flops.training_step_cost(wrap_with_lora(model, tiny_config) if lora else model)

    lora, full = cost(True), cost(False)
    forward = (
        2
        * flops.matmul_shape(
            AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
        )["per_token"]
    )
    # Full: forward, input gradient and weight gradient of every layer, 3x the forward.
    assert full.per_token == 3 * forward
    # LoRA: no weight gradient for frozen weights, no input gradient before the first adapter.
    assert forward < lora.per_token < 2.2 * forward and lora.attention < full.attention
    # Real tokens need fewer FLOPs than the same reviews padded to their longest.
    assert lora.flops([5, 9]) < lora.flops([9, 9])


def test_bench_flags_keep_their_names_and_defaults_live_in_the_settings():
    import argparse

    parser = argparse.ArgumentParser()
    settings.add_bench_flags(parser)
    assert settings.settings_from_args(parser.parse_args([])) == settings.BenchSettings()
    given = parser.parse_args(
        [
            *("--model", "a", "--model", "b", "--reviews", "7", "--precision", "bf16"),
            *("--no-memory", "--default-allocator", "--no-breakdown", "--compile"),
            *("--fast-batch-size", "4", "--output", "x.json"),
        ]
    )
    chosen = settings.settings_from_args(given)
    assert chosen.models == ("a", "b") and chosen.reviews == 7 and chosen.precision == "bf16"
    assert not chosen.memory and not chosen.keep_freed_memory and not chosen.breakdown
    assert chosen.compile and chosen.fast_batch_size == 4 and given.output == "x.json"
    assert chosen.max_length == settings.BenchSettings().max_length  # not given: the default


def test_one_fast_moment_does_not_become_the_peak():
    def reading(sustained, burst):
        return {"bf16": {"precision": "bf16", "size": 8, "gflops": sustained, "burst": burst}}

    # Three readings across a run; the second caught the machine at twice its usual rate.
    combined = peak.combine_peaks([reading(700, 800), reading(1500, 1900), reading(720, 780)])
    assert combined["bf16"]["gflops"] == 720 and combined["bf16"]["best_burst"] == 1900
    assert combined["bf16"]["readings"] == [700, 1500, 720]


def test_matrix_instruction_sets_are_named_widest_first():
    flags = {"fpu", "avx2", "avx512f", "avx512_bf16", "sse"}
    assert peak.matrix_instruction_sets(flags) == ["avx512_bf16", "avx512f", "avx2"]
    assert peak.matrix_instruction_sets({"sse2"}) == []
