"""The report's figures beyond the tutorial's per-run loss plot: curves averaged over seeds with a
band, test accuracy with error bars, and a confusion matrix.

Each function takes the small result dicts (or the per-activation summary) and returns a
matplotlib Figure; the caller saves and closes it. Non-finite values are left out, never drawn.
"""

import math

import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede the pyplot import

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _colours(activations: list[str]) -> dict:
    palette = plt.get_cmap("tab10" if len(activations) <= 10 else "tab20")
    return {a: palette(i % palette.N) for i, a in enumerate(activations)}


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
    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
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
    """Mean test accuracy per (model, activation) in ranking order, error bars = 95 % t interval
    (none with one seed). Activations without a sound run get no bar, only their status."""
    rows = summary.reset_index(drop=True)
    labels = [f"{m}\n{a}" for m, a in zip(rows["model"], rows["activation"], strict=True)]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(rows) + 2), 5), layout="constrained")
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
    ax.set_title("Test accuracy: mean over seeds, 95 % CI (grey: not sound)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def plot_confusion_matrix(matrix: np.ndarray, title: str) -> Figure:
    """Counts of (true class, predicted class); rows normalised for the colour, counts written."""
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.55 * n), layout="constrained")
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
