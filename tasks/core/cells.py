"""What identifies a grid cell, defined once: which child-run params tell two trained networks of
one experiment apart, a hashable key built from them, and a label a person can read.

A child run logs every hyperparameter as a param (`tasks.tracking.runs.child_params`). Of these,
the ones a grid can sweep identify the cell: model, activation, seed, learning rate and layer
sizes (depth and width). Two children of one parent never share all of them. `actlab reproduce`
matches a re-run network with its original by this key (`match_keys`), the report labels runs
with it, and `actlab runs` names the cells a reproduction re-ran. A new swept axis is one more
name in `CELL_PARAMS`, as long as the child run logs it as a param.

Pure Python on plain dicts of strings, as MLflow returns params: no MLflow needed to test it.
"""

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

# The child-run params that identify a cell, in the order a label shows them.
CELL_PARAMS = ("model", "activation", "seed", "learning_rate", "layer_sizes")
# Axes read from the child's tags when its params lack them (runs made before they were params).
_TAGGED = ("model", "activation", "seed")
# How a label writes an axis beyond model/activation/seed: "lr=0.05", "layers=784-64-64-10".
_SHORT = {"learning_rate": "lr", "layer_sizes": "layers"}

CellKey = tuple  # one value per CELL_PARAMS entry (None where the run did not record it)


def _value(axis: str, text: Any) -> Any:
    """A param's text as the value it stands for, so '0.1' and '0.10' or '[784, 10]' and
    '[784,10]' are the same cell. Text that does not parse stays text."""
    if text is None or not isinstance(text, str):
        return tuple(text) if isinstance(text, list) else text
    if axis == "seed":
        try:
            return int(text)
        except ValueError:
            return text
    if axis == "learning_rate":
        try:
            return float(text)
        except ValueError:
            return text
    if axis == "layer_sizes":
        try:
            sizes = json.loads(text)
        except ValueError:
            return text
        return tuple(sizes) if isinstance(sizes, list) else text
    return text


def cell_fields(params: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> dict:
    """The identifying axes of one child run, parsed: {"model": "mlp", "seed": 0,
    "learning_rate": 0.1, "layer_sizes": (784, 128, 10), ...}; None for an axis not recorded."""
    tags = tags or {}
    out = {}
    for axis in CELL_PARAMS:
        text = params.get(axis)
        if text is None and axis in _TAGGED:
            text = tags.get(axis)
        out[axis] = _value(axis, text)
    return out


def cell_key(params: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> CellKey:
    """The hashable identity of a child run's cell: equal keys, same cell."""
    fields = cell_fields(params, tags)
    return tuple(fields[axis] for axis in CELL_PARAMS)


def _fields(key_or_fields: CellKey | Mapping[str, Any]) -> dict:
    if isinstance(key_or_fields, Mapping):
        values = {axis: key_or_fields.get(axis) for axis in CELL_PARAMS}
    else:
        values = dict(zip(CELL_PARAMS, key_or_fields, strict=True))
    return {a: tuple(v) if isinstance(v, list) else v for a, v in values.items()}


def axis_text(value: Any) -> str:
    """One axis value as a label writes it: 0.05, 784-64-10."""
    if isinstance(value, tuple | list):
        return "-".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    return str(value)


def cell_label(key_or_fields: CellKey | Mapping[str, Any], axes: Iterable[str] = ()) -> str:
    """'mlp/relu/seed=0', plus ' lr=0.05 layers=784-64-10' for the further `axes` named.

    Model, activation and seed are always shown (the child run's name); the other axes only when
    asked, typically those that vary among the runs shown together (`varying_axes`).
    """
    f = _fields(key_or_fields)
    label = f"{axis_text(f['model'])}/{axis_text(f['activation'])}/seed={axis_text(f['seed'])}"
    for axis in CELL_PARAMS[3:]:
        if axis in axes and f[axis] is not None:
            label += f" {_SHORT.get(axis, axis)}={axis_text(f[axis])}"
    return label


def varying_axes(cells: Iterable[CellKey | Mapping[str, Any]]) -> tuple[str, ...]:
    """The axes beyond model/activation/seed that tell apart two of `cells` with the same model,
    activation and seed: what labels must show to be unique. (The tutorial's and the mlp's layer
    sizes always differ, but the model already tells those apart.)"""
    seen: dict[tuple, dict[str, set]] = {}
    for cell in cells:
        f = _fields(cell)
        group = seen.setdefault((f["model"], f["activation"], f["seed"]), {})
        for axis in CELL_PARAMS[3:]:
            group.setdefault(axis, set()).add(f[axis])
    return tuple(
        axis
        for axis in CELL_PARAMS[3:]
        if any(len(group.get(axis, ())) > 1 for group in seen.values())
    )


def match_keys(keys: Sequence[CellKey], others: Sequence[CellKey]) -> dict[CellKey, CellKey | None]:
    """Each of `keys` (one grid's cells) -> the one of `others` (another grid's) that is the same
    cell, or None. Two cells are the same when they agree on model, activation, seed and every
    axis that is swept in either grid (`varying_axes` of each): a learning rate that is one fixed
    value on both sides is a setting, not part of the identity, so a re-run with another rate is
    compared with its original (and differs) instead of counting as another cell."""
    axes = set(varying_axes(keys)) | set(varying_axes(others))
    shown = [i for i, axis in enumerate(CELL_PARAMS) if i < 3 or axis in axes]

    def identity(key: CellKey) -> tuple:
        return tuple(key[i] for i in shown)

    by_identity = {identity(k): k for k in others}
    return {k: by_identity.get(identity(k)) for k in keys}


def cell_labels(keys: Sequence[CellKey]) -> dict[CellKey, str]:
    """Each key's label, showing the axes that vary among `keys` so no two labels are equal."""
    axes = varying_axes(keys)
    return {key: cell_label(key, axes) for key in keys}


class _Named(Protocol):
    @property
    def name(self) -> str: ...


Named = TypeVar("Named", bound=_Named)


def select_cells(grid: Sequence[Named], names: Sequence[str] | None) -> list[Named]:
    """The cells of `grid` whose name (the child run's name) is in `names`, in grid order;
    the whole grid when `names` is None. A name the grid does not have is an error naming it
    and the names it has."""
    if names is None:
        return list(grid)
    have = [cell.name for cell in grid]
    unknown = [n for n in names if n not in have]
    if unknown:
        shown = ", ".join(have[:20]) + (f", ... ({len(have)} in all)" if len(have) > 20 else "")
        raise ValueError(
            f"cells {', '.join(map(repr, unknown))}: not in this config's grid; its cells are "
            f"{shown}"
        )
    if not names:
        raise ValueError("cells: name at least one cell of the grid (an empty list trains nothing)")
    wanted = set(names)
    return [cell for cell in grid if cell.name in wanted]


def stack_groups(cells: Sequence[Any]) -> list[list[Any]]:
    """`cells` (grid cells: model, activation, seed, learning_rate, depth) in groups that differ
    only in their activation, so they see the same batches and can train stacked; groups in the
    order of their first cell, cells in grid order within each."""
    groups: dict[tuple, list[Any]] = {}
    for cell in cells:
        key = (cell.model, cell.depth, cell.learning_rate, cell.seed)
        groups.setdefault(key, []).append(cell)
    return list(groups.values())


def group_label(cells: Sequence[Any]) -> str:
    """A group's name for the Prefect UI, e.g. `mlp/{relu,tanh,gelu}/seed=0`."""
    first = cells[0].name.split("/")
    if len(cells) == 1:
        return cells[0].name
    first[1] = "{" + ",".join(cell.activation for cell in cells) + "}"
    return "/".join(first)
