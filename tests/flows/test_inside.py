"""Inside the networks on real data: a deep sigmoid network's gradients vanish and the report says
so; a deep ReLU network's do not."""

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.compare import compare_activations
from tasks.core.config import load_config
from tasks.report import why
from tasks.tracking.records import load_comparison
from tests.flows.conftest import PARAMS, small_overrides


@pytest.mark.slow
def test_six_sigmoid_layers_get_a_vanishing_gradient_sentence_and_six_relu_layers_do_not(
    tmp_path, fashion_mnist
):
    overrides = small_overrides(tmp_path, fashion_mnist) + [
        "preprocess.val_size=5000",
        "train.epochs=1",
        "train.batch_size=100",
        "sweep.models=[mlp]",
        "sweep.activations=[sigmoid, relu]",
        "models.mlp.hidden_units=[64, 64, 64, 64, 64, 64]",
    ]
    cfg = load_config(PARAMS, overrides)
    report = Path(compare_activations(cfg))

    markdown = (report / "report.md").read_text(encoding="utf-8")
    why_section = markdown.split("## Why activations lost or failed")[1].split("\n## ")[0]
    sigmoid = [line for line in why_section.splitlines() if line.startswith("- `sigmoid`")]
    assert len(sigmoid) == 1 and "(vanishing gradients)" in sigmoid[0], why_section
    assert "- `relu`" not in why_section  # relu won: no sentence, and none about vanishing
    assert "below 0.01 (1/100)" in markdown  # the rule's threshold, stated
    table = pd.read_csv(report / "results.csv").set_index("activation")
    assert table.loc["relu", "test_accuracy"] > 0.7 > 0.2 > table.loc["sigmoid", "test_accuracy"]

    # The same rules on what MLflow holds: ReLU's measurements fire no vanishing rule.
    client = MlflowClient(cfg.tracking.uri)
    parent = client.search_runs(
        [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
        filter_string="tags.`mlflow.parentRunId` IS NULL",
    )[0]
    results, _ = load_comparison(cfg.tracking.uri, parent.info.run_id, confusion=False)
    runs = {r["activation"]: r for r in results}
    assert not any("vanishing" in f for f in why.findings([runs["relu"]]))
    assert any("vanishing" in f for f in why.findings([runs["sigmoid"]]))
    for r in results:  # six hidden layers, one point per epoch each
        assert {f"layer{k}.grad_norm_ratio" for k in range(1, 7)} <= set(r["diagnostics"])
        assert all(len(v) == 1 for v in r["diagnostics"].values())
