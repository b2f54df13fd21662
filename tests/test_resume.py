"""A run killed mid-training and resumed ends exactly like one that was never interrupted."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from lft_helpers.reporting import load_results
from lft_helpers.training import find_resume_checkpoint

STEPS_PER_EPOCH = 12  # 48 training reviews in batches of 4, 2 epochs, a checkpoint every 4
KILL_AT = 16  # a checkpoint inside the second epoch: the hardest place to resume from


def run_flags(model_dir, data_dir, out_dir) -> list[str]:
    return [
        "run",
        *("--model", str(model_dir), "--data", str(data_dir), "--preset", "smoke"),
        *("--precision", "fp32", "--seed", "7", "--epochs", "2", "--lr", "5e-3"),
        *("--train-size", "48", "--val-size", "8", "--eval-size", "40", "--max-length", "48"),
        *("--batch-size", "4", "--save-steps", "4", "--save-total-limit", "2"),
        *("--output-dir", str(out_dir)),
    ]


def start_cli(args) -> subprocess.Popen:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lft_helpers", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A suite started in the background (`make test &`) passes SIGINT on as ignored, and
        # Python then never turns it into KeyboardInterrupt: give the child the default back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def kill_when_saved(proc: subprocess.Popen, checkpoint, timeout: float = 240) -> None:
    """SIGKILL `proc` as soon as `checkpoint` is complete (its trainer_state.json is written)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if (checkpoint / "trainer_state.json").is_file():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.communicate(timeout=60)


def adapter_weights(out_dir) -> dict:
    return load_file(str(out_dir / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def runs(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    """An uninterrupted run and a killed-then-resumed run with the same flags.

    The uninterrupted run and the run to be killed go in parallel to halve the wall time.
    """
    root = tmp_path_factory.mktemp("resume")
    whole, broken = root / "whole", root / "broken"
    reference = start_cli(run_flags(tiny_model_dir, synthetic_data_dir, whole))
    victim = start_cli(run_flags(tiny_model_dir, synthetic_data_dir, broken))
    kill_when_saved(victim, broken / "checkpoints" / "lora" / f"checkpoint-{KILL_AT}")
    reference_out, reference_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, reference_err[-3000:]
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_state = {
        "checkpoints": {p.name for p in (broken / "checkpoints" / "lora").iterdir()},
        "adapter_saved": (broken / "adapter").exists(),
        "variants": set(load_results(broken / "results.partial.json")["runs"]),
        "results_json": (broken / "results.json").exists(),
    }
    resumed = start_cli([*run_flags(tiny_model_dir, synthetic_data_dir, broken), "--resume"])
    resumed_out, resumed_err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, resumed_err[-3000:]
    return {
        "whole": whole,
        "broken": broken,
        "killed_state": killed_state,
        "resumed_stdout": resumed_out,
    }


def test_the_kill_landed_mid_training(runs):
    killed = runs["killed_state"]
    assert not killed["adapter_saved"] and killed["variants"] == {"baseline"}
    assert not killed["results_json"]  # only a complete run writes results.json
    assert f"checkpoint-{KILL_AT}" in killed["checkpoints"]
    step = int(re.search(r"resuming from checkpoint-(\d+)", runs["resumed_stdout"]).group(1))
    assert KILL_AT <= step < 2 * STEPS_PER_EPOCH and step % STEPS_PER_EPOCH, step


def test_resumed_run_has_the_same_metrics(runs):
    whole = load_results(runs["whole"])["runs"]
    resumed = load_results(runs["broken"])["runs"]
    for variant in ("baseline", "lora"):
        for key in ("accuracy", "f1", "eval_loss", "positive_prob", "confusion_matrix"):
            assert resumed[variant][key] == whole[variant][key], (variant, key)
    assert resumed["lora"]["history"] == whole["lora"]["history"]
    assert resumed["lora"]["resumed_from_step"] >= KILL_AT
    assert "resumed_from_step" not in whole["lora"]
    assert load_results(runs["broken"])["complete"] is True
    assert not (runs["broken"] / "results.partial.json").exists()


def test_resumed_adapter_is_bit_identical(runs):
    whole, resumed = adapter_weights(runs["whole"]), adapter_weights(runs["broken"])
    assert whole.keys() == resumed.keys()
    changed = [k for k in whole if not torch.equal(whole[k], resumed[k])]
    assert not changed, changed


def test_only_the_newest_checkpoints_are_kept_as_safetensors(runs):
    kept = sorted((runs["whole"] / "checkpoints" / "lora").iterdir())
    assert [p.name for p in kept] == ["checkpoint-20", "checkpoint-24"]
    for checkpoint in kept:
        assert (checkpoint / "adapter_model.safetensors").is_file()
        assert not list(checkpoint.glob("*model*.bin"))


def test_incomplete_checkpoint_is_skipped(tmp_path):
    for step, state in ((3, "{}"), (6, '{"global_step": '), (9, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-final").mkdir()
    notes = []
    assert find_resume_checkpoint(tmp_path, notes.append) == str(tmp_path / "checkpoint-3")
    skipped = [n.split(":")[0].strip() for n in notes[:2]]
    assert skipped == ["skipping checkpoint-9", "skipping checkpoint-6"]
    assert find_resume_checkpoint(tmp_path / "empty", notes.append) is None
