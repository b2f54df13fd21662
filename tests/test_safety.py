"""Safe loading (safetensors only, no pickle, no remote code) and nothing lost on a crash."""

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_config
from lft_helpers import reporting
from lft_helpers.errors import LFTError
from lft_helpers.experiment import prepare_model, run_experiment
from lft_helpers.pipeline import prepare_data
from lft_helpers.reporting import write_json_atomic
from lft_helpers.specs import VARIANT_SPECS
from lft_helpers.training import train_model

PACKAGE = Path(__file__).resolve().parents[1] / "lft_helpers"
# Pickle-based loading, remote code, and saving without safetensors.
FORBIDDEN = {
    "torch.load(": re.compile(r"\btorch\.load\s*\("),
    "pickle": re.compile(r"\bimport (c?pickle|dill)\b|\b(c?pickle|dill)\.loads?\("),
    "trust_remote_code=True": re.compile(r"trust_remote_code\s*=\s*True"),
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
    "safe_serialization=False": re.compile(r"safe_serialization\s*=\s*False"),
}
WEIGHT_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".safetensors"}
# The Trainer's own resume state: torch tensors it reloads with weights_only=True (tested below),
# and its arguments, which it writes for reference and never loads.
TRAINER_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"}


def test_package_source_never_unpickles_or_trusts_remote_code():
    sources = sorted(PACKAGE.glob("*.py"))
    assert len(sources) > 5
    found = [
        f"{path.name}:{n}: {label}"
        for path in sources
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for label, pattern in FORBIDDEN.items()
        if pattern.search(line)
    ]
    assert not found, found


def test_the_scan_would_catch_a_violation():
    line = "state = pickle.load(f) or torch.load(path) or AutoModel.from_pretrained(x, "
    line += "trust_remote_code=True)  # a docstring may still say: never pickle"
    found = {label for label, p in FORBIDDEN.items() if p.search(line)}
    assert found == {"torch.load(", "pickle", "trust_remote_code=True"}


@pytest.fixture(scope="module")
def trained(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    """Head, LoRA and full fine-tuning with checkpoints, on the tiny model (a few steps each)."""
    config = tiny_run_config(
        tiny_model_dir,
        synthetic_data_dir,
        train_size=16,
        val_size=0,
        eval_size=16,
        max_length=32,
        epochs=1.0,
        save_steps=1,
        output_dir=str(tmp_path_factory.mktemp("safety") / "run"),
    )
    run_experiment(config, ("head", "lora", "full"), log=[].append)
    return config


def test_saved_weights_are_safetensors_only(trained):
    out = Path(trained.output_dir)
    files = [p for p in out.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    outside = [p for p in files if "checkpoints" not in p.parts]
    assert {p.relative_to(out).as_posix() for p in outside} == {
        "head/head.safetensors",
        "adapter/adapter_model.safetensors",
        "full_model/model.safetensors",
    }
    inside = [p for p in files if "checkpoints" in p.parts]
    assert {p.parent.parent.name for p in inside} == {"head", "lora", "full"}
    unsafe = [p for p in inside if p.suffix != ".safetensors" and p.name not in TRAINER_STATE]
    assert not unsafe, unsafe
    for checkpoint in {p.parent for p in inside}:
        assert list(checkpoint.glob("*.safetensors")), f"{checkpoint} has no safetensors weights"


@pytest.mark.parametrize("variant", ["lora", "full"])
def test_resume_reloads_trainer_state_with_weights_only(trained, variant, monkeypatch):
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    prepared = prepare_data(trained)
    spec = VARIANT_SPECS[variant]
    model, lr = prepare_model(spec, trained), spec.learning_rate(trained)
    out = Path(trained.output_dir) / "checkpoints" / variant
    notes = []
    train_model(
        model,
        prepared.train,
        None,
        prepared.tokenizer,
        trained,
        out,
        lr,
        log=notes.append,
        resume=True,
    )
    assert any("resuming from checkpoint-" in n for n in notes), notes
    assert calls and all(flag is True for flag in calls), calls


# Nothing lost


def test_crash_while_writing_keeps_previous_results(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_json_atomic({"runs": {"lora": {"accuracy": 0.9}}}, path)
    before = path.read_bytes()

    def crash(data, f, **kwargs):
        f.write('{"runs": {"lo')
        raise OSError("disk full")

    monkeypatch.setattr(reporting.json, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic({"runs": {}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left


@pytest.fixture
def finished_run(tiny_config):
    """A finished (baseline-only) run with a leftover checkpoint folder."""
    config = tiny_config.replace(eval_size=16)
    run_experiment(config, ("baseline",), log=[].append)
    (Path(config.output_dir) / "checkpoints" / "lora" / "checkpoint-2").mkdir(parents=True)
    return config


def test_second_run_is_refused_without_overwrite(finished_run):
    results = Path(finished_run.output_dir) / "results.json"
    before = results.read_bytes()
    with pytest.raises(LFTError, match="already holds results.json and checkpoints.*--resume"):
        run_experiment(finished_run, ("baseline",), log=[].append)
    assert results.read_bytes() == before


def test_refused_overwrite_leaves_old_run_intact(finished_run):
    out = Path(finished_run.output_dir)
    before = (out / "results.json").read_bytes()
    with pytest.raises(LFTError, match="--max-length"):
        run_experiment(finished_run.replace(max_length=4096), overwrite=True, log=[].append)
    assert (out / "results.json").read_bytes() == before
    assert (out / "checkpoints" / "lora" / "checkpoint-2").is_dir()


def test_overwrite_says_so_and_drops_old_checkpoints(finished_run):
    out = Path(finished_run.output_dir)
    notes = []
    results = run_experiment(
        finished_run.replace(seed=5), ("baseline",), overwrite=True, log=notes.append
    )
    assert any(n.startswith(f"Overwriting the results in {out}") for n in notes), notes
    assert not (out / "checkpoints").exists()
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == 5
    assert results["config"]["seed"] == 5
