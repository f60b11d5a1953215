"""The report's figures: the tutorial's "Training Loss" plot, curves averaged over seeds with a
band, test accuracy as points with interval whiskers, a confusion matrix with class names,
validation accuracy against the learning rate, test accuracy against depth, and inside the
networks: gradient norm and activation std by layer, dead and saturated units over epochs.

Each function takes the small result dicts (or the per-activation summary) and returns a
matplotlib `Figure`, built without pyplot's global state, so figures can be drawn in worker
threads; `save` writes one. Non-finite values are left out, never drawn.

Nothing in a figure may be read as something it is not: a diverged run is marked at the epoch
where it diverged in a strip above the curves (never at a height that reads as a loss), values a
run logged from that epoch on are not drawn, a band is only mentioned when there are several seeds,
and the test-accuracy axis says what range it shows.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from tasks.report import why
from tasks.report.stats import CONFIDENCE

FIGURE_DPI = 100
CURVE_SIZE = (9.0, 5.5)  # inches: the curves' axes, legend to the right
STRIP_ROW_INCHES = 0.24  # height of one diverged run's row in the strip above the curves


def _axes(figsize: tuple[float, float]):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _curve_axes(n_diverged: int):
    """(figure, curves axes, strip axes or None): the strip, one row per diverged run, sits above
    the curves and shares their epoch axis. The curves' axes come first in `fig.axes`."""
    if not n_diverged:
        fig, ax = _axes(CURVE_SIZE)
        return fig, ax, None
    strip_height = 0.45 + STRIP_ROW_INCHES * n_diverged
    fig = Figure(figsize=(CURVE_SIZE[0], CURVE_SIZE[1] + strip_height), layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[strip_height, CURVE_SIZE[1] - 0.6])
    ax = fig.add_subplot(grid[1])
    strip = fig.add_subplot(grid[0], sharex=ax)
    return fig, ax, strip


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


def _diverged_label(r: dict, several_seeds: bool) -> str:
    return r["activation"] + (f", seed {r['seed']}" if several_seeds else "")


def _draw_strip(strip, diverged: list[dict], colours: dict, several_seeds: bool) -> None:
    """One row per diverged run, an "x" at the epoch where its cost stopped being finite."""
    labels = []
    for row, r in enumerate(diverged):
        strip.plot(
            [_diverged_at(r)],
            [row],
            marker="x",
            markersize=9,
            markeredgewidth=2,
            color=colours[r["activation"]],
            linestyle="none",
        )
        labels.append(_diverged_label(r, several_seeds))
    strip.set_yticks(range(len(diverged)), labels, fontsize=8)
    strip.set_ylim(len(diverged) - 0.5, -0.5)  # first run on top
    strip.tick_params(axis="x", labelbottom=False)
    strip.grid(True, axis="x", alpha=0.3)
    strip.set_title(
        "Diverged: the epoch where the cost stopped being finite (nothing drawn from then on)",
        fontsize=9,
        loc="left",
    )


def _finite_until_diverged(r: dict, key: str) -> list[tuple[int, float]]:
    """(epoch, value) of `r[key]` that are finite, up to (not including) the epoch where the run
    diverged: what a diverged network logged from then on comes from weights training gave up
    on (its validation accuracy is that of NaN weights)."""
    values = r.get(key) or []
    stop = _diverged_at(r) if r.get("status") == "diverged" else len(values)
    return [(i, float(v)) for i, v in enumerate(values[:stop]) if _is_finite(v)]


def _epoch_axis(ax, last: int) -> None:
    ax.set_xlim(-0.5, max(last, 0) + 0.5)
    if last < 20:
        ax.set_xticks(range(max(last, 0) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_training_loss(results: list[dict], model: str) -> Figure:
    """The tutorial's "Training Loss" plot for every activation (and seed) of one model.

    Non-finite costs are left out; a diverged run is marked in a strip above the curves, at the
    epoch where it diverged. The y axis is logarithmic when every plotted cost is positive and
    they span more than a decade.
    """
    runs = [r for r in results if r["model"] == model]
    activations = list(dict.fromkeys(r["activation"] for r in runs))  # first-seen order
    several_seeds = len({r["seed"] for r in runs}) > 1
    seeds = sorted({r["seed"] for r in runs})
    colours = _colours(activations)
    styles = ["-", "--", ":", "-."]
    max_epochs = max((len(r.get("costs") or []) for r in runs), default=0)
    point_marker = "o" if max_epochs <= 30 else None  # single epochs stay visible
    ordered = sorted(runs, key=lambda r: (activations.index(r["activation"]), r["seed"]))
    diverged = [r for r in ordered if r["status"] == "diverged"]

    fig, ax, strip = _curve_axes(len(diverged))
    plotted: list[float] = []
    handles: list[Line2D] = []
    for r in ordered:
        colour = colours[r["activation"]]
        style = styles[seeds.index(r["seed"]) % len(styles)]
        points = _finite_until_diverged(r, "costs")
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=colour, linestyle=style, marker=point_marker, markersize=3)
            plotted.extend(ys)
        label = r["activation"]
        if several_seeds:
            label += f" (seed={r['seed']})"
        if r["status"] == "diverged":
            label += f" (diverged at epoch {_diverged_at(r)})"
        handles.append(
            Line2D(
                [],
                [],
                color=colour,
                label=label,
                linestyle=style if points else "none",
                marker="x" if not points else point_marker,
                markersize=8 if not points else 3,
            )
        )
    if strip is not None:
        _draw_strip(strip, diverged, colours, several_seeds)

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
    _epoch_axis(ax, max([max_epochs - 1] + [_diverged_at(r) for r in diverged]))
    ax.set_xlabel("Epoch #")
    ax.set_ylabel("Loss")
    fig.suptitle(f"Training Loss — {model}")
    ax.grid(True, which="major", alpha=0.3)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _curves(runs: list[dict], key: str) -> np.ndarray:
    """(runs, epochs) array of one per-epoch series, NaN-padded to the longest run; a diverged
    run's values from its divergence epoch on are NaN too."""
    length = max((len(r.get(key) or []) for r in runs), default=0)
    out = np.full((len(runs), length), np.nan)
    for i, r in enumerate(runs):
        for epoch, value in _finite_until_diverged(r, key):
            out[i, epoch] = value
    return out


def plot_curve_band(results: list[dict], model: str, key: str, ylabel: str, title: str) -> Figure:
    """Per activation: the mean over seeds of a per-epoch series, with a band from the lowest to
    the highest seed when there are several. A diverged run's values drop out of the mean from
    the epoch it diverged on, and the run is marked at that epoch in a strip above the curves."""
    runs = [r for r in results if r["model"] == model]
    activations = list(dict.fromkeys(r["activation"] for r in runs))
    colours = _colours(activations)
    several_seeds = len({r["seed"] for r in runs}) > 1
    diverged = sorted(
        (r for r in runs if r["status"] == "diverged"),
        key=lambda r: (activations.index(r["activation"]), r["seed"]),
    )
    fig, ax, strip = _curve_axes(len(diverged))
    plotted: list[float] = []
    banded = False
    for activation in activations:
        group = [r for r in runs if r["activation"] == activation]
        curves = _curves(group, key)
        finite = np.isfinite(curves)
        label = activation if len(group) == 1 else f"{activation} (mean of {len(group)} seeds)"
        lost = [r for r in group if r["status"] == "diverged"]
        if lost and len(group) == 1:
            label += f" (diverged at epoch {_diverged_at(lost[0])})"
        elif lost:
            label = f"{label[:-1]}; {len(lost)} diverged)"
        if not finite.any():
            ax.plot([], [], color=colours[activation], marker="x", ls="none", label=label)
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
            banded = True
        plotted.extend(low.tolist() + high.tolist())
    if strip is not None:
        _draw_strip(strip, diverged, colours, several_seeds)
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
    length = max((len(r.get(key) or []) for r in runs), default=0)
    _epoch_axis(ax, max([length - 1] + [_diverged_at(r) for r in diverged]))
    ax.set_xlabel("Epoch #")
    ax.set_ylabel(ylabel)
    fig.suptitle(f"{title} — {model}" + (" (band: lowest to highest seed)" if banded else ""))
    ax.grid(True, alpha=0.3)
    if activations:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _accuracy_range(rows: pd.DataFrame) -> tuple[float, float] | None:
    """The axis range that shows the differences between `rows`: their means and intervals with a
    margin, within [0, 1]; None when no row has a value."""
    values = rows[["mean", "ci_low", "ci_high"]].to_numpy(dtype=float).ravel()
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = float(values.min()), float(values.max())
    margin = max(0.15 * (high - low), 0.005)
    return max(0.0, low - margin), min(1.0, high + margin)


def plot_test_accuracy(summary: pd.DataFrame) -> Figure:
    """Mean test accuracy per (model, activation) as a point, best first, one panel per model,
    whiskers = the t interval at CONFIDENCE (none with one seed). Each panel's axis spans only
    what its points need, and says so, so differences of a few thousandths are visible; an
    activation without a sound run gets no point, only its status."""
    rows = summary.reset_index(drop=True)
    models = list(dict.fromkeys(rows["model"]))
    counts = [int((rows["model"] == m).sum()) for m in models] or [1]
    height = 0.9 + sum(0.32 * c + 0.75 for c in counts)
    fig = Figure(figsize=(8.0, height), layout="constrained")
    axes = fig.subplots(len(counts), 1, height_ratios=counts, squeeze=False)[:, 0]
    several_seeds = bool(len(rows)) and rows["seeds"].astype(int).max() > 1
    for ax, model in zip(axes, models, strict=False):
        part = rows[rows["model"] == model].reset_index(drop=True)
        y = np.arange(len(part))
        span = _accuracy_range(part)
        low, high = span if span else (0.0, 1.0)
        for i, r in part.iterrows():
            sound = r["status"] == "ok"
            colour = "tab:blue" if sound else "0.55"
            mean = float(r["mean"])
            if not math.isfinite(mean):
                ax.text(low, i, f"  {r['status']}: no sound run", va="center", color="0.35")
                continue
            lo, hi = float(r["ci_low"]), float(r["ci_high"])
            if math.isfinite(lo) and math.isfinite(hi):
                ax.errorbar(
                    [mean],
                    [i],
                    xerr=[[max(mean - lo, 0)], [max(hi - mean, 0)]],
                    fmt="none",
                    ecolor=colour,
                    capsize=4,
                )
            ax.plot([mean], [i], marker="o", color=colour, linestyle="none")
            note = f" {mean:.4f}" + ("" if sound else f" ({r['status']})")
            ax.annotate(note, (mean, i), xytext=(6, 4), textcoords="offset points", fontsize=8)
        ax.set_yticks(y, list(part["activation"]))
        ax.set_ylim(len(part) - 0.5, -0.5)  # the best on top
        ax.set_xlim(low, high)
        start = "0" if low == 0 else f"{low:.3f}"
        ax.set_xlabel(
            f"Test accuracy (axis {start}–{high:.3f}" + (", not from 0)" if low > 0 else ")"),
            fontsize=9,
        )
        ax.set_title(model, fontsize=10, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
    if several_seeds:
        title = f"Test accuracy: mean over seeds, whiskers = {CONFIDENCE:.0%} CI (grey: not sound)"
    else:
        title = "Test accuracy: one seed per activation, so no interval (grey: not sound)"
    fig.suptitle(title, fontsize=10)
    return fig


def plot_confusion_matrix(
    matrix: np.ndarray, title: str, class_names: list[str] | None = None
) -> Figure:
    """Counts of (true class, predicted class), the classes by name (`class_names`, in label
    order; the labels themselves without); rows normalised for the colour, counts written."""
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    names = list(class_names) if class_names and len(class_names) == n else list(map(str, range(n)))
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    label_inches = 0.07 * max(len(name) for name in names) if names else 0.0
    fig, ax = _axes((1.0 + 0.55 * n + label_inches, 0.8 + 0.55 * n + label_inches))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7, color=colour
                )
    long_names = max((len(name) for name in names), default=0) > 2
    ax.set_xticks(
        range(n),
        names,
        rotation=45 if long_names else 0,
        ha="right" if long_names else "center",
        fontsize=8,
    )
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title, fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------
# Inside the networks: the per-layer diagnostics (tasks.training.diagnostics, tasks.report.why)


def has_diagnostics(results: list[dict], model: str) -> bool:
    """Whether any run of `model` logged per-layer diagnostics (the mlp does; the tutorial has no
    hidden layer)."""
    return any(r.get("diagnostics") for r in results if r["model"] == model)


def _by_activation(results: list[dict], model: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in results:
        if r["model"] == model and r.get("diagnostics"):
            groups.setdefault(r["activation"], []).append(r)
    return groups


def _epoch_label(epoch: int) -> str:
    return "after the first epoch" if epoch == 0 else "after the last epoch"


def _no_data(ax, text: str = "no finite value") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _layer_axes(fig: Figure, title: str):
    axes = fig.subplots(1, 2, sharey=True)
    fig.suptitle(title)
    return axes


def plot_gradient_norms(results: list[dict], model: str) -> Figure:
    """Norm of each layer's weight gradient on the probe, hidden layers then the output layer,
    one line per activation (median over seeds), log scale: after the first and the last epoch.
    Vanishing gradients fall towards layer 1; exploding ones rise."""
    groups = _by_activation(results, model)
    colours = _colours(list(groups))
    fig = Figure(figsize=(11, 5), layout="constrained")
    axes = _layer_axes(fig, f"Weight-gradient norm by layer — {model} (log scale)")
    depth = 0
    for ax, epoch in zip(axes, (0, -1), strict=True):
        drawn = False
        for activation, runs in groups.items():
            norms = why.profile(runs, "grad_norm", epoch)
            outputs = [
                s[epoch]
                for r in runs
                if (s := r["diagnostics"].get("output.grad_norm")) and _is_finite(s[epoch])
            ]
            values = norms + [float(np.median(outputs)) if outputs else math.nan]
            points = [(i, v) for i, v in enumerate(values, start=1) if _is_finite(v) and v > 0]
            depth = max(depth, len(values))
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs, ys, marker="o", markersize=3, color=colours[activation], label=activation
                )
                drawn = True
        if drawn:
            ax.set_yscale("log")
        else:
            _no_data(ax)
        ax.set_title(_epoch_label(epoch), fontsize=10)
        ax.set_xlabel("Layer (1 = first hidden; last = output)")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes:
        ticks = list(range(1, depth + 1))
        ax.set_xticks(ticks, [str(t) for t in ticks[:-1]] + ["out"] if ticks else [])
    axes[0].set_ylabel("‖∂cost/∂W‖ on the probe")
    if groups:
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*")


def _network_share(run: dict, stat: str) -> list[float]:
    """Per epoch, the share of all the run's hidden units counted by `stat` (dead_fraction or
    saturated_fraction), each layer weighted by its number of units."""
    diagnostics = run.get("diagnostics") or {}
    depth = max((int(k[5:].split(".")[0]) for k in diagnostics if k[5:6].isdigit()), default=0)
    units = list(run.get("hidden_units") or [])
    if len(units) != depth:
        units = [1] * depth  # unknown sizes: layers count alike
    series = [diagnostics.get(f"layer{k}.{stat}") or [] for k in range(1, depth + 1)]
    epochs = min((len(s) for s in series), default=0)
    out = []
    for e in range(epochs):
        values = [s[e] for s in series]
        if all(_is_finite(v) for v in values):
            out.append(sum(v * u for v, u in zip(values, units, strict=True)) / sum(units))
        else:
            out.append(math.nan)
    return out


def plot_unit_fractions(results: list[dict], model: str) -> Figure:
    """Dead and saturated units over epochs: the share of all hidden units, per activation
    (median over seeds). Dead: derivative 0 on every probe image; saturated: see the report's
    method section."""
    groups = _by_activation(results, model)
    colours = _colours(list(groups))
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    fig.suptitle(f"Dead and saturated hidden units over epochs — {model}")
    for ax, stat, title in zip(
        axes,
        ("dead_fraction", "saturated_fraction"),
        ("Dead units", "Saturated units"),
        strict=True,
    ):
        for activation, runs in groups.items():
            curves = _curves([{"s": _network_share(r, stat)} for r in runs], "s")
            if not np.isfinite(curves).any():
                continue
            median = np.nanmedian(np.where(np.isfinite(curves), curves, np.nan), axis=0)
            keep = np.isfinite(median)
            # Healthy activations all lie on 0: distinct markers and the peak in the legend
            # keep each one readable where the lines overlap.
            marker = _MARKERS[list(groups).index(activation) % len(_MARKERS)]
            ax.plot(
                np.arange(len(median))[keep],
                median[keep],
                marker=marker,
                markersize=5,
                fillstyle="none",
                color=colours[activation],
                label=f"{activation} (peak {np.max(median[keep]):.0%})",
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("Epoch #")
        ax.set_ylim(-0.03, 1.03)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Share of all hidden units")
    for ax in axes:
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
    return fig


def plot_activation_std(results: list[dict], model: str) -> Figure:
    """Standard deviation of each hidden layer's activations on the probe, per activation
    (median over seeds), after the first and the last epoch, with SELU's fixed point (std 1)
    drawn as a line: SELU with LeCun init and standardised inputs stays near it through depth."""
    groups = _by_activation(results, model)
    colours = _colours(list(groups))
    fig = Figure(figsize=(11, 5), layout="constrained")
    axes = _layer_axes(fig, f"Activation std by hidden layer — {model}")
    depth = 0
    for ax, epoch in zip(axes, (0, -1), strict=True):
        ax.axhline(
            1.0, color="0.3", linestyle="--", linewidth=1, label="SELU's fixed point (std 1)"
        )
        for activation, runs in groups.items():
            stds = why.profile(runs, "act_std", epoch)
            depth = max(depth, len(stds))
            points = [(k, v) for k, v in enumerate(stds, start=1) if _is_finite(v)]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs, ys, marker="o", markersize=3, color=colours[activation], label=activation
                )
        # a network on its way to diverging can reach stds of 1e13: then a log scale, so the
        # others (and the line at 1) stay readable
        shown = [v for line in ax.lines for v in line.get_ydata() if v > 0]
        if shown and max(shown) > 100 * min(shown):
            ax.set_yscale("log")
        ax.set_title(_epoch_label(epoch), fontsize=10)
        ax.set_xlabel("Hidden layer")
        if depth:
            ax.set_xticks(range(1, depth + 1))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Std of the activations on the probe")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
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
