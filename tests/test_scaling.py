"""Data scaling: LoRA and full fine-tuning at several training sizes on the same eval reviews."""

from __future__ import annotations

import json

import pytest

from lft_helpers import cli
from lft_helpers.config import make_config
from lft_helpers.errors import LFTError
from lft_helpers.reporting import load_results
from lft_helpers.scaling import (
    full_test_finding,
    scaling_finding,
    scaling_markdown,
    scaling_plan,
    scaling_table,
)


def test_cpu_plan_holds_everything_but_the_size_and_lets_flags_win():
    config = make_config("cpu", output_dir="out")
    sizes, shared = scaling_plan(config)
    assert sizes == (500, 1000, 2000, 5000, 10000, 24000)
    assert (shared.max_length, shared.epochs, shared.eval_size) == (128, 1.0, 2000)
    assert shared.output_dir.replace("\\", "/") == "out/scaling"
    sizes, shared = scaling_plan(config, (2000, 500, 500), max_length=256, epochs=None)
    assert sizes == (500, 2000), "sorted, each size once"
    assert (shared.max_length, shared.epochs) == (256, 1.0)


def test_a_size_below_two_is_refused():
    with pytest.raises(LFTError, match="at least 2"):
        scaling_plan(make_config("cpu"), (1, 100))


def comparison(size, gap, differ):
    return {"train_size": size, "gap_points": gap, "differ": differ, "test": "McNemar"}


@pytest.mark.parametrize(
    ("states", "verdict", "pieces"),
    [
        (
            [(-3, True), (-2, True), (-0.4, False), (0.2, False)],
            "The curves meet",
            ["full fine-tuning ahead at 1 to 2 reviews", "tie within the noise at 3 to 4"],
        ),
        (
            [(-3, True), (0.1, False), (2, True)],
            "The curves cross",
            ["full fine-tuning ahead at 1 reviews", "LoRA ahead at 3 reviews"],
        ),
        ([(-3, True), (-2, True)], "The curves stay apart", ["full fine-tuning ahead at 1 to 2"]),
        ([(0.3, False), (-0.3, False)], "The curves never separate", ["tie within the noise"]),
    ],
)
def test_the_finding_follows_the_paired_test_at_each_size(states, verdict, pieces):
    found = scaling_finding([comparison(i + 1, g, d) for i, (g, d) in enumerate(states)])
    assert found.startswith(verdict)
    for piece in pieces:
        assert piece in found


@pytest.fixture(scope="module")
def scaled(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling") / "run"
    args = ["scaling", "--model", str(tiny_model_dir), "--data", str(synthetic_data_dir)]
    args += ["--preset", "smoke", "--sizes", "16,32", "--val-size", "8", "--eval-size", "24"]
    args += ["--max-length", "32", "--precision", "fp32", "--output-dir", str(out)]
    # The full-test scoring draws as many reviews as the eval subset, so it must pick the
    # same reviews and, from the reloaded models, give the trained models' scores.
    args += ["--full-test-reviews", "24"]
    assert cli.main(args) == 0
    return args, out / "scaling"


def test_the_largest_size_reloaded_from_disk_scores_as_it_did_after_training(scaled):
    _, out = scaled
    trained = load_results(out / "n32")
    rescored = json.loads((out / "n32" / "full_test.json").read_text())
    assert not (out / "n16" / "full_test.json").exists(), "only the largest size"
    assert rescored["eval_indices"] == trained["eval_indices"]
    assert rescored["eval_size"] == 24
    for name in ("lora", "full"):
        assert rescored["runs"][name]["accuracy"] == trained["runs"][name]["accuracy"]
        assert rescored["runs"][name]["positive_prob"] == pytest.approx(
            trained["runs"][name]["positive_prob"], abs=1e-4
        )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["full_test"]["accuracy"]["lora"] == trained["runs"]["lora"]["accuracy"]
    sentence = full_test_finding(summary)
    assert sentence.startswith("Trained on 32 reviews and scored on all 24 test reviews: LoRA ")
    assert "full fine-tuning" in sentence and "McNemar" in sentence


def test_every_size_is_scored_on_the_same_eval_reviews(scaled):
    _, out = scaled
    small, large = (load_results(out / f"n{n}") for n in (16, 32))
    assert small["eval_indices"] == large["eval_indices"]
    assert (small["config"]["train_size"], large["config"]["train_size"]) == (16, 32)
    assert set(small["runs"]) == set(large["runs"]) == {"lora", "full"}


def test_the_summary_has_a_point_per_variant_and_size_and_a_figure(scaled):
    _, out = scaled
    summary = json.loads((out / "summary.json").read_text())
    points = {(p["variant"], p["train_size"]) for p in summary["points"]}
    assert points == {(v, n) for v in ("lora", "full") for n in (16, 32)}
    assert all(p["train_minutes"] > 0 for p in summary["points"])
    assert [c["train_size"] for c in summary["comparisons"]] == [16, 32]
    assert summary["budget"]["max_length"] == 32
    assert summary["finding"].startswith("The curves")
    assert (out / "scaling.png").stat().st_size > 0
    table = scaling_table(summary)
    assert list(table.index) == [16, 32]
    assert table.loc[32, "LoRA - full (points)"].startswith(("+", "-"))


def test_resume_keeps_finished_sizes(scaled, capsys):
    args, out = scaled
    before = (out / "n16" / "results.json").read_text()
    assert cli.main([*args, "--resume"]) == 0
    said = capsys.readouterr().out
    assert "16 training reviews: done before, kept" in said
    assert "32 training reviews on 24 test reviews: kept" in said
    assert (out / "n16" / "results.json").read_text() == before


def test_run_takes_a_variant_list(tiny_model_dir, synthetic_data_dir, tmp_path):
    out = tmp_path / "lora-only"
    args = ["run", "--model", str(tiny_model_dir), "--data", str(synthetic_data_dir)]
    args += ["--preset", "smoke", "--max-length", "32", "--precision", "fp32"]
    assert cli.main([*args, "--variants", "lora", "--output-dir", str(out)]) == 0
    assert list(load_results(out)["runs"]) == ["lora"]
    with pytest.raises(SystemExit):
        cli.main([*args, "--variants", "lora,nope", "--output-dir", str(tmp_path / "x")])


def test_the_time_axis_has_numbers_even_within_one_decade(tmp_path):
    from lft_helpers.plotting import plain_tick, plot_scaling

    assert [plain_tick(v) for v in (0.5, 1000, 2e7)] == ["0.5", "1,000", "20M"]
    points = [
        {"variant": v, "train_size": n, "accuracy": a, "accuracy_ci": [a - 0.02, a + 0.02]}
        | {"train_minutes": t}
        for v, n, a, t in [
            ("lora", 500, 0.7, 1.5),
            ("lora", 1000, 0.8, 3.0),
            ("full", 500, 0.72, 2.0),
            ("full", 1000, 0.82, 4.0),
        ]
    ]
    summary = {
        "points": points,
        "variants": ["lora", "full"],
        "finding": "The curves never separate: tie within the noise at 500 to 1,000 reviews.",
        "budget": {"epochs": 1.0, "max_length": 128, "eval_size": 2000},
        "model_label": "tiny",
        "environment": {"cpu": "a CPU", "cpu_count": 2, "torch_threads": 2},
    }
    fig = plot_scaling(summary, tmp_path / "scaling.png")
    fig.canvas.draw()
    sizes_ax, time_ax = fig.axes
    shown = {t.get_text() for t in time_ax.get_xticklabels(minor=True) if t.get_text()}
    assert {"2", "3"} <= shown
    assert [t.get_text() for t in sizes_ax.get_xticklabels()] == ["500", "1,000"]


def test_resume_of_a_stopped_overwrite_replaces_what_it_had_not_reached(scaled, tmp_path, capsys):
    """An --overwrite stopped after its first size: a --resume keeps that size (written by
    the overwrite) and trains the next one again, never keeping the older run's results."""
    import os
    import shutil
    import time

    from lft_helpers.experiment import OVERWRITE_MARK

    args, out = scaled
    copy = tmp_path / "run"
    shutil.copytree(out.parent, copy)
    folder = copy / "scaling"
    (folder / OVERWRITE_MARK).write_text("{}")  # the overwrite began...
    began = (folder / OVERWRITE_MARK).stat().st_mtime
    hour_ago = began - 3600
    for path in folder.glob("n*/*.json"):  # ...and everything there was the older run's...
        os.utime(path, (hour_ago, hour_ago))
    time.sleep(0.05)
    (folder / "n16" / "results.json").touch()  # ...but size 16, which the overwrite redid
    resumed = [a if a != str(out.parent) else str(copy) for a in args]
    assert cli.main([*resumed, "--resume"]) == 0
    said = capsys.readouterr().out
    assert "16 training reviews: done before, kept" in said
    assert "32 training reviews:" in said and "32 training reviews: done before" not in said
    assert (folder / "n32" / "results.json").stat().st_mtime >= began, "trained again"
    assert not (folder / OVERWRITE_MARK).exists(), "the mark goes once the command completes"


def test_a_time_axis_over_one_to_two_decades_labels_its_twos_threes_and_fives():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lft_helpers.plotting import label_log_axis

    fig, ax = plt.subplots()
    ax.plot([0.3, 9.0], [0, 1])
    ax.set_xscale("log")
    label_log_axis(ax, [0.3, 9.0])
    fig.canvas.draw()
    shown = {t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()}
    assert {"0.3", "0.5", "2", "3", "5"} <= shown and "7" not in shown
    plt.close(fig)


def test_the_notebook_table_gives_every_accuracy_four_decimals(scaled):
    _, out = scaled
    summary = json.loads((out / "summary.json").read_text())
    text = scaling_markdown(summary, out / "summary.json")
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| 16 |")]
    accuracies = [rows[0][1], rows[0][4]]  # LoRA's and full fine-tuning's
    assert all(len(a.split(".")[1]) == 4 for a in accuracies), accuracies
