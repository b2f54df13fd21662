"""Command-line twin of the notebook: `python -m lft_helpers run|compare ...`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import ENV_DATA, ENV_MODEL, ENV_PRESET, PRESETS, make_config
from .errors import LFTError
from .runtime import is_main_process


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every subcommand that runs an experiment (unset = preset value)."""
    parser.add_argument(
        "--model",
        help=f"Hub id, local model directory, or `minilm-offline` (env {ENV_MODEL}; "
        "default distilbert-base-uncased)",
    )
    parser.add_argument(
        "--data",
        help=f"Hub dataset id or a directory with train/test parquet, csv or jsonl files "
        f"(env {ENV_DATA}; default stanfordnlp/imdb)",
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        help=f"sizes: smoke (seconds), cpu (a laptop run), full (all of IMDb, GPU) "
        f"(env {ENV_PRESET}; default: full with a GPU, else cpu)",
    )
    parser.add_argument("--train-size", type=int, help="training reviews (balanced classes)")
    parser.add_argument("--eval-size", type=int, help="evaluation reviews from the test split")
    parser.add_argument("--val-size", type=int, help="validation reviews for the loss curve")
    parser.add_argument("--max-length", type=int, help="truncate reviews to this many tokens")
    parser.add_argument("--epochs", type=float, help="training epochs")
    parser.add_argument("--lr", type=float, dest="learning_rate", help="LoRA/head learning rate")
    parser.add_argument("--full-lr", type=float, dest="full_learning_rate", help="full FT lr")
    parser.add_argument("--batch-size", type=int, dest="train_batch_size", help="train batch")
    parser.add_argument("--eval-batch-size", type=int, help="evaluation batch size")
    parser.add_argument("--lora-r", type=int, help="LoRA rank r")
    parser.add_argument("--lora-alpha", type=int, help="LoRA scaling alpha")
    parser.add_argument("--lora-dropout", type=float, help="dropout on the LoRA path")
    parser.add_argument("--target-modules", help="comma-separated LoRA targets (default: q,v)")
    parser.add_argument("--text-column", help="name of the text column (default text)")
    parser.add_argument("--label-column", help="name of the label column (default label)")
    parser.add_argument(
        "--precision", choices=["auto", "fp32", "bf16", "fp16"], help="mixed precision"
    )
    parser.add_argument("--seed", type=int, help="seed for subsets, head init and training")
    parser.add_argument("--output-dir", help="where results.json and the adapter go")
    parser.add_argument(
        "--save-steps", type=int, help="checkpoint every N steps for --resume (0: never)"
    )
    parser.add_argument(
        "--save-total-limit", type=int, help="checkpoints kept per variant, newest (default 2)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace results already in --output-dir"
    )


CONFIG_FLAGS = [
    "model",
    "data",
    "train_size",
    "eval_size",
    "val_size",
    "max_length",
    "epochs",
    "learning_rate",
    "full_learning_rate",
    "train_batch_size",
    "eval_batch_size",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "text_column",
    "label_column",
    "precision",
    "seed",
    "output_dir",
    "save_steps",
    "save_total_limit",
]


def config_from_args(args: argparse.Namespace):
    return make_config(args.preset, **{k: getattr(args, k) for k in CONFIG_FLAGS})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lft_helpers",
        description="LoRA fine-tuning of a BERT-family encoder for IMDb sentiment, measured.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="baseline evaluation, then LoRA training and evaluation")
    add_config_flags(run)
    compare = sub.add_parser(
        "compare", help="baseline, head-only, LoRA and full fine-tuning on the same data"
    )
    add_config_flags(compare)
    sweep = sub.add_parser(
        "sweep",
        help="LoRA rank sweep (r=1..32 on query/value, r=8 on all linear layers) on a reduced "
        "budget (preset cpu: 1,000 train / 1,000 eval reviews, max length 128, 1 epoch); "
        "results in <output-dir>/sweep",
    )
    add_config_flags(sweep)
    sweep.add_argument(
        "--ranks", type=parse_ranks, help="comma-separated LoRA ranks (default 1,2,4,8,16,32)"
    )
    from .bench import add_bench_flags

    bench = sub.add_parser(
        "bench", help="naive vs fast speed, matmul peak, LoRA vs full memory (results/)"
    )
    add_bench_flags(bench)
    report = sub.add_parser("report", help="print the comparison table of a saved results.json")
    report.add_argument("results", help="a results.json, or the folder that holds it")
    report.add_argument("--markdown", action="store_true", help="GitHub markdown table")
    return parser


def cmd_report(args) -> int:
    """Tables are built from results files: any saved run can be shown again."""
    from .reporting import comparison_table, describe_setup, format_table, load_results, to_markdown

    try:
        results = load_results(args.results)
        table = comparison_table(results)
        setup = describe_setup(results)
    except (OSError, ValueError, KeyError) as err:
        raise LFTError(
            f"Cannot read results from `{args.results}` ({err}). Pass a results.json written "
            "by `run`, `compare` or `sweep`, or the folder holding it."
        ) from None
    print(setup)
    print(to_markdown(table) if args.markdown else format_table(table))
    return 0


def cmd_run(args, variants) -> int:
    from .pipeline import run_experiment
    from .reporting import comparison_table, format_table

    config = config_from_args(args)
    results = run_experiment(
        config, variants, log=_log, resume=args.resume, overwrite=args.overwrite
    )
    if not is_main_process():  # under torchrun / accelerate launch rank 0 alone reports
        return 0
    print(format_table(comparison_table(results)))
    print(f"Results written to {Path(config.output_dir) / 'results.json'}")
    return 0


def write_compare_figures(output_dir) -> None:
    """Accuracy bars and accuracy against trainable parameters, beside results.json."""
    from .plotting import plot_accuracy, plot_params_vs_accuracy
    from .reporting import load_results

    results, out = load_results(output_dir), Path(output_dir)
    plot_accuracy(results, out / "accuracy.png")
    plot_params_vs_accuracy(results, out / "params_vs_accuracy.png")
    print(f"Figures written to {out / 'accuracy.png'} and {out / 'params_vs_accuracy.png'}")


def parse_ranks(text: str) -> tuple[int, ...]:
    try:
        ranks = tuple(int(r) for r in text.split(",") if r.strip())
    except ValueError:
        ranks = ()
    if not ranks or min(ranks) < 1:
        raise argparse.ArgumentTypeError(f"`{text}`: give positive whole numbers such as 1,4,16")
    return ranks


def cmd_sweep(args) -> int:
    from .pipeline import check_output_dir
    from .plotting import plot_sweep
    from .reporting import format_table
    from .sweep import BUDGET_FIELDS, SWEEP_RANKS, run_sweep, sweep_config, sweep_table

    # Flags given explicitly win over the sweep's reduced budget.
    explicit = {name: getattr(args, name) for name in BUDGET_FIELDS}
    config = sweep_config(config_from_args(args), **explicit)
    out = check_output_dir(config.output_dir, args.overwrite, args.resume)
    results = run_sweep(
        config,
        ranks=args.ranks or SWEEP_RANKS,
        log=_log,
        results_path=out / "results.json",
        resume=args.resume,
    )
    plot_sweep(results, out / "sweep.png")
    print(format_table(sweep_table(results)))
    print(f"Results written to {out / 'results.json'}, figure to {out / 'sweep.png'}")
    return 0


def _log(message: str) -> None:
    if is_main_process():
        print(message, flush=True)


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, ("baseline", "lora"))
        if args.command == "compare":
            code = cmd_run(args, ("baseline", "head", "lora", "full"))
            if is_main_process():
                write_compare_figures(config_from_args(args).output_dir)
            return code
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "bench":
            from .bench import cmd_bench

            return cmd_bench(args)
    except LFTError as err:
        print(f"error: {' '.join(str(err).splitlines())}", file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1
