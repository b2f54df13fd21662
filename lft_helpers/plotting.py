"""Figures built from results files. Each takes an explicit PNG path and returns the figure."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .labels import LABEL_NAMES
from .reporting import (
    VARIANT_LABELS,
    budget_note,
    confusion_finding,
    format_points,
    length_headline,
    lora_full_comparison,
    methods_headline,
    rank_series,
    seed_spread,
    seeded_comparison,
    seeded_names,
    several_seeds,
    suite_budget_note,
    sweep_headline,
)
from .scaling import scaling_note

COLORS = {"baseline": "#9e9e9e", "head": "#8d6e63", "lora": "#1e88e5", "full": "#e53935"}


def _pyplot():
    # Imported late: matplotlib picks Agg by itself where there is no display.
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def _ordered(results: dict) -> list[str]:
    """Variant names in the table's order: baseline, head, LoRA, full, then any others."""
    runs = results["runs"]
    return [n for n in VARIANT_LABELS if n in runs] + [n for n in runs if n not in VARIANT_LABELS]


def _caption(results: dict) -> str:
    cfg = results["config"]
    return (
        f"{results.get('model_label', cfg['model'])} · {cfg['train_size']:,} train / "
        f"{cfg['eval_size']:,} eval reviews · max length {cfg['max_length']}"
    )


def plot_loss_curves(results: dict, path: str | Path, variant: str = "lora"):
    """Training and validation loss over optimizer steps for one trained variant."""
    plt = _pyplot()
    history = results["runs"][variant]["history"]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.plot(history["train_steps"], history["train_loss"], label="training loss", alpha=0.8)
    if history["eval_steps"]:
        ax.plot(history["eval_steps"], history["eval_loss"], "o-", label="validation loss")
    ax.axhline(0.6931, color="gray", ls=":", lw=1, label="chance (ln 2)")
    first, last = history["train_loss"][0], history["train_loss"][-1]
    name = VARIANT_LABELS.get(variant, variant)
    ax.set_title(
        f"{name}: training loss falls from {first:.2f} to {last:.2f}\n{_caption(results)}",
        fontsize=10,
    )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats)")
    ax.legend()
    return _save(fig, path)


def accuracy_finding(results: dict, *, seeded: list[dict] | None = None) -> str:
    """The accuracy chart's headline: LoRA against full fine-tuning (over the seeds when
    `seeded` holds several), or the best variant."""
    runs = results["runs"]
    if several_seeds(seeded) and {"lora", "full"} <= set(seeded_names(seeded)):
        c = seeded_comparison(seeded, "lora", "full")
        verdict = "differ" if c["supported"] else "not separated"
        return (
            f"LoRA and full fine-tuning, {len(seeded)} seeds: {verdict}, "
            f"{format_points(c['gap_points'])} points apart on average"
        )
    comparison = lora_full_comparison(results)
    if comparison:
        lora, full = runs["lora"], runs["full"]
        verdict = "differ" if comparison["differ"] else "tie"
        return (
            f"LoRA ({lora['accuracy']:.3f}) and full fine-tuning ({full['accuracy']:.3f}) "
            f"{verdict}: {format_points(comparison['gap_points'])} points apart"
        )
    best = max(runs, key=lambda n: runs[n]["accuracy"])
    return f"{VARIANT_LABELS.get(best, best)} is most accurate ({runs[best]['accuracy']:.3f})"


def params_finding(results: dict) -> str:
    """The parameter chart's headline: what LoRA gives up for the parameters it does not train."""
    comparison = lora_full_comparison(results)
    if comparison is None:
        return "Accuracy against trainable parameters"
    lora, gap = results["runs"]["lora"], comparison["gap_points"]
    if comparison["differ"]:
        where = f"lands {format_points(gap)} points {'above' if gap > 0 else 'below'}"
    else:
        where = "ties with"
    return f"LoRA trains {lora['trainable_pct']:.2g}% of the weights and {where} full fine-tuning"


def _label_line(ax, y: float, text: str) -> None:
    """A horizontal line's name in the right margin, where no bar or point can hide it."""
    ax.annotate(
        text,
        xy=(1, y),
        xycoords=("axes fraction", "data"),
        xytext=(4, 0),
        textcoords="offset points",
        va="center",
        fontsize=8,
        color="gray",
    )


def _seed_points(seeded: list[dict] | None, names: list[str]) -> dict | None:
    """Per run the seeds' spread (`seed_spread`), when `seeded` holds several seeds of all of
    `names`; else None, and a figure shows this run with its 95% intervals."""
    if not several_seeds(seeded) or not set(names) <= set(seeded_names(seeded)):
        return None
    return seed_spread(seeded)["runs"]


def plot_accuracy(results: dict, path: str | Path, *, seeded: list[dict] | None = None):
    """Accuracy of each variant against chance: this run with its 95% interval, or, with
    `seeded` (this run and its further training seeds), the seeds' mean ± sd and each seed."""
    plt = _pyplot()
    names = _ordered(results)
    runs = [results["runs"][n] for n in names]
    spread = _seed_points(seeded, names)
    if spread:
        acc = [spread[n]["mean"] for n in names]
        sd = [spread[n]["sd"] for n in names]
        err = [sd, sd]
        ylabel = f"accuracy on eval reviews\n(mean ± sd of {len(seeded)} seeds; dots: each seed)"
    else:
        acc = [r["accuracy"] for r in runs]
        err = [
            [a - r.get("accuracy_ci", [a, a])[0] for a, r in zip(acc, runs, strict=True)],
            [r.get("accuracy_ci", [a, a])[1] - a for a, r in zip(acc, runs, strict=True)],
        ]
        ylabel = "accuracy on eval reviews (95% CI)"
    fig, ax = plt.subplots(figsize=(7.5, 4))
    labels = [VARIANT_LABELS.get(n, n) for n in names]
    ax.bar(labels, acc, yerr=err, capsize=4, color=[COLORS.get(n, "#607d8b") for n in names])
    if spread:
        for i, name in enumerate(names):
            seeds = spread[name]["accuracy"]
            offsets = np.linspace(-0.15, 0.15, len(seeds))
            ax.scatter(i + offsets, seeds, s=14, color="black", zorder=3)
    ax.axhline(0.5, color="gray", ls=":", lw=1)
    _label_line(ax, 0.5, "chance")
    for i, a in enumerate(acc):
        ax.text(i, a / 2, f"{a:.3f}", ha="center", color="white", fontweight="bold")
    ax.set_title(f"{accuracy_finding(results, seeded=seeded)}\n{_caption(results)}", fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9 if spread else None)
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", labelsize=8)
    return _save(fig, path)


def plot_params_vs_accuracy(results: dict, path: str | Path):
    """Trainable parameters (log scale) against accuracy: what each extra weight buys."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    trained = {n: results["runs"][n] for n in _ordered(results)}
    trained = {n: r for n, r in trained.items() if r.get("trainable_params")}
    widest = max((r["trainable_params"] for r in trained.values()), default=1)
    for name, run in trained.items():
        x, y = run["trainable_params"], run["accuracy"]
        ax.scatter(
            x, y, s=60, color=COLORS.get(name), label=VARIANT_LABELS.get(name, name), zorder=3
        )
        # The rightmost point's label goes to its left, so it never crosses the plot's edge.
        left = x == widest
        ax.annotate(
            f"{run['trainable_pct']:.3g}% trained",
            (x, y),
            textcoords="offset points",
            xytext=(-8, -4) if left else (8, -4),
            ha="right" if left else "left",
            va="center",
            fontsize=8,
        )
    if "baseline" in results["runs"]:
        ax.axhline(results["runs"]["baseline"]["accuracy"], color="gray", ls=":", lw=1)
        _label_line(ax, results["runs"]["baseline"]["accuracy"], "untrained")
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.12)
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{params_finding(results)}\n{_caption(results)}", fontsize=10)
    ax.legend(fontsize=8, loc="center right")
    return _save(fig, path)


def plot_confusion_matrix(results: dict, path: str | Path, variant: str = "lora"):
    """Counts of true against predicted labels on the eval reviews; the title says which way
    the errors lean only when a binomial test says they do (`reporting.error_balance`)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    run = results["runs"][variant]
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    ConfusionMatrixDisplay(
        np.asarray(run["confusion_matrix"]), display_labels=[n.lower() for n in LABEL_NAMES]
    ).plot(ax=ax, cmap="Blues", colorbar=False, values_format=",d")
    finding = confusion_finding(run).replace("; ", ",\n", 1).replace(" (", "\n(", 1)
    ax.set_title(f"{VARIANT_LABELS.get(variant, variant)}: {finding}", fontsize=10)
    return _save(fig, path)


def plot_token_lengths(lengths, max_length: int, path: str | Path):
    """How long the reviews are in tokens, and how many truncation cuts."""
    plt = _pyplot()
    lengths = np.asarray(lengths)
    cut = float((lengths > max_length).mean())
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.hist(lengths, bins=60, color="#1e88e5", alpha=0.8)
    ax.axvline(max_length, color="#e53935", ls="--", label=f"max length {max_length}")
    ax.set_xlabel("review length (tokens, untruncated)")
    ax.set_ylabel("reviews")
    ax.set_title(
        f"{cut:.0%} of reviews are longer than {max_length} tokens and get truncated "
        f"(median {int(np.median(lengths))})",
        fontsize=10,
    )
    ax.legend()
    return _save(fig, path)


def plot_sweep(results: dict, path: str | Path, *, seeded: list[dict] | None = None):
    """LoRA rank sweep: accuracy against trainable parameters, each point labelled r: this run
    with its 95% intervals, or, with `seeded` (the sweep over several training seeds), the
    seeds' mean ± sd and each seed."""
    plt = _pyplot()
    runs = results["runs"]
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    series, others = rank_series(results)
    spread = _seed_points(seeded, series + others)
    first_targets = "/".join(runs[series[0]]["targets"])
    groups = (
        (series, dict(fmt="o-", color=COLORS["lora"], label=f"{first_targets} at each rank")),
        (others, dict(fmt="D", color=COLORS["full"], label="other target modules")),
    )
    for names, style in groups:
        if not names:
            continue
        x = [runs[n]["trainable_params"] for n in names]
        if spread:
            y = [spread[n]["mean"] for n in names]
            bars = [[spread[n]["sd"]] * 2 for n in names]
            for n, px in zip(names, x, strict=True):
                seeds = spread[n]["accuracy"]
                ax.scatter([px] * len(seeds), seeds, s=10, color="black", alpha=0.5, zorder=4)
        else:
            y = [runs[n]["accuracy"] for n in names]
            cis = [runs[n].get("accuracy_ci") or [a, a] for n, a in zip(names, y, strict=True)]
            bars = [[a - c[0], c[1] - a] for a, c in zip(y, cis, strict=True)]
        low, high = [b[0] for b in bars], [b[1] for b in bars]
        ax.errorbar(x, y, yerr=[low, high], capsize=3, ms=6, zorder=3, **style)
        tops = [
            max([a + h, *(spread[n]["accuracy"] if spread else [])])
            for n, a, h in zip(names, y, high, strict=True)
        ]
        for name, px, top in zip(names, x, tops, strict=True):
            # Above the error bar's cap (and the highest seed): clear of the bar, and of the
            # line, which leaves each point up and to the right well below its cap.
            ax.annotate(
                name, (px, top), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8
            )
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.1)
    first = next(iter(runs.values()))
    head = first["trainable_params"] - first.get("adapter_params", first["trainable_params"])
    head_note = f" + {head:,} in the head" if head else " + the head"
    ax.set_xlabel(f"trainable parameters (log scale): adapters{head_note}")
    if spread:
        ax.set_ylabel(f"accuracy on eval reviews\n(mean ± sd of {len(seeded)} seeds; dots: seeds)")
    else:
        ax.set_ylabel("accuracy on eval reviews (95% CI)")
    budget = budget_note(results).replace(" (main run", "\n(main run")
    model = results.get("model_label", results["config"]["model"])
    headline = sweep_headline(results, seeded=seeded)
    ax.set_title(f"{headline}\n{model}\n{budget}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_accuracy_by_length(table, path: str | Path, max_length: int | None = None):
    """Accuracy per review-length bin (analysis.accuracy_by_length); bins reaching past
    `max_length`, whose reviews the model saw truncated, are hatched."""
    import pandas as pd

    plt = _pyplot()
    names = [f"{name}\n(n={n:,})" for name, n in zip(table.index, table["reviews"], strict=True)]
    spread = [
        (table["accuracy"] - table["acc low"]).fillna(0).tolist(),
        (table["acc high"] - table["accuracy"]).fillna(0).tolist(),
    ]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    bars = ax.bar(names, table["accuracy"].fillna(0), yerr=spread, capsize=4, color=COLORS["lora"])
    for bar, top in zip(bars, table["max tokens"], strict=True):
        cut = max_length is not None and (pd.isna(top) or top > max_length)
        bar.set_hatch("//" if cut else "")
    ax.axhline(0.5, color="gray", ls=":", lw=1)
    _label_line(ax, 0.5, "chance")
    note = ""
    if max_length:
        note = f"\nhatched: bins holding reviews over max length {max_length}, seen truncated"
    ax.set_title(f"{length_headline(table)}{note}", fontsize=9)
    ax.set_xlabel("review length (tokens)")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_ylim(0, 1.05)
    return _save(fig, path)


def pareto_front(points) -> list[int]:
    """Indices of the (cost, accuracy) points no other point beats on both: cheaper or as
    cheap, and more accurate. Sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_methods_pareto(summary: dict, path: str | Path):
    """The method suite: mean accuracy (sd over seeds as error bars) against trainable
    parameters and against training time, both log scale, the Pareto front (dashed) drawn
    through the methods nothing beats on both. One colour and marker per method, named in the
    legend below (labels beside crowded points would overlap); methods without a result are
    named under it."""
    plt = _pyplot()
    rows = [r for r in summary["rows"] if r.get("accuracy_mean") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), sharey=True)
    panels = (
        ("trainable_params", "trainable parameters (log scale)"),
        ("train_time_s", "training time per run, s (log scale)"),
    )
    colors = plt.get_cmap("tab20").colors
    markers = "osD^vP*Xh<>"
    for ax, (key, xlabel) in zip(axes, panels, strict=True):
        points = []
        for i, row in enumerate(rows):
            if not row.get(key):
                continue
            points.append((row[key], row["accuracy_mean"]))
            ax.errorbar(
                *points[-1],
                yerr=row.get("accuracy_sd") or 0,
                fmt=markers[i % len(markers)],
                color=colors[i % len(colors)],
                capsize=3,
                ms=6,
                label=row["label"],
            )
        front = [points[i] for i in pareto_front(points)]
        if front:
            ax.step(*zip(*front, strict=True), where="post", color="gray", lw=1, ls="--")
        ax.set_xscale("log")
        label_log_axis(ax, [x for x, _ in points])
        ax.margins(x=0.1, y=0.1)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("accuracy on eval reviews (mean ± sd over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    missing = [r["label"] for r in summary["rows"] if r.get("accuracy_mean") is None]
    if missing:
        fig.text(0.01, 0.005, f"No result (see the table): {', '.join(missing)}", fontsize=8)
    title = f"{methods_headline(summary)}\n{suite_budget_note(summary)}"
    fig.suptitle(wrap_title(title), fontsize=9)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(rows) + 3) // 4), 1, 1))  # room for the legend
    fig.savefig(Path(path), dpi=110)
    return fig


def wrap_title(text: str, width: int = 120) -> str:
    """A figure title broken into lines that fit an 11-inch figure at font size 9."""
    return "\n".join(textwrap.fill(line, width) for line in text.splitlines())


def plain_tick(value: float, _position=None) -> str:
    """Log-axis ticks as people write numbers: 1,000, 0.5 and 10M, not 10^3, 5x10^-1, 10^7."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def label_log_axis(ax, values) -> None:
    """Readable ticks on a log x axis: plain numbers, and in-between ticks labelled too when
    the values span few decades: every one within a decade (else the axis could show no number
    at all), the 2s, 3s and 5s within two (else it would show one or two)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(plain_tick))
    values = [v for v in values if v and v > 0]
    span = max(values) / min(values) if values else float("inf")
    if span < 100:
        if span >= 10:
            ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2, 3, 5)))
        ax.xaxis.set_minor_formatter(FuncFormatter(plain_tick))
        ax.tick_params(axis="x", which="minor", labelsize=8)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def plot_scaling(summary: dict, path: str | Path):
    """Data scaling: accuracy (95% CI) against training reviews and against training minutes on
    the machine that ran it, one line per variant, both x axes log scale."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    panels = (
        ("train_size", "training reviews (log scale)"),
        ("train_minutes", "training time, minutes (log scale)"),
    )
    for ax, (key, xlabel) in zip(axes, panels, strict=True):
        for name in summary["variants"]:
            points = sorted(
                (p for p in summary["points"] if p["variant"] == name), key=lambda p: p[key]
            )
            x = [p[key] for p in points]
            y = [p["accuracy"] for p in points]
            ci = [p.get("accuracy_ci") or [a, a] for p, a in zip(points, y, strict=True)]
            spread = [
                [a - c[0] for a, c in zip(y, ci, strict=True)],
                [c[1] - a for a, c in zip(y, ci, strict=True)],
            ]
            label = VARIANT_LABELS.get(name, name)
            color = COLORS.get(name)
            ax.errorbar(x, y, yerr=spread, fmt="o-", capsize=3, ms=5, color=color, label=label)
            full = summary.get("full_test")
            if key == "train_size" and full and name in full["accuracy"]:
                acc, (low, high) = full["accuracy"][name], full["accuracy_ci"][name]
                ax.errorbar(
                    [full["train_size"]],
                    [acc],
                    yerr=[[acc - low], [high - acc]],
                    fmt="D",
                    mfc="none",
                    ms=7,
                    capsize=3,
                    color=color,
                    label=f"{label}, all {full['eval_size']:,} test reviews",
                )
        ax.set_xscale("log")
        if key == "train_size":  # every size measured gets its tick, and only those
            label_log_axis(ax, [])
            ax.set_xticks(sorted({p["train_size"] for p in summary["points"]}))
        else:
            label_log_axis(ax, [p[key] for p in summary["points"]])
        ax.margins(x=0.08, y=0.08)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the same eval reviews (95% CI)")
    axes[0].legend(fontsize=8, loc="lower right")
    title = f"{summary['finding']}\n{scaling_note(summary)}"
    fig.suptitle(wrap_title(title), fontsize=9)
    return _save(fig, path)
