"""The command line end to end on a tiny model, and its answers to bad input."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import run_cli
from lft_helpers.cli import build_parser
from lft_helpers.config import PRECISIONS, Config
from lft_helpers.methods import DEFAULT_BUDGET, DEFAULT_OUTPUT_DIR, DEFAULT_SEEDS, METHODS
from lft_helpers.reporting import load_results
from lft_helpers.scaling import SCALING_SIZES, SCALING_VARIANTS
from lft_helpers.specs import SWEEP_RANKS

RUN_KEYS = {
    "accuracy",
    "f1",
    "eval_loss",
    "eval_samples_per_second",
    "trainable_params",
    "total_params",
    "trainable_pct",
}
TRAIN_KEYS = {"train_runtime_s", "train_samples_per_second", "peak_memory_mb", "history"}


def test_help_explains_every_flag():
    out = run_cli("run", "--help")
    assert out.returncode == 0
    for flag in (
        "--model",
        "--data",
        "--preset",
        "--train-size",
        "--eval-size",
        "--max-length",
        "--epochs",
        "--lr",
        "--lora-r",
        "--seed",
        "--output-dir",
    ):
        assert flag in out.stdout


def test_help_imports_neither_torch_nor_transformers():
    """`--help` answers at once: the package imports every module of its own at the top, so no
    module may import torch or transformers there."""
    code = textwrap.dedent(
        """
        import contextlib, io, runpy, sys
        sys.argv = ["lft_helpers", "--help"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            runpy.run_module("lft_helpers", run_name="__main__")
        print(sorted({"torch", "transformers"} & set(sys.modules)))
        """
    )
    root = Path(__file__).resolve().parents[1]  # this checkout's package, not an installed one
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def one_line(text: str) -> str:
    return " ".join(text.split())  # help as argparse wraps it, unwrapped


def defaults(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


def test_help_shows_the_defaults_the_commands_use():
    """Help is built from the values the commands run with, so the two cannot drift apart."""
    commands = build_parser()._subparsers._group_actions[0].choices
    shown = {name: one_line(parser.format_help()) for name, parser in commands.items()}
    overview = one_line(build_parser().format_help())
    assert f"LoRA ranks (default {','.join(map(str, SWEEP_RANKS))})" in shown["sweep"]
    assert f"full {','.join(map(str, SCALING_SIZES))})" in shown["scaling"]
    assert defaults("scaling")["variants"] == SCALING_VARIANTS
    assert f"(default {','.join(SCALING_VARIANTS)})" in shown["scaling"]
    assert defaults("sweep")["seeds"] == 1 and defaults("methods")["seeds"] == DEFAULT_SEEDS
    assert f"learning rate (default {DEFAULT_SEEDS})" in shown["methods"]
    assert defaults("methods")["budget"] == DEFAULT_BUDGET
    assert f"win (default {DEFAULT_BUDGET})" in shown["methods"]
    assert f"{len(METHODS)} methods" in overview and f"(default {DEFAULT_OUTPUT_DIR})" in overview
    assert defaults("rescore", "some/run")["precision"] == Config().precision
    assert f"{{{','.join(PRECISIONS)}}}" in shown["rescore"]


@pytest.mark.parametrize("command", ["run", "sweep", "methods"])
def test_a_bad_seed_count_stops_the_command_before_it_starts(command, capsys):
    for seeds in ("0", "two"):
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args([command, "--seeds", seeds])
        assert stop.value.code == 2
        assert f"--seeds: `{seeds}`: give a whole number, 1 or more" in capsys.readouterr().err


def test_run_end_to_end_on_tiny_model(tiny_model_dir, synthetic_data_dir, tmp_path):
    out_dir = tmp_path / "out"
    out = run_cli(
        "run",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(synthetic_data_dir),
        "--preset",
        "smoke",
        "--epochs",
        "2",
        "--precision",
        "fp32",
        "--output-dir",
        str(out_dir),
    )
    assert out.returncode == 0, out.stderr
    assert "LoRA" in out.stdout and "results.json" in out.stdout
    results = load_results(out_dir)
    assert set(results) >= {"config", "environment", "runs", "eval_indices"}
    assert set(results["runs"]) == {"baseline", "lora"}
    assert set(results["runs"]["baseline"]) >= RUN_KEYS
    assert set(results["runs"]["lora"]) >= RUN_KEYS | TRAIN_KEYS
    assert len(results["eval_indices"]) == results["config"]["eval_size"]
    assert (out_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert results["runs"]["lora"]["history"]["train_loss"]


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path):
    out = run_cli("run", "--data", str(tmp_path / "missing"), "--model", str(tmp_path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1


def test_hub_model_without_hub_fails_fast_with_offline_advice(synthetic_data_dir, tmp_path):
    start = time.monotonic()
    out = run_cli(
        "run",
        "--model",
        "distilbert-base-uncased",
        "--data",
        str(synthetic_data_dir),
        "--preset",
        "smoke",
        "--output-dir",
        str(tmp_path / "o"),
        env={"HF_ENDPOINT": "https://hub.invalid"},
    )
    assert time.monotonic() - start < 30
    assert out.returncode == 2
    assert "distilbert-base-uncased" in out.stderr and "LFT_MODEL" in out.stderr
    assert "Traceback" not in out.stderr


def test_hub_dataset_when_offline_names_the_dataset(tiny_model_dir, tmp_path):
    out = run_cli(
        "run",
        "--model",
        str(tiny_model_dir),
        "--data",
        "stanfordnlp/imdb",
        "--preset",
        "smoke",
        "--output-dir",
        str(tmp_path / "o"),
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 2
    assert "stanfordnlp/imdb" in out.stderr and "LFT_DATA" in out.stderr


def test_report_rebuilds_the_table_from_a_results_file(
    tiny_model_dir, synthetic_data_dir, tmp_path
):
    out_dir = tmp_path / "out"
    args = ["--model", str(tiny_model_dir), "--data", str(synthetic_data_dir), "--preset", "smoke"]
    assert run_cli("run", *args, "--output-dir", str(out_dir)).returncode == 0
    report = run_cli("report", str(out_dir), "--markdown")
    assert report.returncode == 0, report.stderr
    assert "| LoRA |" in report.stdout and "| Untrained head (baseline) |" in report.stdout
    missing = run_cli("report", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
