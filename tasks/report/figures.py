"""The report's figures: the tutorial's "Training Loss" plot, curves averaged over seeds with a
band, test accuracy with error bars, a confusion matrix, validation accuracy against the learning
rate, and test accuracy against depth.

Each function takes the small result dicts (or the per-activation summary) and returns a
matplotlib `Figure`, built without pyplot's global state, so figures can be drawn in worker
threads; `save` writes one. Non-finite values are left out, never drawn.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from tasks.report.stats import CONFIDENCE

FIGURE_DPI = 100
# Diverged runs: "x" markers in axes fraction, from just under the top edge downwards.
MARKER_TOP, MARKER_STEP = 0.97, 0.045


def _axes(figsize: tuple[float, float]):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, path: Path) -> None:
    """Write `fig` as a PNG (the figure holds no global state to release)."""
    fig.savefig(path, dpi=FIGURE_DPI)


def _colours(activations: list[str]) -> dict:
    palette = colormaps["tab10" if len(activations) <= 10 else "tab20"]
    return {a: palette(i % palette.N) for i, a in enumerate(activations)}


def _is_finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _diverged_at(r: dict) -> int:
    """0-based epoch where the cost stopped being finite (else the first non-finite cost)."""
    if r.get("diverged_epoch") is not None:
        return int(r["diverged_epoch"])
    costs = r.get("costs") or []
    bad = [i for i, c in enumerate(costs) if not _is_finite(c)]
    if bad:
        return bad[0]
    return max(int(r.get("epochs_run") or len(costs)) - 1, 0)


def plot_training_loss(results: list[dict], model: str) -> Figure:
    """The tutorial's "Training Loss" plot for every activation (and seed) of one model.

    Non-finite costs are left out; a diverged run gets an "x" at the top of the axis above the epoch
    where it diverged. The y axis is logarithmic when every plotted cost is positive.
    """
    runs = [r for r in results if r["model"] == model]
    activations = list(dict.fromkeys(r["activation"] for r in runs))  # first-seen order
    several_seeds = len({r["seed"] for r in runs}) > 1
    seeds = sorted({r["seed"] for r in runs})
    colours = _colours(activations)
    styles = ["-", "--", ":", "-."]
    max_epochs = max((len(r.get("costs") or []) for r in runs), default=0)
    point_marker = "o" if max_epochs <= 30 else None  # single epochs stay visible

    fig, ax = _axes((9, 5.5))
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction: 1.0 is the top edge
    markers_at: dict[int, int] = {}  # epoch -> diverged markers already drawn there
    plotted: list[float] = []
    handles: list[Line2D] = []
    for r in sorted(runs, key=lambda r: (activations.index(r["activation"]), r["seed"])):
        colour = colours[r["activation"]]
        style = styles[seeds.index(r["seed"]) % len(styles)]
        costs = r.get("costs") or []
        points = [(i, float(c)) for i, c in enumerate(costs) if _is_finite(c)]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=colour, linestyle=style, marker=point_marker, markersize=3)
            plotted.extend(ys)
        diverged = r["status"] == "diverged"
        if diverged:
            epoch = _diverged_at(r)
            stacked = markers_at.get(epoch, 0)  # runs diverging at the same epoch form a column
            markers_at[epoch] = stacked + 1
            ax.plot(
                [epoch],
                [MARKER_TOP - MARKER_STEP * stacked],
                transform=top,
                marker="x",
                markersize=10,
                markeredgewidth=2,
                color=colour,
                clip_on=False,
                linestyle="none",
            )
        label = r["activation"]
        if several_seeds:
            label += f" (seed={r['seed']})"
        if diverged:
            label += " (diverged)"
        handles.append(
            Line2D(
                [],
                [],
                color=colour,
                label=label,
                linestyle=style if points else "none",
                marker="x" if diverged else point_marker,
                markersize=8 if diverged else 3,
            )
        )

    # A log axis only where costs span more than a decade (tutorial sigmoid's ~0.001 beside
    # softmax's ~0.5); over a narrow range its tick labels read worse than a linear axis.
    if plotted and min(plotted) > 0 and max(plotted) > 10 * min(plotted):
        ax.set_yscale("log")
    if not plotted:
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            "no finite cost to plot: every run diverged" if runs else "no runs",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    last = max([max_epochs - 1] + [_diverged_at(r) for r in runs if r["status"] == "diverged"])
    ax.set_xlim(-0.5, max(last, 0) + 0.5)
    if last < 20:
        ax.set_xticks(range(max(last, 0) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch #")
    ax.set_ylabel("Loss")
    ax.set_title(f"Training Loss — {model}")
    ax.grid(True, which="major", alpha=0.3)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _curves(runs: list[dict], key: str) -> np.ndarray:
    """(runs, epochs) array of one per-epoch series, NaN-padded to the longest run."""
    length = max((len(r.get(key) or []) for r in runs), default=0)
    out = np.full((len(runs), length), np.nan)
    for i, r in enumerate(runs):
        values = [v if v is not None and math.isfinite(v) else np.nan for v in r.get(key) or []]
        out[i, : len(values)] = values
    return out


def plot_curve_band(results: list[dict], model: str, key: str, ylabel: str, title: str) -> Figure:
    """Per activation: the mean over seeds of a per-epoch series, with a band from the lowest to
    the highest seed. Diverged epochs (non-finite) drop out of the mean; an activation with no
    finite value at all is named in the legend as diverged."""
    runs = [r for r in results if r["model"] == model]
    activations = list(dict.fromkeys(r["activation"] for r in runs))
    colours = _colours(activations)
    fig, ax = _axes((9, 5.5))
    plotted: list[float] = []
    for activation in activations:
        group = [r for r in runs if r["activation"] == activation]
        curves = _curves(group, key)
        finite = np.isfinite(curves)
        label = activation if len(group) == 1 else f"{activation} (mean of {len(group)} seeds)"
        if not finite.any():
            ax.plot(
                [],
                [],
                color=colours[activation],
                marker="x",
                ls="none",
                label=f"{label}: no finite value (diverged)",
            )
            continue
        counts = finite.sum(axis=0)
        keep = counts > 0
        epochs = np.arange(curves.shape[1])[keep]
        filled = np.where(finite, curves, 0.0)[:, keep]
        mean = filled.sum(axis=0) / counts[keep]
        low = np.where(finite, curves, np.inf)[:, keep].min(axis=0)
        high = np.where(finite, curves, -np.inf)[:, keep].max(axis=0)
        ax.plot(epochs, mean, color=colours[activation], marker="o", markersize=3, label=label)
        if len(group) > 1:
            ax.fill_between(epochs, low, high, color=colours[activation], alpha=0.2, lw=0)
        plotted.extend(low.tolist() + high.tolist())
    if plotted and min(plotted) > 0 and max(plotted) > 10 * min(plotted):
        ax.set_yscale("log")  # the tutorial's sigmoid cost ~0.001 beside softmax's ~0.5
    if not plotted:
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            "no finite value to plot",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch #")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} — {model}" + (" (band: lowest to highest seed)" if plotted else ""))
    ax.grid(True, alpha=0.3)
    if activations:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_test_accuracy(summary: pd.DataFrame) -> Figure:
    """Mean test accuracy per (model, activation) in ranking order, error bars = the t interval at
    CONFIDENCE (none with one seed). Activations without a sound run get no bar, only their
    status."""
    rows = summary.reset_index(drop=True)
    labels = [f"{m}\n{a}" for m, a in zip(rows["model"], rows["activation"], strict=True)]
    fig, ax = _axes((max(7.0, 0.7 * len(rows) + 2), 5))
    x = np.arange(len(rows))
    means = rows["mean"].to_numpy(dtype=float)
    err_low = (means - rows["ci_low"].to_numpy(dtype=float)).clip(min=0)
    err_high = (rows["ci_high"].to_numpy(dtype=float) - means).clip(min=0)
    colours = ["tab:blue" if s == "ok" else "0.7" for s in rows["status"]]
    ax.bar(x, np.nan_to_num(means), color=colours)
    ax.errorbar(
        x,
        means,
        yerr=[np.nan_to_num(err_low), np.nan_to_num(err_high)],
        fmt="none",
        ecolor="black",
        capsize=4,
    )
    for i, (mean, status) in enumerate(zip(means, rows["status"], strict=True)):
        if not math.isfinite(mean):
            ax.text(i, 0.02, status, rotation=90, ha="center", va="bottom", color="0.3")
        elif status != "ok":
            ax.text(i, mean, status, rotation=90, ha="center", va="bottom", color="0.3")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("Test accuracy")
    title = f"Test accuracy: mean over seeds, {CONFIDENCE:.0%} CI (grey: not sound)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def plot_confusion_matrix(matrix: np.ndarray, title: str) -> Figure:
    """Counts of (true class, predicted class); rows normalised for the colour, counts written."""
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    fig, ax = _axes((1.0 + 0.55 * n, 0.8 + 0.55 * n))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7, color=colour
                )
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title, fontsize=10)
    return fig


def plot_val_accuracy_vs_rate(rates: pd.DataFrame, title: str) -> Figure:
    """Per activation, the mean final validation accuracy at each learning rate tried (log axis),
    the chosen rate ringed: how sensitive each activation is to the rate. `rates`: one (model,
    depth)'s rows of `tasks.report.ranking.choose_learning_rates`. A rate with an unsound run is
    drawn hollow; one with no finite value is left out."""
    activations = list(dict.fromkeys(rates["activation"]))
    colours = _colours(activations)
    fig, ax = _axes((9, 5.5))
    for activation in activations:
        rows = rates[rates["activation"] == activation].sort_values("learning_rate")
        rows = rows[np.isfinite(rows["val_accuracy"].to_numpy(dtype=float))]
        if rows.empty:
            ax.plot([], [], color=colours[activation], marker="x", ls="none",
                    label=f"{activation}: no finite value")  # fmt: skip
            continue
        x, y = rows["learning_rate"].to_numpy(float), rows["val_accuracy"].to_numpy(float)
        colour = colours[activation]
        ax.plot(x, y, color=colour, label=activation)
        sound = (rows["sound"] == rows["seeds"]).to_numpy()
        ax.plot(x[sound], y[sound], "o", color=colour, markersize=5)
        ax.plot(x[~sound], y[~sound], "o", mfc="white", color=colour, markersize=5)
        chosen = rows["chosen"].to_numpy(bool)
        ax.plot(x[chosen], y[chosen], "o", mfc="none", color=colour, markersize=12, mew=1.5)
    ax.set_xscale("log")
    tried = sorted(rates["learning_rate"].dropna().unique())
    ax.set_xticks(tried, [f"{r:g}" for r in tried])
    ax.minorticks_off()
    ax.set_xlabel("Initial learning rate")
    ax.set_ylabel("Validation accuracy (mean over seeds)")
    ax.set_title(f"{title} (ringed: the rate chosen; hollow: a run not sound)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if activations:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_test_accuracy_vs_depth(summary: pd.DataFrame, model: str) -> Figure:
    """Per activation, mean test accuracy against the number of hidden layers (each activation at
    its chosen rate), error bars = the t interval at CONFIDENCE when there are several seeds.
    Depths where the activation did not train soundly are left out of its line and named."""
    rows = summary[(summary["model"] == model) & summary["depth"].notna()]
    activations = list(dict.fromkeys(rows.sort_values("activation")["activation"]))
    colours = _colours(activations)
    fig, ax = _axes((9, 5.5))
    for activation in activations:
        runs = rows[rows["activation"] == activation].sort_values("depth")
        sound = runs[(runs["status"] == "ok") & runs["mean"].notna()]
        label = activation
        missing = runs[~runs.index.isin(sound.index)]
        if not missing.empty:
            label += " (not sound at depth " + ", ".join(str(int(d)) for d in missing["depth"])
            label += ")"
        x = sound["depth"].to_numpy(dtype=float)
        y = sound["mean"].to_numpy(dtype=float)
        low = (y - sound["ci_low"].to_numpy(dtype=float)).clip(min=0)
        high = (sound["ci_high"].to_numpy(dtype=float) - y).clip(min=0)
        ax.errorbar(
            x, y, yerr=[np.nan_to_num(low), np.nan_to_num(high)], color=colours[activation],
            marker="o", markersize=4, capsize=3, label=label,
        )  # fmt: skip
    depths = sorted(int(d) for d in rows["depth"].dropna().unique())
    ax.set_xticks(depths)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Hidden layers")
    ax.set_ylabel("Test accuracy")
    ax.set_title(f"Test accuracy against depth — {model} (mean over seeds, {CONFIDENCE:.0%} CI)")
    ax.grid(True, alpha=0.3)
    if activations:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig
