"""The answer on real data (Debian's Fashion-MNIST): ties are named as ties, and depth shows what
one hidden layer hides. One small flow run (one seed, 2 epochs) serves every test here."""

import os
from pathlib import Path

import pandas as pd
import pytest

from flows.compare import compare_activations
from tasks.core.config import load_config
from tests.flows.conftest import FASHION, PARAMS, small_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """relu, leaky_relu and sigmoid at 1 and 6 hidden layers of 128, plain SGD at 0.1, 2 epochs,
    seed 0: the report folder."""
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{FASHION} is missing: .ci/run must install dataset-fashion-mnist")
        pytest.skip(f"{FASHION} is missing: apt-get install dataset-fashion-mnist")
    tmp_path = tmp_path_factory.mktemp("answer")
    overrides = small_overrides(tmp_path, FASHION) + [
        "preprocess.val_size=5000",
        "train.batch_size=100",
        "train.optimizer=sgd",
        "train.learning_rate=0.1",
        "sweep.models=[mlp]",
        "sweep.activations=[relu, leaky_relu, sigmoid]",
        "sweep.depths=[1, 6]",
        "sweep.seeds=[0]",
    ]
    return Path(compare_activations(load_config(PARAMS, overrides)))


def _headline(report: Path, layers: str) -> str:
    markdown = (report / "report.md").read_text(encoding="utf-8")
    (line,) = [
        line for line in markdown.splitlines() if line.startswith("- **mlp**") and layers in line
    ]
    return line


def test_relu_and_leaky_relu_at_one_hidden_layer_tie(report):
    line = _headline(report, "with one hidden layer of 128 units")
    # the same network but for a slope of 0.01 on the negative side: image by image McNemar
    # cannot tell them apart, and the headline says so instead of naming a winner
    assert " tie for best on fashion-mnist with one hidden layer of 128 units" in line
    assert "`relu`" in line.split(" tie for best")[0] and "`leaky_relu`" in line.split(" tie")[0]
    assert "McNemar, 1 seed" in line and "Holm-corrected p" in line
    summary = pd.read_csv(report / "summary.csv")
    one = summary[summary["depth"] == 1].set_index("activation")
    assert {one.loc["relu", "verdict"], one.loc["leaky_relu", "verdict"]} == {"best", "tie"}


def test_sigmoid_at_six_hidden_layers_is_worse_than_relu_with_its_p_value(report):
    line = _headline(report, "with six hidden layers of 128 units")
    summary = pd.read_csv(report / "summary.csv")
    six = summary[summary["depth"] == 6].set_index("activation")
    # plain SGD through six sigmoid layers: the gradient vanishes and it stays near chance
    assert six.loc["sigmoid", "mean"] < 0.3 < six.loc["relu", "mean"]
    assert six.loc["relu", "verdict"] in ("best", "tie")
    assert six.loc["sigmoid", "verdict"] == "worse"
    # against relu (the baseline) directly, and against the best in the headline
    assert six.loc["sigmoid", "test"] == "McNemar" and six.loc["sigmoid", "p_value"] < 0.001
    assert six.loc["sigmoid", "vs_baseline"] < -0.3
    points = abs(six.loc["sigmoid", "vs_best"]) * 100
    assert f"worse: `sigmoid` by {points:.1f} points (p < 0.001)" in line
    # the depth figure shows it
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "](test_accuracy_vs_depth_mlp.png)" in markdown
