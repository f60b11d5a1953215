"""The experiment: which activation function should this network use?

Wiring only: each line is a stage of the experiment; the work lives in `tasks/` (every Prefect
task in `tasks/steps.py`).
"""

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.commands.runner import make_task_runner
from tasks.core.config import Cell, Config
from tasks.steps import (
    build_report,
    download_dataset,
    evaluate_network,
    log_best_model,
    plan_more_seeds,
    preprocess,
    publish_report,
    train_network,
)
from tasks.tracking import runs


# Default when called directly or served: one network at a time in a worker thread. `actlab run`
# picks the runner from params through run_comparison.
@flow(name="compare-activations", task_runner=ThreadPoolTaskRunner(max_workers=1))
def compare_activations(config: Config) -> str:
    """Train one network per (model, activation, seed), evaluate each, report; return the report."""
    with runs.parent_run(config, flow_run.get_id()) as run:
        raw = download_dataset(config.data)
        runs.tag_dataset(run, raw)
        prepared = preprocess(raw, config.preprocess, config.data.dir)
        runs.tag_stages(run, {"download": raw.stage, "preprocess": prepared.stage})
        runs.log_dataset(run, raw, prepared.path)

        # the grid, then (sweep.seeds: {until_separated: true}) one more seed at a time where the
        # best activation and its runner-up cannot be told apart; each round records the
        # learning rates chosen on validation accuracy
        cells, trained = config.grid, 0
        while cells:
            trained += _train_and_evaluate(cells, prepared.path, config, run)
            cells = plan_more_seeds(run, config.sweep)
        runs.tag_grid_size(run, trained)

        if config.tracking.log_models:
            log_best_model(prepared.path, config.models, run, config.data.dir)
        # The report is read back from MLflow, as `actlab report` does: one path, no drift.
        report = build_report(run, config.report.dir)
        publish_report(report, run)
    return report


def _train_and_evaluate(cells: list[Cell], data_path: str, config: Config, run) -> int:
    """Each cell trained and evaluated on the task runner (threads here, or Dask workers)."""
    evaluated = []
    for cell in cells:
        trained = train_network.submit(
            data_path, cell, config.models, config.train, run, config.data.dir
        )
        evaluated.append(evaluate_network.submit(trained, data_path, config.models, run))
    for future in evaluated:
        future.result()
    return len(cells)


def run_comparison(config: Config) -> str:
    """`compare_activations` on the task runner `config.runner` asks for."""
    return compare_activations.with_options(task_runner=make_task_runner(config.runner))(config)
