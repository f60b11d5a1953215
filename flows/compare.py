"""The experiment: which activation function should this network use?

Wiring only: each line is a stage of the experiment; the work lives in `tasks/`.
"""

from prefect import flow
from prefect.runtime import flow_run

from tasks import tracking
from tasks.config import Config
from tasks.data import download_dataset, preprocess
from tasks.evaluate import evaluate_network
from tasks.report import build_report, publish_report, report_context
from tasks.train import train_network


@flow(name="compare-activations")
def compare_activations(config: Config) -> str:
    """Train one network per (model, activation, seed), evaluate each, report; return the report."""
    with tracking.parent_run(config, flow_run.get_id()) as run:
        raw = download_dataset(config.data)
        tracking.tag_dataset(run, raw)
        prepared = preprocess(raw, config.preprocess, config.data.dir)
        data_path = prepared["path"]
        stages = {"download": raw["stage"], "preprocess": prepared["stage"]}
        tracking.tag_stages(run, stages)

        results = []
        for cell in config.grid:
            trained = train_network(
                data_path, cell, config.models, config.train, run, config.data.dir
            )
            results.append(evaluate_network(trained, data_path, cell, config.models, run))

        context = {**report_context(config, raw, run.parent_run_id), "stages": stages}
        report = build_report(results, config.report.dir, run.parent_run_id, context)
        publish_report(report, run)
    return report
