"""The experiment: which activation function should this network use?

Wiring only: each line is a stage of the experiment; the work lives in `tasks/`.
"""

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import tracking
from tasks.config import Config
from tasks.data import download_dataset, preprocess
from tasks.evaluate import evaluate_network
from tasks.report import build_report, publish_report
from tasks.runner import make_task_runner
from tasks.served import log_best_model
from tasks.train import train_network


# Default when called directly or served: one network at a time in a worker thread. `actlab run`
# picks the runner from params through run_comparison.
@flow(name="compare-activations", task_runner=ThreadPoolTaskRunner(max_workers=1))
def compare_activations(config: Config) -> str:
    """Train one network per (model, activation, seed), evaluate each, report; return the report."""
    with tracking.parent_run(config, flow_run.get_id()) as run:
        raw = download_dataset(config.data)
        tracking.tag_dataset(run, raw)
        prepared = preprocess(raw, config.preprocess, config.data.dir)
        data_path = prepared["path"]
        tracking.tag_stages(run, {"download": raw["stage"], "preprocess": prepared["stage"]})
        tracking.log_dataset(run, raw, data_path)

        # submitted to the task runner (runner in params): threads here, or Dask workers
        evaluated = []
        for cell in config.grid:
            trained = train_network.submit(
                data_path, cell, config.models, config.train, run, config.data.dir
            )
            evaluated.append(evaluate_network.submit(trained, data_path, cell, config.models, run))
        results = [future.result() for future in evaluated]

        if config.tracking.log_models:
            log_best_model(results, data_path, config.models, run)
        # The report is read back from MLflow, as `actlab report` does: one path, no drift.
        report = build_report(run, config.report.dir)
        publish_report(report, run)
    return report


def run_comparison(config: Config) -> str:
    """`compare_activations` on the task runner `config.runner` asks for."""
    return compare_activations.with_options(task_runner=make_task_runner(config.runner))(config)
