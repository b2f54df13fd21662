"""Command-line twin of the notebook: `python -m lft_helpers run|compare ...`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from .bench import add_bench_flags, cmd_bench
from .config import Config, describe_default, make_config
from .errors import LFTError
from .experiment import SEEDS, SEEDS_RULE, check_seeds, further_seeds, run_seeded
from .flags import add_dataclass_flags, names_parser, values_from_args
from .long_reviews import compare_truncation, describe_truncation, load_finished_run
from .methods import (
    CPU_BUDGET_MINUTES,
    DEFAULT_BUDGET,
    DEFAULT_OUTPUT_DIR,
    DEFAULT_SEEDS,
    METHODS,
    REPORT,
    SUITE_BUDGETS,
    SUMMARY,
    run_methods,
    suite_config,
)
from .pipeline import (
    interrupted_message,
    resume_command,
    sigterm_as_interrupt,
    without_resume_flags,
)
from .plotting import (
    plot_accuracy,
    plot_methods_pareto,
    plot_params_vs_accuracy,
    plot_scaling,
    plot_sweep,
)
from .prepare_imdb import add_prepare_flags, cmd_prepare_imdb
from .reporting import (
    comparison_table,
    describe_setup,
    format_table,
    load_results,
    methods_table,
    seed_table,
    seeded_lora_full_finding,
    to_markdown,
    write_json_atomic,
)
from .runtime import is_main_process
from .scaling import (
    HELD_FIELDS,
    SCALING_BUDGETS,
    SCALING_SIZES,
    SCALING_VARIANTS,
    full_test_finding,
    run_scaling,
    scaling_formats,
    scaling_plan,
    scaling_table,
)
from .shipping import check_rescore, describe_rescore
from .specs import ALL_LINEAR_RANK, SWEEP_RANKS, VARIANTS
from .sweep import BUDGET_FIELDS, SWEEP_BUDGETS, run_sweep, sweep_config, sweep_table

RUN_VARIANTS = ("baseline", "lora")
# What each size field of a budget is called in help text, in the order shown.
SIZE_WORDS = {"train_size": "train", "val_size": "validation", "eval_size": "eval"}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `Config` field (help and names live there), plus --resume/--overwrite.

    A flag not given reads None, so the preset and the environment decide its value.
    """
    add_dataclass_flags(parser, Config, describe_default=describe_default)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace results already in --output-dir"
    )


def config_from_args(args: argparse.Namespace):
    given = values_from_args(Config, args)
    return make_config(given.pop("preset", None), **given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lft_helpers",
        description="LoRA fine-tuning of a BERT-family encoder for IMDb sentiment, measured.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="baseline evaluation, then LoRA training and evaluation")
    add_config_flags(run)
    add_variants_flag(run, RUN_VARIANTS)
    add_seeds_flag(run)
    compare = sub.add_parser(
        "compare", help="baseline, head-only, LoRA and full fine-tuning on the same data"
    )
    add_config_flags(compare)
    add_variants_flag(compare, VARIANTS)
    add_seeds_flag(compare)
    add_sweep_command(sub)
    add_scaling_command(sub)
    add_methods_command(sub)
    bench = sub.add_parser(
        "bench", help="naive vs fast speed, matmul peak, LoRA vs full memory (results/)"
    )
    add_bench_flags(bench)
    report = sub.add_parser("report", help="print the comparison table of a saved results.json")
    report.add_argument("results", help="a results.json, or the folder that holds it")
    report.add_argument("--markdown", action="store_true", help="GitHub markdown table")
    add_prepare_flags(
        sub.add_parser(
            "prepare-imdb", help="Stanford's aclImdb_v1.tar.gz -> train/test parquet for --data"
        )
    )
    add_truncation_flags(
        sub.add_parser(
            "truncation",
            help="head-only vs head+tail truncation, scored with a finished run's saved adapter "
            "on its own eval reviews (<run_dir>/truncation.json)",
        )
    )
    add_rescore_command(sub)
    return parser


# --- Help text built from the values it names, so it cannot drift from them -------------------


def describe_budget(budget: dict) -> str:
    """A budget's sizes as help text: '1,200 train / 200 validation / 1,000 eval reviews, max
    length 128, 1 epoch'; fields the budget does not set are not named."""
    parts = []
    sizes = [f"{budget[name]:,} {word}" for name, word in SIZE_WORDS.items() if name in budget]
    if sizes:
        parts.append(" / ".join(sizes) + " reviews")
    if "max_length" in budget:
        parts.append(f"max length {budget['max_length']}")
    if "epochs" in budget:
        epochs = budget["epochs"]
        parts.append(f"{epochs:g} epoch{'' if epochs == 1 else 's'}")
    return ", ".join(parts)


def per_preset(budgets: dict, name: str, *, show=str) -> str:
    """A budget field's value for each preset, presets that share one named together:
    'smoke 0, cpu and full 24800'."""
    presets_of: dict = {}
    for preset, budget in budgets.items():
        presets_of.setdefault(budget[name], []).append(preset)
    return ", ".join(
        f"{' and '.join(presets)} {show(value)}" for value, presets in presets_of.items()
    )


def comma_list(values) -> str:
    """Values as a comma-separated flag takes them: '1,2,4'."""
    return ",".join(str(v) for v in values)


# --- Commands with their own flags --------------------------------------------------------------


def add_sweep_command(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help=f"LoRA rank sweep (r={min(SWEEP_RANKS)}..{max(SWEEP_RANKS)} on query/value, "
        f"r={ALL_LINEAR_RANK} on all linear layers) on a reduced budget (preset cpu: "
        f"{describe_budget(SWEEP_BUDGETS['cpu'])}); results in <output-dir>/sweep",
    )
    add_config_flags(sweep)
    add_seeds_flag(sweep)
    sweep.add_argument(
        "--ranks",
        type=parse_ranks,
        help=f"comma-separated LoRA ranks (default {comma_list(SWEEP_RANKS)})",
    )


def add_scaling_command(sub) -> None:
    scaling = sub.add_parser(
        "scaling",
        help=f"data scaling: LoRA and full fine-tuning at {min(SCALING_SIZES):,} to "
        f"{max(SCALING_SIZES):,} training reviews for the same epochs, scored on the same eval "
        f"reviews (preset cpu: {describe_budget(SCALING_BUDGETS['cpu'])}, about an hour on 2 "
        "cores); results and figure in <output-dir>/scaling",
    )
    add_config_flags(scaling)
    scaling.add_argument(
        "--sizes",
        type=parse_ranks,
        help="comma-separated training sizes (default: "
        f"{per_preset(SCALING_BUDGETS, 'sizes', show=comma_list)})",
    )
    scaling.add_argument(
        "--full-test-reviews",
        type=int,
        help="score the largest size once more on this many test reviews (0: not; default: "
        f"{per_preset(SCALING_BUDGETS, 'full_test_reviews')}, every test review that does not "
        "repeat a train review)",
    )
    add_variants_flag(scaling, SCALING_VARIANTS)


def add_methods_command(sub) -> None:
    methods = sub.add_parser(
        "methods",
        help=f"the PEFT method suite: {len(METHODS)} methods, each at the learning rate its grid "
        "picks on the validation split, for --seeds seeds on the same data; one file per run "
        f"in <output-dir>/runs (default {DEFAULT_OUTPUT_DIR}), {SUMMARY}, {REPORT}, pareto.png",
    )
    add_config_flags(methods)
    methods.add_argument(
        "--methods",
        type=parse_methods,
        help=f"comma-separated methods (default: all): {', '.join(METHODS)}",
    )
    add_seeds_flag(
        methods,
        default=DEFAULT_SEEDS,
        help="seeds per method at its chosen learning rate (default %(default)s)",
    )
    methods.add_argument(
        "--budget",
        choices=list(SUITE_BUDGETS),
        default=DEFAULT_BUDGET,
        help="sizes every method runs on: smoke (the smoke preset), cpu "
        f"({describe_budget(SUITE_BUDGETS['cpu'])}: about {CPU_BUDGET_MINUTES} minutes for the "
        f"whole suite with {DEFAULT_SEEDS} seeds on a 2-core CPU), config (the preset's and "
        "flags' sizes); flags given explicitly win (default %(default)s)",
    )


def add_rescore_command(sub) -> None:
    rescore = sub.add_parser(
        "rescore",
        help="reload a finished run's saved LoRA adapter with plain PEFT and score it on the "
        "run's own eval reviews: the same accuracy? (<run_dir>/rescore.json)",
    )
    rescore.add_argument("run_dir", help="a finished run's --output-dir (results.json, adapter/)")
    precision = config_field("precision")  # the choices and default a run scored with
    rescore.add_argument(
        "--precision",
        choices=precision.metadata["choices"],
        default=precision.default,
        help="inference precision (default: %(default)s, as the run scored)",
    )


def config_field(name: str) -> dataclasses.Field:
    return next(field for field in dataclasses.fields(Config) if field.name == name)


def cmd_report(args) -> int:
    """Tables are built from results files: any saved run can be shown again."""
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


def command_line(argv) -> str:
    """What a run records as the command that made it: `argv` without --resume/--overwrite."""
    return shlex.join(["python", "-m", "lft_helpers", *without_resume_flags(argv)])


def cmd_run(args, variants, argv) -> int:
    config = config_from_args(args)
    seeded = run_seeded(
        config,
        variants,
        seeds=args.seeds,
        log=_log,
        resume=args.resume,
        overwrite=args.overwrite,
        extra={"command": command_line(argv)},
    )
    if not is_main_process():  # under torchrun / accelerate launch rank 0 alone reports
        return 0
    print(format_table(comparison_table(seeded[0])))
    print(f"Results written to {Path(config.output_dir) / 'results.json'}")
    report_seeds(config.output_dir, args.seeds)
    return 0


def report_seeds(output_dir, seeds: int) -> None:
    """With several seeds: the spread over them, and where each seed's results went."""
    if seeds < 2:
        return
    spread = load_results(Path(output_dir) / SEEDS)
    print(format_table(seed_table(spread)))
    finding = seeded_lora_full_finding(spread)
    if finding:
        print(finding)
    print(f"Seeds: {Path(output_dir) / SEEDS}, each seed's run in {Path(output_dir) / 'seeds'}")


def write_compare_figures(config: Config) -> None:
    """Accuracy bars (over the seeds, where there are several) and accuracy against trainable
    parameters, beside results.json."""
    results, out = load_results(config.output_dir), Path(config.output_dir)
    plot_accuracy(results, out / "accuracy.png", seeded=[results, *further_seeds(config)])
    plot_params_vs_accuracy(results, out / "params_vs_accuracy.png")
    print(f"Figures written to {out / 'accuracy.png'} and {out / 'params_vs_accuracy.png'}")


def add_seeds_flag(
    parser: argparse.ArgumentParser,
    *,
    default: int = 1,
    help: str = "training seeds, from --seed up (default %(default)s); every seed trains on the "
    "data --seed picks, so runs pair review by review; seeds after the first go to "
    f"<output-dir>/seeds/seed<k>, their spread to {SEEDS}",
) -> None:
    """The one --seeds flag; `methods` gives it its own default and help."""
    parser.add_argument("--seeds", type=parse_seeds, default=default, help=help)


def parse_seeds(text: str) -> int:
    """An argparse `type` for --seeds: the runners' own check, so a bad count stops the command
    before it starts."""
    try:
        return check_seeds(int(text))
    except (ValueError, LFTError):
        raise argparse.ArgumentTypeError(f"`{text}`: {SEEDS_RULE}") from None


def add_variants_flag(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "--variants",
        type=parse_variants,
        default=tuple(default),
        help=f"comma-separated variants from {', '.join(VARIANTS)} (default {','.join(default)})",
    )


parse_variants = names_parser(VARIANTS, "variant(s)")
parse_methods = names_parser(METHODS, "method(s)")


def parse_ranks(text: str) -> tuple[int, ...]:
    try:
        ranks = tuple(int(r) for r in text.split(",") if r.strip())
    except ValueError:
        ranks = ()
    if not ranks or min(ranks) < 1:
        raise argparse.ArgumentTypeError(f"`{text}`: give positive whole numbers such as 1,4,16")
    return ranks


def cmd_sweep(args, argv) -> int:
    config = config_from_args(args)
    # Flags given explicitly win over the sweep's reduced budget.
    budget = {name: getattr(args, name) for name in BUDGET_FIELDS}
    kwargs = {"ranks": args.ranks} if args.ranks else {}
    results = run_sweep(
        config,
        budget=budget,
        log=_log,
        resume=args.resume,
        overwrite=args.overwrite,
        seeds=args.seeds,
        command=command_line(argv),
        **kwargs,
    )
    swept = sweep_config(config, **budget)
    out = Path(swept.output_dir)
    plot_sweep(results, out / "sweep.png", seeded=[results, *further_seeds(swept)])
    print(format_table(sweep_table(results)))
    print(f"Results written to {out / 'results.json'}, figure to {out / 'sweep.png'}")
    report_seeds(out, args.seeds)
    return 0


def cmd_scaling(args, argv) -> int:
    config = config_from_args(args)
    held = {name: getattr(args, name) for name in HELD_FIELDS}  # flags given win over the budget
    summary = run_scaling(
        config,
        sizes=args.sizes,
        variants=args.variants,
        log=_log,
        resume=args.resume,
        overwrite=args.overwrite,
        full_test_reviews=args.full_test_reviews,
        command=command_line(argv),
        **held,
    )
    if not is_main_process():
        return 0
    out = Path(scaling_plan(config, args.sizes, **held)[1].output_dir)
    plot_scaling(summary, out / "scaling.png")
    table = scaling_table(summary)
    print(format_table(table, scaling_formats(table)))
    print(summary["finding"])
    if summary.get("full_test"):
        print(full_test_finding(summary))
    print(f"Results in {out}: summary.json, scaling.png and n<size>/results.json")
    return 0


def cmd_methods(args, argv) -> int:
    # Flags given explicitly win over the budget; the suite has its own default folder.
    given = {**values_from_args(Config, args), "output_dir": args.output_dir or DEFAULT_OUTPUT_DIR}
    config = suite_config(config_from_args(args), args.budget, **given)
    try:
        summary = run_methods(
            config,
            args.methods,
            seeds=args.seeds,
            budget=args.budget,
            log=_log,
            resume=args.resume,
            overwrite=args.overwrite,
            command=command_line(argv),
        )
    except KeyboardInterrupt:
        _log(
            f"Finished runs are kept in {config.output_dir}; continue with: {resume_command(argv)}"
        )
        raise
    if not is_main_process():
        return 0
    out = Path(config.output_dir)
    plot_methods_pareto(summary, out / "pareto.png")
    print(format_table(methods_table(summary)))
    print(summary["ranking"]["sentence"])
    print(
        f"Runs in {out / 'runs'}; {out / SUMMARY}, {out / REPORT} and {out / 'pareto.png'} written"
    )
    return 0


def add_truncation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished run's --output-dir (results.json, adapter/)")
    parser.add_argument("--max-length", type=int, help="tokens kept (default: the run's)")
    parser.add_argument(
        "--head-tokens", type=int, help="leading tokens kept by head+tail (default: the run's)"
    )
    parser.add_argument("--output", help="where the JSON goes (default <run_dir>/truncation.json)")


def cmd_truncation(args) -> int:
    report = compare_truncation(
        args.run_dir, max_length=args.max_length, head_tokens=args.head_tokens
    )
    target = Path(args.output or Path(args.run_dir) / "truncation.json")
    write_json_atomic(report, target)
    print("\n".join(describe_truncation(report)))
    print(f"Written to {target}")
    return 0


def cmd_rescore(args) -> int:
    load_finished_run(args.run_dir)  # one clear error for a folder without results or adapter
    check = check_rescore(args.run_dir, args.precision)
    target = Path(args.run_dir) / "rescore.json"
    write_json_atomic(check, target)
    print(describe_rescore(check))
    print(f"Written to {target}")
    return 0 if check["same_accuracy"] else 1


def _log(message: str) -> None:
    if is_main_process():
        print(message, flush=True)


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else list(argv)
    started = time.time()  # what an interrupted --overwrite run wrote is newer than this
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            if args.command == "run":
                return cmd_run(args, args.variants, argv)
            if args.command == "compare":
                code = cmd_run(args, args.variants, argv)
                if is_main_process():
                    write_compare_figures(config_from_args(args))
                return code
            if args.command == "scaling":
                return cmd_scaling(args, argv)
            if args.command == "sweep":
                return cmd_sweep(args, argv)
            if args.command == "methods":
                return cmd_methods(args, argv)
            if args.command == "report":
                return cmd_report(args)
            if args.command == "bench":
                return cmd_bench(args)
            if args.command == "truncation":
                return cmd_truncation(args)
            if args.command == "rescore":
                return cmd_rescore(args)
            if args.command == "prepare-imdb":
                return cmd_prepare_imdb(args)
    except LFTError as err:
        print(f"error: {' '.join(str(err).splitlines())}", file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM raised as RunInterrupted
        signum = getattr(stop, "signum", signal.SIGINT)
        folder = None  # where a training command keeps its checkpoints
        with contextlib.suppress(LFTError):
            if args.command in ("run", "compare"):
                folder = config_from_args(args).output_dir
            elif args.command == "sweep":
                folder = sweep_config(config_from_args(args)).output_dir
            elif args.command == "scaling":
                folder = scaling_plan(config_from_args(args), args.sizes)[1].output_dir
        if is_main_process():
            print(interrupted_message(signum, folder, argv, started), file=sys.stderr)
        return 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    return 1
