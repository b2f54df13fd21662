"""Ctrl-C or SIGTERM mid-training: the run stops at once with one line saying where its latest
checkpoint is and what to type next; the previous complete results.json stays untouched; and the
printed command finishes with exactly the metrics of a run that was never interrupted."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
from test_resume import run_flags, start_cli

from lft_helpers.pipeline import interrupted_message, latest_checkpoint, resume_command
from lft_helpers.reporting import load_results

STOP_AT = 16  # a checkpoint inside the second epoch (48 reviews, batches of 4, 2 epochs)
OLD_RESULTS = b'{"complete": true, "runs": {"lora": {"accuracy": 0.5}}}\n'


def saved(checkpoint) -> bool:
    """The Trainer writes trainer_state.json last; a signal sent while it is half written would
    leave that checkpoint incomplete, and the run would rightly name the one before."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def signal_when_saved(plan, timeout: float = 240) -> list[float]:
    """For each (process, checkpoint folder, signal): send the signal as soon as that checkpoint
    is complete (its trainer_state.json written). Return the seconds each process took to exit."""
    sent: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(sent) < len(plan) and time.monotonic() < deadline:
        for i, (proc, checkpoint, signum) in enumerate(plan):
            if i not in sent and saved(checkpoint):
                proc.send_signal(signum)
                sent[i] = time.monotonic()
            assert i in sent or proc.poll() is None, f"{checkpoint} never appeared"
        time.sleep(0.01)
    assert len(sent) == len(plan), "timed out waiting for the checkpoints"
    took = []
    for i, (proc, _, _) in enumerate(plan):
        proc.wait(timeout=60)
        took.append(time.monotonic() - sent[i])
    return took


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    """An uninterrupted run; an --overwrite run over old results stopped by Ctrl-C, then
    continued with the command it printed; and a run stopped by SIGTERM. The three first
    processes run side by side to save wall time."""
    root = tmp_path_factory.mktemp("interrupt")
    whole, stopped, termed = root / "whole", root / "stopped", root / "termed"
    stopped.mkdir()
    (stopped / "results.json").write_bytes(OLD_RESULTS)
    reference = start_cli(run_flags(tiny_model_dir, synthetic_data_dir, whole))
    victim = start_cli([*run_flags(tiny_model_dir, synthetic_data_dir, stopped), "--overwrite"])
    terminated = start_cli(run_flags(tiny_model_dir, synthetic_data_dir, termed))
    lora = ("checkpoints", "lora")
    sigint_s, sigterm_s = signal_when_saved(
        [
            (victim, stopped.joinpath(*lora, f"checkpoint-{STOP_AT}"), signal.SIGINT),
            (terminated, termed.joinpath(*lora, "checkpoint-4"), signal.SIGTERM),
        ]
    )
    _, victim_err = victim.communicate(timeout=60)
    _, terminated_err = terminated.communicate(timeout=60)
    _, reference_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, reference_err[-3000:]
    assert (stopped / "results.partial.json").is_file(), (victim.returncode, victim_err[-3000:])
    stopped_state = {
        "results_json": (stopped / "results.json").read_bytes(),
        "partial": json.loads((stopped / "results.partial.json").read_text()),
        "checkpoints": {p.name for p in stopped.joinpath(*lora).iterdir()},
    }
    victim_args = [*run_flags(tiny_model_dir, synthetic_data_dir, stopped), "--overwrite"]
    command = last_line(victim_err).split("Continue with: ", 1)[-1]
    resumed = subprocess.run(
        shlex.split(command), capture_output=True, text=True, timeout=300, env=start_env()
    )
    return {
        "whole": whole,
        "stopped": stopped,
        "termed": termed,
        "victim": (victim.returncode, victim_err, sigint_s),
        "terminated": (terminated.returncode, terminated_err, sigterm_s),
        "stopped_state": stopped_state,
        "command": command,
        "victim_args": victim_args,
        "resumed": resumed,
    }


def start_env() -> dict:
    return {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def test_ctrl_c_stops_at_once_and_says_how_to_continue(runs):
    code, stderr, seconds = runs["victim"]
    assert code == 130 and seconds < 20, (code, seconds, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    line = last_line(stderr)
    prefix = "Interrupted by SIGINT; latest complete checkpoint: "
    assert line.startswith(prefix), line
    checkpoint = line[len(prefix) :].split(". Continue with: ")[0]
    step = int(checkpoint.rsplit("checkpoint-", 1)[1])
    assert checkpoint.startswith(str(runs["stopped"] / "checkpoints" / "lora")), checkpoint
    assert step >= STOP_AT and f"checkpoint-{step}" in runs["stopped_state"]["checkpoints"]
    assert f"resuming from checkpoint-{step}\n" in runs["resumed"].stdout  # the one named
    args = shlex.split(runs["command"])
    # The same flags without --overwrite (a resumed run keeps what its first part wrote).
    assert args[1:] == ["-m", "lft_helpers", *runs["victim_args"][:-1], "--resume"]
    assert runs_this_python(args[0])


def test_old_complete_results_survive_the_interrupted_overwrite(runs):
    state = runs["stopped_state"]
    assert state["results_json"] == OLD_RESULTS
    assert state["partial"]["complete"] is False
    assert set(state["partial"]["runs"]) == {"baseline"}


def test_printed_command_finishes_like_an_uninterrupted_run(runs):
    resumed = runs["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint-" in resumed.stdout
    whole, done = load_results(runs["whole"]), load_results(runs["stopped"])
    assert done["complete"] is True and whole["complete"] is True
    assert not (runs["stopped"] / "results.partial.json").exists()
    for variant in ("baseline", "lora"):
        for key in ("accuracy", "f1", "eval_loss", "positive_prob", "confusion_matrix"):
            assert done["runs"][variant][key] == whole["runs"][variant][key], (variant, key)
    assert done["runs"]["lora"]["resumed_from_step"] >= STOP_AT
    assert done["eval_indices"] == whole["eval_indices"]


def test_sigterm_stops_like_ctrl_c(runs):
    code, stderr, seconds = runs["terminated"]
    assert code == 143 and seconds < 20, (code, seconds, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    line = last_line(stderr)
    assert line.startswith("Interrupted by SIGTERM; latest complete checkpoint: "), line
    assert line.endswith(" --resume") and str(runs["termed"]) in line


def test_message_without_a_checkpoint_and_for_other_commands(tmp_path):
    (tmp_path / "checkpoints" / "lora" / "checkpoint-3").mkdir(parents=True)  # cut short
    assert latest_checkpoint(tmp_path) is None
    argv = ["run", "--output-dir", str(tmp_path)]
    line = interrupted_message(signal.SIGINT, tmp_path, argv)
    assert line.startswith("Interrupted by SIGINT; no complete checkpoint yet (--save-steps N")
    assert line.endswith(f"-m lft_helpers run --output-dir {tmp_path} --resume")
    assert interrupted_message(signal.SIGTERM, None, ["report", "x"]) == "Interrupted by SIGTERM."


def old_run(folder):
    """A finished run's files, written an hour before the interrupted run began."""
    checkpoint = folder / "checkpoints" / "lora" / "checkpoint-8"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    (folder / "results.json").write_text('{"complete": true}')
    hour_ago = time.time() - 3600
    for path in (checkpoint / "trainer_state.json", folder / "results.json"):
        os.utime(path, (hour_ago, hour_ago))
    return checkpoint


def test_an_overwrite_stopped_before_it_saved_anything_says_to_start_again(tmp_path):
    """Its files are the old run's: a --resume would keep or continue that run instead."""
    old_run(tmp_path)
    argv = ["run", "--output-dir", str(tmp_path), "--overwrite"]
    line = interrupted_message(signal.SIGINT, tmp_path, argv, started=time.time() - 5)
    assert line.startswith("Interrupted by SIGINT before this run saved anything: "), line
    assert "still holds the previous run" in line and "checkpoint-8" not in line
    assert line.endswith(f"-m lft_helpers run --output-dir {tmp_path} --overwrite")


def test_an_overwrite_names_only_its_own_checkpoints(tmp_path):
    started = time.time() - 5
    old_run(tmp_path)
    (tmp_path / "results.partial.json").write_text('{"complete": false}')  # this run's
    argv = ["run", "--output-dir", str(tmp_path), "--overwrite"]
    line = interrupted_message(signal.SIGINT, tmp_path, argv, started=started)
    assert line.startswith("Interrupted by SIGINT; no complete checkpoint yet"), line
    assert line.endswith(f"-m lft_helpers run --output-dir {tmp_path} --resume")


def runs_this_python(program: str) -> bool:
    return os.path.abspath(shutil.which(program) or program) == os.path.abspath(sys.executable)


def test_resume_command_quotes_and_does_not_repeat_flags():
    args = shlex.split(resume_command(["run", "--data", "my data", "--resume", "--overwrite"]))
    assert args[1:] == ["-m", "lft_helpers", "run", "--data", "my data", "--resume"]
    assert runs_this_python(args[0])


def test_report_reads_the_progress_file(runs, tmp_path, capsys):
    from lft_helpers.cli import main

    path = tmp_path / "results.partial.json"
    path.write_text(json.dumps(runs["stopped_state"]["partial"]))
    assert main(["report", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "Untrained head (baseline)" in shown and "LoRA" not in shown.split("\n", 1)[1]
