"""Training time and speed arithmetic, and the CPU peak-memory probe."""

import time

import numpy as np
import pytest
import torch

from lft_helpers.runtime import PeakMemory
from lft_helpers.training import training_speed

# A run of 100 steps over 2 epochs of 400 reviews: validation at steps 50 and 100, 5 s each.
HISTORY = [
    {"step": 10, "loss": 0.69},
    {"step": 50, "eval_loss": 0.5, "eval_runtime": 5.0},
    {"step": 60, "loss": 0.4},
    {"step": 100, "eval_loss": 0.3, "eval_runtime": 5.0},
]


def test_speed_excludes_validation_time():
    speed = training_speed(
        HISTORY, runtime_s=90.0, first_step=0, max_steps=100, samples_per_epoch=400, epochs=2
    )
    assert speed["val_runtime_s"] == 10.0
    assert speed["train_samples_per_second"] == pytest.approx(800 / 80)


def test_after_a_resume_only_the_remaining_steps_count():
    # Resumed at step 50: this process ran steps 51-100 (400 reviews) and one validation pass.
    speed = training_speed(
        HISTORY, runtime_s=45.0, first_step=50, max_steps=100, samples_per_epoch=400, epochs=2
    )
    assert speed["val_runtime_s"] == 5.0
    assert speed["train_samples_per_second"] == pytest.approx(400 / 40)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU probe samples resident memory")
def test_peak_memory_sees_a_short_lived_allocation():
    with PeakMemory(interval_s=0.005) as memory:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched, then freed inside the block
        block.sum()
        time.sleep(0.05)
        del block
    assert memory.peak_mb - memory.start_mb > 150
