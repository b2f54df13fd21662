"""The benchmark: naive against fast evaluation and training, the machine's peak, and memory.

`python -m lft_helpers bench` measures, in one process and on the same real reviews, what each
speed-up of the fast path buys, checks that it keeps the predictions, and puts each figure next
to the machine's own matmul peak. One module per thing measured:

- `peak`: the machine's matmul peak and matrix instruction sets;
- `eval_speed`: evaluation, from naive to the fast inference path, one step at a time;
- `train_speed`: training through the project's `Trainer`, naive and fast, LoRA and full,
  and a profile of one fast step;
- `memory`: LoRA's training memory against full fine-tuning's, each in a fresh process;
- `flops`: the FLOPs each of those computes, counted from the model's shapes;
- `settings` and `report`: what a run measures (its flags), the report and its text.

The `measure_*` functions return data; `report.format_report` turns a report into text.
"""

from .report import cmd_bench, format_report, run_bench
from .settings import BenchSettings, add_bench_flags

__all__ = ["BenchSettings", "add_bench_flags", "cmd_bench", "format_report", "run_bench"]
