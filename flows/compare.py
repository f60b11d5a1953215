"""The experiment: which activation function should this network use?

Wiring only: each line is a stage of the experiment; the work lives in `tasks/` (every Prefect
task in `tasks/steps.py`).
"""

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.commands import progress
from tasks.commands.runner import make_task_runner
from tasks.core.cells import group_label, select_cells, stack_groups
from tasks.core.config import Cell, Config
from tasks.core.results import Report
from tasks.steps import (
    build_report,
    download_dataset,
    evaluate_network,
    evaluate_networks,
    log_best_model,
    plan_more_seeds,
    preprocess,
    publish_report,
    train_network,
    train_networks,
)
from tasks.tracking import runs


# Default when called directly or served: one network at a time in a worker thread. `actlab run`
# picks the runner from params through run_comparison.
@flow(name="compare-activations", task_runner=ThreadPoolTaskRunner(max_workers=1))
def compare_activations(config: Config, cells: list[str] | None = None) -> Report:
    """Train one network per grid cell, evaluate each, report; return the report (its folder,
    and the answer it opens with).

    `cells`: only the grid cells of these names (child run names, e.g. `mlp/relu/seed=0`), as
    `actlab reproduce` asks for one run or a few; None trains the whole grid.
    """
    grid = select_cells(config.grid, cells)
    with runs.parent_run(config, flow_run.get_id()) as run:
        if cells is not None:
            runs.tag_selection(run, len(grid), len(config.grid))
        raw = download_dataset(config.data)
        runs.tag_dataset(run, raw)
        prepared = preprocess(raw, config.preprocess, config.data.dir)
        runs.tag_stages(run, {"download": raw.stage, "preprocess": prepared.stage})
        runs.log_dataset(run, raw, prepared)

        # the grid (or the cells asked for), then (sweep.seeds: {until_separated: true}) one
        # more seed at a time where the best activation and its runner-up cannot be told apart;
        # each round records the learning rates chosen on validation accuracy
        tracker = progress.track([cell.name for cell in grid])  # the terminal, Prefect UI
        todo, trained = grid, 0
        while todo:
            trained += _train_and_evaluate(todo, prepared.path, config, run, tracker)
            todo = plan_more_seeds(run, config.sweep) if cells is None else []
            tracker.extend([cell.name for cell in todo])
        runs.tag_grid_size(run, trained)

        if config.tracking.log_models:
            log_best_model(prepared.path, config.models, run, config.data.dir)
        # The report is read back from MLflow, as `actlab report` does: one path, no drift.
        report = build_report(run, config.report.dir)
        publish_report(report, run)
    return report


def _train_and_evaluate(cells: list[Cell], data_path: str, config: Config, run, tracker) -> int:
    """Each cell trained and evaluated on the task runner (threads here, or Dask workers); with
    `train.stack`, the cells that differ only in their activation train together."""
    models, train, data_dir = config.models, config.train, config.data.dir
    submitted = []  # (training, its evaluation, whether it is a group's), in grid order
    for group in stack_groups(cells) if train.stack else [[cell] for cell in cells]:
        if len(group) == 1:
            training = train_network.submit(data_path, group[0], models, train, run, data_dir)
            evaluation = evaluate_network.submit(training, data_path, models, run)
        else:
            label = group_label(group)
            training = train_networks.submit(data_path, group, label, models, train, run, data_dir)
            evaluation = evaluate_networks.submit(training, label, data_path, models, run)
        submitted.append((training, evaluation, len(group) > 1))
    for training, evaluation, of_group in submitted:
        training.result()  # a training error surfaces as itself, not as "evaluation pending"
        tracker.finished_together(evaluation.result() if of_group else [evaluation.result()])
    return len(cells)


def run_comparison(config: Config, cells: list[str] | None = None) -> Report:
    """`compare_activations` on the task runner `config.runner` asks for."""
    flow = compare_activations.with_options(task_runner=make_task_runner(config.runner))
    return flow(config, cells)
