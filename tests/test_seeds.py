"""Several training seeds of one experiment: the same reviews, the spread, what it supports."""

from __future__ import annotations

import json
import shlex

import pytest

from lft_helpers import cli
from lft_helpers.config import make_config
from lft_helpers.errors import LFTError
from lft_helpers.experiment import further_seeds, run_seeded, seeds_command, training_seeds
from lft_helpers.reporting import (
    load_results,
    seed_spread,
    seeded_lora_full_finding,
    seeds_markdown,
)


@pytest.fixture(scope="module")
def seeded(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "run"
    args = ["compare", "--model", str(tiny_model_dir), "--data", str(synthetic_data_dir)]
    args += ["--preset", "smoke", "--train-size", "24", "--eval-size", "24", "--max-length"]
    args += ["32", "--precision", "fp32", "--variants", "lora,full", "--output-dir", str(out)]
    assert cli.main([*args, "--seeds", "2"]) == 0
    return args, out


def test_every_seed_trains_on_the_first_seeds_reviews(seeded):
    _, out = seeded
    first, second = load_results(out), load_results(out / "seeds" / "seed43")
    assert (first["config"]["seed"], second["config"]["seed"]) == (42, 43)
    assert first["data_seed"] == second["data_seed"] == 42
    assert first["eval_indices"] == second["eval_indices"]
    probs = [r["runs"]["lora"]["positive_prob"] for r in (first, second)]
    assert probs[0] != probs[1], "another training seed trains another model"


def test_the_spread_covers_every_seed(seeded):
    _, out = seeded
    spread = json.loads((out / "seeds.json").read_text())
    assert spread["data_seed"] == 42
    assert set(spread["runs"]) == {"lora", "full"}
    assert spread["runs"]["lora"]["seeds"] == [42, 43]
    assert len(spread["runs"]["full"]["accuracy"]) == 2
    assert spread["lora_vs_full"]["paired_seeds"] == 2


def test_resume_keeps_finished_seeds(seeded, capsys):
    args, out = seeded
    before = (out / "seeds" / "seed43" / "results.json").read_text()
    assert cli.main([*args, "--seeds", "2", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "Seed 42: finished before, kept" in printed
    assert "Seed 43: finished before, kept" in printed
    assert (out / "seeds" / "seed43" / "results.json").read_text() == before


def test_seed_counts_below_one_are_refused(tiny_config):
    assert training_seeds(tiny_config, 3) == [42, 43, 44]
    with pytest.raises(LFTError, match="--seeds"):
        training_seeds(tiny_config, 0)


def result(seed: int, lora: float, full: float, n: int = 100) -> dict:
    """A results document with LoRA right on the first `lora * n` reviews, full likewise."""

    def run(acc: float) -> dict:
        right = round(acc * n)
        return {"accuracy": acc, "positive_prob": [0.9] * right + [0.1] * (n - right)}

    return {"config": {"seed": seed}, "runs": {"lora": run(lora), "full": run(full)}}


def test_the_spread_is_mean_and_sample_sd():
    spread = seed_spread([result(1, 0.80, 0.9), result(2, 0.82, 0.9), result(3, 0.84, 0.9)])
    lora = spread["runs"]["lora"]
    assert lora["mean"] == pytest.approx(0.82)
    assert lora["sd"] == pytest.approx(0.02)
    assert lora["range"] == [0.80, 0.84]


def test_a_gap_every_seed_shows_is_claimed_and_an_overlap_is_not():
    # All labels positive: a review is right where its probability is 0.9.
    apart = seed_spread([result(s, 0.60, 0.90) for s in (1, 2, 3)])
    assert "LoRA is 30.0 points below full fine-tuning on average, and every seed agrees" in (
        seeded_lora_full_finding(apart)
    )
    overlap = seed_spread([result(1, 0.80, 0.81), result(2, 0.83, 0.80)])
    assert "the seeds do not separate LoRA and full fine-tuning" in seeded_lora_full_finding(
        overlap
    )


def test_resume_refuses_a_finished_seed_run_with_other_settings(seeded, capsys):
    args, out = seeded
    assert cli.main([*args, "--seeds", "2", "--lora-r", "4", "--resume"]) == 2
    assert "lora_r 8 there, 4 now" in capsys.readouterr().err


def test_a_notebook_run_finds_the_seeds_a_command_made_with_its_settings(seeded):
    args, out = seeded
    config = cli.config_from_args(cli.build_parser().parse_args(args))
    found = further_seeds(config)
    assert [r["config"]["seed"] for r in found] == [43]
    assert found[0]["command"].startswith("python -m lft_helpers compare --model")
    assert further_seeds(config.replace(lora_r=4)) == [], "other settings do not pair"
    assert further_seeds(config.replace(seed=7)) == [], "seeds of other data do not pair"
    (out / "seeds" / "seed43" / "results.partial.json").write_text("{}")
    try:
        assert further_seeds(config) == [], "a run stopped part way is not finished"
    finally:
        (out / "seeds" / "seed43" / "results.partial.json").unlink()


def test_the_seeds_section_names_their_source_and_what_they_support(seeded):
    args, out = seeded
    config = cli.config_from_args(cli.build_parser().parse_args(args))
    runs = [load_results(out), *further_seeds(config)]
    text = seeds_markdown(runs, out / "seeds", "python -m lft_helpers compare --seeds 3")
    assert "Seed 42 is this run; the others are loaded from" in text
    assert "seed 43 by `python -m lft_helpers compare --model" in text
    assert "| LoRA | 2 |" in text
    assert "- **LoRA vs full fine-tuning.** " in text
    alone = seeds_markdown(runs[:1], out / "seeds", "python -m lft_helpers compare --seeds 3")
    assert alone.startswith("Only this run's seed is at hand. `python -m lft_helpers compare")


def test_the_command_a_notebook_names_adds_seeds_to_its_run(
    tiny_model_dir, synthetic_data_dir, tmp_path, capsys
):
    config = make_config(
        "smoke", model=str(tiny_model_dir), data=str(synthetic_data_dir), output_dir=str(tmp_path)
    )
    run_seeded(config, ["lora"], log=lambda line: None)  # the notebook's own run
    command = shlex.split(seeds_command(config, "compare", seeds=2))
    assert command[:4] == ["python", "-m", "lft_helpers", "compare"]
    assert cli.main(command[3:]) == 0
    assert "Seed 42: finished before, kept" in capsys.readouterr().out
    assert [r["config"]["seed"] for r in further_seeds(config)] == [43]
