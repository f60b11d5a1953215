"""tasks/commands/reproduce.py on hand-made MLflow records (no training): what is re-run, how
re-run networks are matched with their originals, and the three verdicts."""

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tasks.commands.reproduce import (
    EXIT_CODES,
    TOLERANCE,
    Plan,
    ReproduceError,
    check_reproduction,
    compare_results,
    plan_reproduction,
)
from tasks.core.cells import cell_key
from tasks.core.config import validate_config
from tasks.tracking.provenance import run_tags
from tasks.tracking.runs import config_record

# ---------------------------------------------------------------- the verdicts, on plain numbers

KEY = ("mlp", "relu", 0, 0.1, (784, 128, 10))
COSTS = [2.302585, 0.61803, 0.41421, 0.35355]


def _results(costs, accuracy=0.9, label="mlp/relu/seed=0"):
    return {KEY: {"cost": list(costs), "test_accuracy": accuracy, "label": label}}


def test_the_same_bits_are_identical_and_exit_0():
    verdict = compare_results(_results(COSTS), _results(COSTS))
    assert verdict.verdict == "identical" and verdict.exit_code == 0
    assert verdict.message == (
        "identical: 1 network, every per-epoch cost and test accuracy bit for bit"
    )
    nan = float("nan")  # two networks that diverged alike
    assert compare_results(_results([nan], nan), _results([nan], nan)).verdict == "identical"


def test_costs_scaled_by_1e_4_are_equivalent_by_default_and_different_at_a_tighter_tolerance():
    doctored = [c * (1 + 1e-4) for c in COSTS]

    loose = compare_results(_results(COSTS), _results(doctored))
    assert TOLERANCE == 1e-3
    assert loose.verdict == "equivalent" and loose.exit_code == 3
    assert loose.message.startswith(
        "equivalent: 1 network, every per-epoch cost within relative 0.001 (largest 0.0001: "
        "mlp/relu/seed=0, epoch "
    )

    tight = compare_results(_results(COSTS), _results(doctored), tolerance=1e-5)
    assert tight.verdict == "different" and tight.exit_code == 1
    assert tight.message == (
        "different at epoch 0: mlp/relu/seed=0: cost 2.302585 -> 2.30281526 "
        "(relative difference 0.0001); tolerance 1e-05"
    )


def test_different_names_the_first_epoch_and_network_that_differ():
    late = COSTS[:2] + [0.5, 0.4]
    verdict = compare_results(_results(COSTS), _results(late))
    assert verdict.message.startswith("different at epoch 2: mlp/relu/seed=0: cost 0.41421 -> 0.5")

    short = compare_results(_results(COSTS), _results(COSTS[:3]))
    assert short.message == (
        "different at epoch 3: mlp/relu/seed=0: 4 epochs recorded, 3 now; tolerance 0.001"
    )
    missing = compare_results(_results(COSTS), {})
    assert missing.message == "different: mlp/relu/seed=0: not re-run"


def test_test_accuracies_must_tie_as_the_report_counts_a_tie():
    one_image = compare_results(_results(COSTS, 0.9), _results(COSTS, 0.9001))  # of 10,000
    assert one_image.verdict == "different"
    assert one_image.message == (
        "different in test accuracy: mlp/relu/seed=0: test accuracy 0.9 -> 0.9001 "
        "(costs within 0.001)"
    )
    last_bit = compare_results(_results(COSTS, 0.9), _results(COSTS, np.nextafter(0.9, 1.0)))
    assert last_bit.verdict == "equivalent"


def test_exit_codes_tell_the_verdicts_apart_from_each_other_and_from_an_error():
    assert EXIT_CODES == {"identical": 0, "different": 1, "equivalent": 3}  # 2: cannot reproduce


# ----------------------------------------------------------- matching and planning, in MLflow


def _child(client, experiment, parent, costs, lr="0.1", activation="relu", accuracy=0.9):
    name = f"mlp/{activation}/seed=0"
    run = client.create_run(
        experiment,
        run_name=name,
        tags={"mlflow.parentRunId": parent, "model": "mlp", "activation": activation},
    )
    params = {
        "model": "mlp",
        "activation": activation,
        "seed": "0",
        "learning_rate": lr,
        "layer_sizes": "[784, 128, 10]",
    }
    metrics = [Metric("cost", c, 1000 + e, e) for e, c in enumerate(costs)]
    metrics.append(Metric("test_accuracy", accuracy, 1000, 0))
    client.log_batch(
        run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()]
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An original grid over two learning rates (mlp/relu at 0.1 and 0.2) and one more cell."""
    tmp = tmp_path_factory.mktemp("reproduce")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = validate_config(
        {
            "sweep": {"models": ["mlp"], "activations": ["relu", "tanh"]},
            "tracking": {"uri": uri, "experiment": "repro"},
        }
    )
    client = MlflowClient(uri)
    experiment = client.create_experiment("repro", (tmp / "mlruns").as_uri())
    parent = client.create_run(experiment, tags=run_tags(None)).info.run_id
    client.log_dict(parent, config_record(cfg), "config.json")
    children = {
        "0.1": _child(client, experiment, parent, [1.0, 0.5], lr="0.1"),
        "0.2": _child(client, experiment, parent, [1.0, 0.4], lr="0.2"),
        "tanh": _child(client, experiment, parent, [1.1, 0.6], activation="tanh"),
    }
    client.set_terminated(parent)
    return cfg, client, experiment, parent, children


def _reproduction(client, experiment, children):
    """A new parent run with the given children (costs, lr), created in the order given."""
    parent = client.create_run(experiment).info.run_id
    for costs, lr in children:
        _child(client, experiment, parent, costs, lr=lr)
    client.set_terminated(parent)
    return parent


def test_two_learning_rates_are_each_compared_with_their_own_original(store):
    cfg, client, experiment, parent, children = store
    plan = plan_reproduction(parent, cfg.tracking.uri, ["mlp/relu/seed=0 lr=0.1", children["0.2"]])
    originals = plan.originals
    # the old identity, (model, activation, seed), cannot tell these two apart
    assert len({tuple(cell_key(r.data.params)[:3]) for r in originals}) == 1
    assert len({cell_key(r.data.params) for r in originals}) == 2

    # re-run in the other order: matched by cell, not by position or start time
    again = _reproduction(client, experiment, [([1.0, 0.4], "0.2"), ([1.0, 0.5], "0.1")])
    verdict = check_reproduction(plan, again)

    assert verdict.verdict == "identical", verdict
    assert verdict.message.startswith("identical: 2 networks")
    tags = client.get_run(again).data.tags
    assert tags["reproduced_from"] == parent
    assert tags["reproduction.verdict"] == "identical"

    # each rate's costs under the other rate: both cells differ, each named with its rate
    swapped = _reproduction(client, experiment, [([1.0, 0.5], "0.2"), ([1.0, 0.4], "0.1")])
    verdict = check_reproduction(plan, swapped)
    assert verdict.verdict == "different"
    assert verdict.message == (
        "different at epoch 1: mlp/relu/seed=0 lr=0.1: cost 0.5 -> 0.4 (relative difference 0.2); "
        "tolerance 0.001"
    )
    assert verdict.details[0] == (
        "also at epoch 1: mlp/relu/seed=0 lr=0.2: cost 0.4 -> 0.5 (relative difference 0.2)"
    )


def test_a_child_id_plans_that_network_alone(store):
    cfg, _, _, parent, children = store
    plan = plan_reproduction(children["tanh"], cfg.tracking.uri)

    assert [r.info.run_id for r in plan.originals] == [children["tanh"]]
    assert plan.cells == ["mlp/tanh/seed=0"]  # the flow trains this cell of the grid only
    assert plan.scope == (
        f"child run {children['tanh']} (mlp/tanh/seed=0) of parent run {parent}: 1 of 2 networks"
    )
    whole = plan_reproduction(parent, cfg.tracking.uri)
    assert whole.cells is None and len(whole.originals) == 3


def test_cells_that_name_no_run_or_several_are_refused_with_what_would_do(store):
    cfg, _, _, parent, children = store
    with pytest.raises(ReproduceError) as err:
        plan_reproduction(parent, cfg.tracking.uri, ["mlp/gelu/seed=0"])
    assert str(err.value) == (
        f"--cells 'mlp/gelu/seed=0': no child run of parent run {parent} has that id, name or "
        "label; its cells are: mlp/relu/seed=0 lr=0.1, mlp/relu/seed=0 lr=0.2, "
        "mlp/tanh/seed=0 lr=0.1"
    )
    with pytest.raises(ReproduceError, match="names 2 runs .*give a run id or a label"):
        plan_reproduction(parent, cfg.tracking.uri, ["mlp/relu/seed=0"])
    with pytest.raises(ReproduceError, match="is a child run: it is reproduced alone"):
        plan_reproduction(children["tanh"], cfg.tracking.uri, ["mlp/tanh/seed=0"])


def test_the_plan_lists_a_changed_version_before_anything_runs(store):
    cfg, client, _, parent, children = store
    recorded = client.get_run(parent).data.tags["versions.numpy"]
    client.set_tag(parent, "versions.numpy", "1.0.0")
    try:
        plan = plan_reproduction(children["tanh"], cfg.tracking.uri)
    finally:
        client.set_tag(parent, "versions.numpy", recorded)

    assert plan.environment == [f"versions.numpy: recorded 1.0.0, now {np.__version__}"]
    assert plan_reproduction(children["tanh"], cfg.tracking.uri).environment == []


def test_a_different_verdict_lists_the_recorded_differences_that_may_explain_it(store):
    cfg, client, experiment, parent, children = store
    plan = plan_reproduction(children["0.1"], cfg.tracking.uri)
    changed = ["versions.numpy: recorded 1.0.0, now 2.0"]
    plan = Plan(**{**plan.__dict__, "environment": changed, "warnings": []})
    again = _reproduction(client, experiment, [([1.0, 0.45], "0.1")])

    verdict = check_reproduction(plan, again)

    assert verdict.verdict == "different"
    assert verdict.details[-2:] == [
        "recorded differences that may explain it:",
        "  versions.numpy: recorded 1.0.0, now 2.0",
    ]


def test_a_hyperparameter_the_rerun_trained_with_otherwise_is_named_first(store):
    cfg, client, experiment, _, children = store
    plan = plan_reproduction(children["0.1"], cfg.tracking.uri)
    plan = Plan(**{**plan.__dict__, "environment": [], "warnings": []})
    # the recorded config was edited: one rate on each side, so still the same cell
    again = _reproduction(client, experiment, [([1.0, 0.7], "0.05")])

    verdict = check_reproduction(plan, again)

    assert verdict.message.startswith("different at epoch 1: mlp/relu/seed=0: cost 0.5 -> 0.7")
    assert verdict.details == [
        "recorded differences that may explain it:",
        "  mlp/relu/seed=0: learning_rate 0.1 -> 0.05",
    ]
