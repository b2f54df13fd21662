"""`run` under torchrun: two CPU processes (gloo) train one model and leave one results file."""

import os
import subprocess
import sys

from lft_helpers.reporting import load_results


def test_two_processes_train_together_and_rank_0_writes_once(
    tiny_model_dir, synthetic_data_dir, tmp_path
):
    out = tmp_path / "out"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "lft_helpers", "run", "--model", str(tiny_model_dir)),
        *("--data", str(synthetic_data_dir), "--preset", "smoke", "--precision", "fp32"),
        *("--output-dir", str(out)),
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Results written to") == 1  # rank 0 alone reports
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*results.json*"))
    assert written == [out.relative_to(tmp_path) / "results.json"]  # no copy, no temp file left
    results = load_results(out)
    assert set(results["runs"]) == {"baseline", "lora"}
    lora = results["runs"]["lora"]
    assert lora["world_size"] == 2
    # The two processes split each epoch: 32 reviews, 8 per process and step -> 2 steps, not 4.
    config = results["config"]
    per_step = config["train_batch_size"] * 2
    assert max(lora["history"]["train_steps"]) == config["train_size"] // per_step
    # A two-class loss near ln 2 = 0.69: the logged loss must not be scaled by the world size.
    assert all(0.3 < loss < 1.0 for loss in lora["history"]["train_loss"])
    assert all(0.3 < loss < 1.0 for loss in lora["history"]["eval_loss"])
    assert len(results["eval_indices"]) == config["eval_size"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
