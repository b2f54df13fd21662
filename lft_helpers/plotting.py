"""Figures built from results files. Each takes an explicit PNG path and returns the figure."""

from __future__ import annotations

from pathlib import Path

from .reporting import VARIANT_LABELS

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


def _overlap(a: dict, b: dict) -> bool:
    lo_a, hi_a = a.get("accuracy_ci", (a["accuracy"],) * 2)
    lo_b, hi_b = b.get("accuracy_ci", (b["accuracy"],) * 2)
    return lo_a <= hi_b and lo_b <= hi_a


def accuracy_finding(results: dict) -> str:
    """The accuracy chart's headline: LoRA against full fine-tuning, or the best variant."""
    runs = results["runs"]
    if {"lora", "full"} <= set(runs):
        lora, full = runs["lora"], runs["full"]
        relation = "within" if _overlap(lora, full) else "outside"
        return (
            f"LoRA ({lora['accuracy']:.3f}) and full fine-tuning ({full['accuracy']:.3f}): "
            f"{relation} each other's 95% interval"
        )
    best = max(runs, key=lambda n: runs[n]["accuracy"])
    return f"{VARIANT_LABELS.get(best, best)} is most accurate ({runs[best]['accuracy']:.3f})"


def params_finding(results: dict) -> str:
    """The parameter chart's headline: what LoRA gives up for the parameters it does not train."""
    runs = results["runs"]
    if not {"lora", "full"} <= set(runs):
        return "Accuracy against trainable parameters"
    lora, full = runs["lora"], runs["full"]
    gap = 100 * (full["accuracy"] - lora["accuracy"])
    side = "below" if gap >= 0 else "above"
    return (
        f"LoRA trains {lora['trainable_pct']:.2g}% of the weights and lands "
        f"{abs(gap):.1f} points {side} full fine-tuning"
    )


def plot_accuracy(results: dict, path: str | Path):
    """Accuracy of each variant with its 95% interval, against chance."""
    plt = _pyplot()
    names = _ordered(results)
    runs = [results["runs"][n] for n in names]
    acc = [r["accuracy"] for r in runs]
    err = [
        [a - r.get("accuracy_ci", [a, a])[0] for a, r in zip(acc, runs, strict=True)],
        [r.get("accuracy_ci", [a, a])[1] - a for a, r in zip(acc, runs, strict=True)],
    ]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    labels = [VARIANT_LABELS.get(n, n) for n in names]
    ax.bar(labels, acc, yerr=err, capsize=4, color=[COLORS.get(n, "#607d8b") for n in names])
    ax.axhline(0.5, color="gray", ls=":", lw=1, label="chance")
    for i, a in enumerate(acc):
        ax.text(i, a / 2, f"{a:.3f}", ha="center", color="white", fontweight="bold")
    ax.set_title(f"{accuracy_finding(results)}\n{_caption(results)}", fontsize=10)
    ax.set_ylabel("accuracy on eval reviews (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_params_vs_accuracy(results: dict, path: str | Path):
    """Trainable parameters (log scale) against accuracy: what each extra weight buys."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    trained = {n: results["runs"][n] for n in _ordered(results)}
    trained = {n: r for n, r in trained.items() if r.get("trainable_params")}
    for name, run in trained.items():
        ax.scatter(
            run["trainable_params"],
            run["accuracy"],
            s=60,
            color=COLORS.get(name),
            label=VARIANT_LABELS.get(name, name),
            zorder=3,
        )
        ax.annotate(
            f"{run['trainable_pct']:.3g}% trained",
            (run["trainable_params"], run["accuracy"]),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=8,
        )
    if "baseline" in results["runs"]:
        ax.axhline(
            results["runs"]["baseline"]["accuracy"],
            color="gray",
            ls=":",
            label="untrained baseline",
        )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{params_finding(results)}\n{_caption(results)}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_confusion_matrix(results: dict, path: str | Path, variant: str = "lora"):
    """Counts of true against predicted labels on the eval reviews."""
    plt = _pyplot()
    matrix = results["runs"][variant]["confusion_matrix"]
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(matrix, cmap="Blues")
    total = sum(map(sum, matrix))
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                f"{matrix[i][j]:,}\n({matrix[i][j] / total:.1%})",
                ha="center",
                va="center",
                color="white" if matrix[i][j] > total / 4 else "black",
            )
    ax.set_xticks([0, 1], ["negative", "positive"])
    ax.set_yticks([0, 1], ["negative", "positive"])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    fn, fp = matrix[1][0], matrix[0][1]
    more = "positives missed" if fn > fp else "negatives called positive"
    ax.set_title(
        f"{VARIANT_LABELS.get(variant, variant)}: errors lean to {more}\n"
        f"({fn} false negatives, {fp} false positives)",
        fontsize=10,
    )
    return _save(fig, path)


def plot_token_lengths(lengths, max_length: int, path: str | Path):
    """How long the reviews are in tokens, and how many truncation cuts."""
    import numpy as np

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


def _epochs(count: float) -> str:
    return f"{count:g} epoch{'' if count == 1 else 's'}"


def _budget_note(results: dict) -> str:
    """What the sweep's reduced budget is, against the main run's, for the figure title."""
    cfg, main = results["config"], (results.get("sweep") or {}).get("main_budget")
    if not main:
        return _epochs(cfg["epochs"])
    if all(cfg[name] == value for name, value in main.items()):
        return f"{_epochs(cfg['epochs'])}, the same budget as the main run"
    return (
        f"reduced budget, {_epochs(cfg['epochs'])} (main run: {main['train_size']:,} train / "
        f"{main['eval_size']:,} eval, max length {main['max_length']}, {_epochs(main['epochs'])})"
    )


def sweep_finding(results: dict) -> str:
    """The sweep's headline: accuracy at the smallest and largest query/value rank."""
    runs = [r for name, r in results["runs"].items() if "all-linear" not in name]
    if len(runs) < 2:
        return "LoRA rank sweep"
    low, high = min(runs, key=lambda r: r["r"]), max(runs, key=lambda r: r["r"])
    trend = "rises" if high["accuracy"] > low["accuracy"] else "does not rise"
    return (
        f"Accuracy {trend} with rank: {low['accuracy']:.3f} at r={low['r']}, "
        f"{high['accuracy']:.3f} at r={high['r']}"
    )


def plot_sweep(results: dict, path: str | Path):
    """LoRA rank sweep: accuracy (95% CI) against trainable parameters, each point labelled r."""
    plt = _pyplot()
    runs = results["runs"]
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    groups = (
        (False, dict(fmt="o-", color=COLORS["lora"], label="query/value projections")),
        (True, dict(fmt="D", color=COLORS["full"], label="all linear layers")),
    )
    for all_linear, style in groups:
        names = [n for n in runs if ("all-linear" in n) == all_linear]
        if not names:
            continue
        x = [runs[n]["trainable_params"] for n in names]
        y = [runs[n]["accuracy"] for n in names]
        ci = [runs[n].get("accuracy_ci") or [a, a] for n, a in zip(names, y, strict=True)]
        spread = [
            [a - c[0] for a, c in zip(y, ci, strict=True)],
            [c[1] - a for a, c in zip(y, ci, strict=True)],
        ]
        ax.errorbar(x, y, yerr=spread, capsize=3, ms=6, zorder=3, **style)
        for name, px, py in zip(names, x, y, strict=True):
            ax.annotate(
                f"r={runs[name]['r']}",
                (px, py),
                textcoords="offset points",
                xytext=(5, 7),
                fontsize=8,
            )
    ax.set_xscale("log")
    ax.margins(x=0.12)
    first = next(iter(runs.values()))
    head = first["trainable_params"] - first.get("adapter_params", first["trainable_params"])
    head_note = f" + {head:,} in the head" if head else " + the head"
    ax.set_xlabel(f"trainable parameters (log scale): adapters{head_note}")
    ax.set_ylabel("accuracy on eval reviews (95% CI)")
    ax.set_title(
        f"{sweep_finding(results)}\n{_caption(results)}\n{_budget_note(results)}", fontsize=9
    )
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def length_finding(table) -> str:
    """The length chart's headline: accuracy on the shortest against the longest reviews."""
    filled = table[table["reviews"] > 0]
    if len(filled) < 2:
        return "Accuracy by review length (untruncated tokens)"
    first, last = filled["accuracy"].iloc[0], filled["accuracy"].iloc[-1]
    verb = "falls" if last < first else "rises" if last > first else "stays"
    return (
        f"Accuracy {verb} from {first:.2f} on the shortest reviews to {last:.2f} on the longest "
        "(untruncated tokens)"
    )


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
    ax.axhline(0.5, color="gray", ls=":", lw=1, label="chance")
    note = ""
    if max_length:
        note = f"\nhatched: bins holding reviews over max length {max_length}, seen truncated"
    ax.set_title(f"{length_finding(table)}{note}", fontsize=9)
    ax.set_xlabel("review length (tokens)")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)
