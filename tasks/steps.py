"""Every Prefect task of the flow, in one place: each a few lines wiring plain functions of
`tasks.data`, `tasks.training`, `tasks.tracking` and `tasks.report` to the run they log into.

Tasks take and return small typed values (`tasks.core.results`) and file paths, never large
arrays, so they can run in a thread pool or on Dask workers alike.
"""

import math
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.commands import progress
from tasks.core.cells import group_label
from tasks.core.config import (
    Cell,
    DataConfig,
    ModelsConfig,
    PreprocessConfig,
    SweepConfig,
    TrainConfig,
)
from tasks.core.paths import weights_path
from tasks.core.results import EvaluatedNetwork, PreparedData, RawDataset, Report, TrainedNetwork
from tasks.data.download import fetch_dataset
from tasks.data.prepare import prepare_splits
from tasks.logs import run_logger
from tasks.report.publish import publish_report as publish
from tasks.report.publish import rebuild_report
from tasks.report.ranking import (
    best_overall,
    choices_record,
    correct_by_run,
    more_seeds,
    summarize_activations,
)
from tasks.report.table import results_table
from tasks.tracking import runs
from tasks.tracking.records import load_comparison
from tasks.tracking.runs import RunContext
from tasks.training.evaluate import evaluate_on_test, evaluate_stacked, per_class_accuracy
from tasks.training.export import save_network
from tasks.training.inputs import test_data, training_data
from tasks.training.loop import finite, fit_network
from tasks.training.models import (
    build_network,
    load_weights,
    network_from_weights,
    save_weights,
    seed_everything,
)
from tasks.training.stack import fit_stacked


@task(name="download_dataset", cache_policy=NO_CACHE)
def download_dataset(cfg: DataConfig) -> RawDataset:
    """The four IDX files, downloaded and verified or used in place; cached across runs."""
    return fetch_dataset(cfg)


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(raw: RawDataset, cfg: PreprocessConfig, data_dir: Path) -> PreparedData:
    """The train/validation/test .npz, built once per (data, settings)."""
    return prepare_splits(raw, cfg, data_dir)


# Task runs are named by what they do to which grid cell ("train mlp/relu/seed=0"), so the Prefect
# UI's flow-run page reads as the grid; the task names stay verb_noun.
@task(name="train_network", task_run_name="train {cell.name}", cache_policy=NO_CACHE)
def train_network(
    data_path: str,
    cell: Cell,
    models: ModelsConfig,
    train: TrainConfig,
    run: RunContext,
    data_dir: Path,
) -> TrainedNetwork:
    """Train one grid cell in its own child MLflow run, logging each epoch as it ends."""
    return _train([cell], data_path, models, train, run, data_dir)[0]


@task(name="train_networks", task_run_name="train {label}", cache_policy=NO_CACHE)
def train_networks(
    data_path: str,
    cells: list[Cell],
    label: str,
    models: ModelsConfig,
    train: TrainConfig,
    run: RunContext,
    data_dir: Path,
) -> list[TrainedNetwork]:
    """Train grid cells that differ only in their activation (`tasks.core.cells.stack_groups`)
    together, in one compiled program per epoch (`train.stack`), each in its own child MLflow run
    and with the very results it would have alone; `label` names the group in the Prefect UI."""
    return _train(cells, data_path, models, train, run, data_dir)


def _train(
    cells: list[Cell],
    data_path: str,
    models: ModelsConfig,
    train: TrainConfig,
    run: RunContext,
    data_dir: Path,
) -> list[TrainedNetwork]:
    """One child run per cell; one network alone (fit_network) or several stacked (fit_stacked:
    the cells share model, depth, rate and seed)."""
    models, train = cells[0].models_config(models), cells[0].train_config(train)
    group = group_label(cells) if len(cells) > 1 else None
    data, n_classes = training_data(data_path)
    client = runs.client(run)
    nets = []
    pending: list = []  # params and epochs' metrics, written while the networks train
    for cell in cells:
        seed_everything(cell.seed)
        nets.append(
            build_network(
                cell.model, cell.activation, models, cell.seed, int(data[0].shape[1]), n_classes
            )
        )
    # Every network built before the runs are made: each run's params go to MLflow's writer
    # thread, whose writes would hold the GIL the next network's building waits for.
    run_ids, callbacks = [], []
    for cell, net in zip(cells, nets, strict=True):
        params = runs.child_params(cell, net.layer_sizes, net.init, net.loss_name, models, train)
        run_id = runs.start_child_run(client, run, cell, params, group, pending)
        run_ids.append(run_id)
        callbacks.append(_epoch_logger(client, run_id, cell.name, train.epochs, pending))

    with ExitStack() as ending:
        for run_id in run_ids:  # every run ends KILLED or FAILED if training does not finish
            ending.enter_context(runs.ending_on_error(client, run_id))
        try:
            if len(nets) == 1:
                fits = [fit_network(nets[0], *data, train, cells[0].seed, on_epoch=callbacks[0])]
            else:
                fits = fit_stacked(nets, *data, train, cells[0].seed, on_epoch=callbacks)
            out = []
            for cell, net, run_id, fit in zip(cells, nets, run_ids, fits, strict=True):
                path = weights_path(data_dir, run.parent_run_id, run_id)
                save_weights(net.numpy_weights(), path)  # while the last epoch is written
                history = fit["history"]
                trained = TrainedNetwork(
                    cell=cell,
                    run_id=run_id,
                    init=net.init,
                    status=fit["status"],
                    reason=fit["reason"],
                    diverged_epoch=fit["diverged_epoch"],
                    costs=tuple(h["cost"] for h in history),
                    seconds_per_epoch=math.fsum(h["epoch_seconds"] for h in history) / len(history),
                    weights_path=str(path),
                    nonfinite=fit["nonfinite"],
                    val_accuracy=history[-1]["val_accuracy"],
                )
                runs.log_training_outcome(client, run_id, trained, pending)  # after its epochs
                out.append(trained)
        finally:
            runs.wait_logged(pending)  # every epoch and outcome recorded before the runs can end
    return out


def _epoch_logger(client, run_id: str, name: str, epochs: int, pending: list):
    def on_epoch(record: dict) -> None:
        runs.log_epoch(client, run_id, record, pending)
        progress.epoch_done(name, record["epoch"], epochs)

    return on_epoch


@task(name="evaluate_network", task_run_name="evaluate {trained.cell.name}", cache_policy=NO_CACHE)
def evaluate_network(
    trained: TrainedNetwork,
    data_path: str,
    models: ModelsConfig,
    run: RunContext,
) -> EvaluatedNetwork:
    """Test loss and accuracy, predictions and the confusion matrix (as numbers: the report draws
    its best run's), logged on the child run, which it ends.

    A network that diverged is not scored: its cost stopped being finite, and its "accuracy"
    would be that of weights training gave up on (with NaN weights, the argmax of NaN rows: one
    class for every image). Its test metrics are logged as NaN.
    """
    client = runs.client(run)
    with runs.ending_on_error(client, trained.run_id):
        net = _trained_network(trained, models)
        x_test, y_test = test_data(data_path)
        evaluation = evaluate_on_test(net, x_test, y_test) if _sound(trained, net) else None
    return _log_evaluation(client, trained, evaluation, y_test)


def _trained_network(trained: TrainedNetwork, models: ModelsConfig):
    cell = trained.cell
    weights = load_weights(trained.weights_path)
    return network_from_weights(cell.model, cell.activation, cell.models_config(models), weights)


def _sound(trained: TrainedNetwork, net) -> bool:
    """Whether a trained network is scored on the test split: not if it diverged."""
    return trained.status != "diverged" and finite(net)


def _log_evaluation(client, trained: TrainedNetwork, evaluation, y_test) -> EvaluatedNetwork:
    """A network's test results on its child run, which then ends FINISHED. `evaluation`:
    evaluate_on_test's (test scores, confusion matrix, predictions), or None for a network not
    scored (its test metrics NaN)."""
    with runs.ending_on_error(client, trained.run_id):
        if evaluation is None:
            test = {"loss": math.nan, "accuracy": math.nan}
            runs.log_test_metrics(client, trained.run_id, test, trained)
        else:
            test, matrix, predicted = evaluation
            runs.log_evaluation(
                client, trained.run_id, trained, test, predicted, y_test, matrix,
                per_class_accuracy(matrix),
            )  # fmt: skip
    runs.end_run(client, trained.run_id, "FINISHED")
    return EvaluatedNetwork(trained, test_loss=test["loss"], test_accuracy=test["accuracy"])


@task(name="evaluate_networks", task_run_name="evaluate {label}", cache_policy=NO_CACHE)
def evaluate_networks(
    group: list[TrainedNetwork],
    label: str,
    data_path: str,
    models: ModelsConfig,
    run: RunContext,
) -> list[EvaluatedNetwork]:
    """`evaluate_network` for the networks `train_networks` trained together, in one task (one
    task run rather than one per network: each costs the Prefect server some 30 ms) and one call
    of the graph that scored them on validation (evaluate_stacked: the same numbers as one by
    one); `label` names the group in the Prefect UI. If the evaluation fails or is interrupted,
    the runs not yet ended end as it did, so none is left RUNNING."""
    client = runs.client(run)
    unended, out = list(group), []
    try:
        nets = [_trained_network(trained, models) for trained in group]
        x_test, y_test = test_data(data_path)
        sound = [_sound(trained, net) for trained, net in zip(group, nets, strict=True)]
        # every network scored in one call, the diverged too (unread): the graph is the one the
        # group trained with, where a subset would need its own
        evaluations = evaluate_stacked(nets, x_test, y_test) if any(sound) else [None] * len(nets)
        for ok, evaluation in zip(sound, evaluations, strict=True):
            trained = unended.pop(0)  # ended by _log_evaluation itself if its logging fails
            out.append(_log_evaluation(client, trained, evaluation if ok else None, y_test))
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, runs.INTERRUPTS) else "FAILED"
        for rest in unended:
            runs.end_run(client, rest.run_id, status)
        raise
    return out


@task(name="plan_more_seeds", cache_policy=NO_CACHE)
def plan_more_seeds(run: RunContext, sweep: SweepConfig) -> list[Cell]:
    """Record the learning rate chosen per activation (on validation accuracy) on the parent run;
    return the networks still to train: with `sweep.seeds: {until_separated: true}`, one more seed
    for every sound activation of a (model, depth) whose best and runner-up tie, up to the max."""
    results, context = load_comparison(run.tracking_uri, run.parent_run_id, confusion=False)
    table = results_table(results)
    summary = summarize_activations(table, context["baseline"], correct_by_run(results))
    runs.log_choices(run, choices_record(summary, table))
    if not sweep.until_separated:
        return []
    todo = more_seeds(summary, table, sweep.max_seeds)
    cells = [sweep.cell(m, a, seed, rate, depth) for m, depth, a, rate, seed in todo]
    if cells:
        run_logger(__name__).info(
            "best and runner-up tie: %d more networks on seed %d", len(cells), cells[0].seed
        )
    return cells


@task(name="log_best_model", cache_policy=NO_CACHE)
def log_best_model(
    data_path: str, models: ModelsConfig, run: RunContext, data_dir: Path
) -> str | None:
    """The report's best network as an MLflow pyfunc model on its child run (`model/`), tagged
    with the activations that tie with it."""
    results, context = load_comparison(run.tracking_uri, run.parent_run_id, confusion=False)
    summary = summarize_activations(
        results_table(results), context["baseline"], correct_by_run(results)
    )
    best = best_overall(results, summary)
    if best is None:
        run_logger(__name__).warning("no sound run: no model to log")
        return None
    if best["model"] == "mlp" and best.get("layer_sizes"):  # its depth, if swept
        mlp = models.mlp.model_copy(update={"hidden_units": tuple(best["layer_sizes"][1:-1])})
        models = models.model_copy(update={"mlp": mlp})
    path = weights_path(data_dir, run.parent_run_id, best["run_id"])
    net = network_from_weights(best["model"], best["activation"], models, load_weights(path))
    with np.load(data_path, allow_pickle=False) as npz:
        x_example = npz["x_test"][:5]  # (5, inputs) float32, as the network was fed
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / runs.MODEL_PATH
        save_network(net, str(path), x_example, folder)
        return runs.log_best_model(run, best["run_id"], folder, best["tied_with"])


@task(name="build_report", cache_policy=NO_CACHE)
def build_report(run: RunContext, report_root: Path) -> Report:
    """The report built from the parent run's MLflow record: its folder and its answer."""
    report = rebuild_report(run.tracking_uri, run.parent_run_id, report_root)
    run_logger(__name__).info("comparison report: %s", report.folder / "report.html")
    return report


@task(name="publish_report", cache_policy=NO_CACHE)
def publish_report(report: Report, run: RunContext) -> None:
    """The report on the parent MLflow run and as Prefect artifacts."""
    publish(report, run)
