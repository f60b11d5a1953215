"""Every kind of bad params, as a user meets it through `actlab run`: exit code 2, a message naming
the key, the value and what would be accepted, and nothing downloaded, trained or logged.

Each case runs in an empty project folder holding only params.yaml. The defaults put the MLflow
store (mlflow.db, mlruns/), data/ and reports/ in that folder, so "nothing written" is "the folder
still holds only what the test put there".
"""

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.flows.conftest import PARAMS

runner = CliRunner()


def _sets(*overrides: str) -> list[str]:
    return [word for o in overrides for word in ("--set", o)]


def _reject(tmp_path: Path, monkeypatch, args: list[str], files: dict[str, str] | None = None):
    """Run `actlab run ARGS` in a fresh project folder; return stderr after checking that the run
    was refused with exit code 2 and that the folder holds only what was there before."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(PARAMS, tmp_path / "params.yaml")
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())

    result = runner.invoke(app, ["run", *args])

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no data, mlflow.db, mlruns, ...
    return result.stderr


# (id, --set overrides, regex the message must match)
OVERRIDES = [
    # unknown keys at every level, with a did-you-mean
    ("unknown-section", ["trian.epochs=3"], r"trian: unknown key \(did you mean 'train'\?\)"),
    ("unknown-train-key", ["train.epoch=3"], r"train\.epoch: unknown key \(did you mean 'epochs'"),
    (
        "unknown-nested-key",
        ["models.mlp.hiden_units=[64]"],
        r"models\.mlp\.hiden_units: unknown key \(did you mean 'hidden_units'\?\); "
        r"keys accepted in models\.mlp: hidden_units, init",
    ),
    ("unknown-data-key", ["data.sorce=mnist"], r"data\.sorce: unknown key \(did you mean 'source'"),
    (
        "unknown-sweep-key",
        ["sweep.activation=[relu]"],
        r"sweep\.activation: unknown key \(did you mean 'activations'",
    ),
    (
        "unknown-tracking-key",
        ["tracking.experimnt=x"],
        r"tracking\.experimnt: unknown key \(did you mean 'experiment'",
    ),
    # wrong types
    ("epochs-not-a-number", ["train.epochs=three"], r"train\.epochs = 'three': .*valid integer"),
    ("batch-fractional", ["train.batch_size=1.5"], r"train\.batch_size = 1\.5: .*valid integer"),
    ("lr-a-word", ["train.learning_rate=fast"], r"train\.learning_rate = 'fast': .*valid number"),
    ("standardize-not-bool", ["preprocess.standardize=maybe"], r"standardize = 'maybe': .*bool"),
    ("hidden-units-not-a-list", ["models.mlp.hidden_units=wide"], r"hidden_units = 'wide': "),
    ("section-is-a-value", ["train=3"], r"train = 3: Input should be a valid dictionary"),
    # out of range
    ("epochs-zero", ["train.epochs=0"], r"train\.epochs = 0: .*greater than or equal to 1"),
    ("epochs-negative", ["train.epochs=-2"], r"train\.epochs = -2: .*greater than or equal to 1"),
    ("batch-zero", ["train.batch_size=0"], r"train\.batch_size = 0: .*greater than or equal to 1"),
    ("lr-zero", ["train.learning_rate=0"], r"train\.learning_rate = 0: .*greater than 0"),
    (
        "lr-negative",
        ["train.learning_rate=-0.1"],
        r"train\.learning_rate = -0\.1: .*greater than 0",
    ),
    ("lr-nan", ["train.learning_rate=.nan"], r"train\.learning_rate = nan: .*finite number"),
    ("lr-inf", ["train.learning_rate=.inf"], r"train\.learning_rate = inf: .*finite number"),
    ("decay-one", ["train.lr_decay=1"], r"train\.lr_decay = 1: Input should be less than 1"),
    ("decay-negative", ["train.lr_decay=-0.1"], r"train\.lr_decay = -0\.1: .*greater than or"),
    ("momentum-one", ["train.momentum=1"], r"train\.momentum = 1: Input should be less than 1"),
    ("timeout-zero", ["data.timeout_seconds=0"], r"data\.timeout_seconds = 0: .*greater than 0"),
    ("retries-negative", ["data.retries=-1"], r"data\.retries = -1: .*greater than or equal to 0"),
    ("hidden-units-zero", ["models.mlp.hidden_units=[0]"], r"every layer needs at least 1 unit"),
    (
        "val-size-vs-mnist",
        ["preprocess.val_size=60000"],
        r"preprocess\.val_size = 60000: must be smaller than the 60000 images",
    ),
    (
        "batch-vs-mnist",
        ["train.batch_size=56000"],
        r"train\.batch_size = 56000: larger than the 55000 training images",
    ),
    # unknown names
    (
        "unknown-activation",
        ["sweep.activations=[relu,tanhh]"],
        r"unknown activation 'tanhh' \(did you mean 'tanh'\?\); accepted: .*sigmoid",
    ),
    ("unknown-model", ["sweep.models=[mlp,mpl]"], r"sweep\.models\[1\] = 'mpl': .*'tutorial'"),
    ("unknown-mlp-init", ["models.mlp.init=xavier"], r"models\.mlp\.init = 'xavier': .*'auto'"),
    (
        "unknown-tutorial-init",
        ["models.tutorial.init=ones"],
        r"models\.tutorial\.init = 'ones': .*'zeros'",
    ),
    ("unknown-optimizer", ["train.optimizer=adamw"], r"train\.optimizer = 'adamw': .*'sgd'"),
    ("unknown-schedule", ["train.schedule=cosine"], r"train\.schedule = 'cosine': .*'epoch_decay'"),
    (
        "softmax-hidden",
        ["sweep.models=[mlp]", "sweep.activations=[softmax,relu]"],
        r"'softmax' is only valid as the tutorial model's output .* add 'tutorial'",
    ),
    # empty or duplicate grid entries
    ("no-activations", ["sweep.activations=[]"], r"sweep\.activations = \[\]: list at least one"),
    ("no-models", ["sweep.models=[]"], r"sweep\.models = \[\]: list at least one model"),
    ("no-seeds", ["sweep.seeds=[]"], r"sweep\.seeds = \[\]: list at least one seed"),
    ("dup-activation", ["sweep.activations=[relu,relu]"], r"activation listed more than once"),
    ("dup-model", ["sweep.models=[mlp,mlp]"], r"model listed more than once: mlp"),
    ("dup-seed", ["sweep.seeds=[1,2,1]"], r"seed listed more than once: 1"),
    ("negative-seed", ["sweep.seeds=[-1]"], r"seeds must be whole numbers in \[0, 2\^31\)"),
    # data sources
    ("source-nowhere", ["data.source=/no/such/folder"], r"data\.source = '/no/such/folder': .*nei"),
    ("mirror-plain-http", ["data.mirrors=[http://example.org/]"], r"not https://"),
    ("no-mirrors", ["data.mirrors=[]"], r"give at least one mirror URL"),
    ("empty-experiment", ["tracking.experiment="], r"tracking\.experiment = None"),
    # malformed --set
    ("set-without-equals", ["train.epochs"], r"--set 'train\.epochs': expected KEY=VALUE"),
    ("set-without-key", ["=3"], r"--set '=3': expected KEY=VALUE"),
    ("set-empty-part", ["train..epochs=3"], r"--set 'train\.\.epochs=3': expected KEY=VALUE"),
    ("set-bad-yaml", ["sweep.activations=[relu"], r"the value is not valid YAML"),
    ("set-into-a-value", ["train.epochs.max=3"], r"train\.epochs is a value, not a section"),
    ("set-python-tag", ["train.epochs=!!python/object/apply:os.getpid []"], r"safe loader"),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [c[1:] for c in OVERRIDES], ids=[c[0] for c in OVERRIDES]
)
def test_bad_override_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, overrides, expected
):
    message = _reject(tmp_path, monkeypatch, _sets(*overrides))
    assert re.search(expected, message), message


# Limits that depend on the data: a local folder's training file is 600 images (its IDX header is
# read, 8 bytes, while validating), so these stop before any download, training or MLflow write.
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["preprocess.val_size=600"],
            r"preprocess\.val_size = 600: must be smaller than the 600 images of the training file",
        ),
        (
            ["preprocess.val_size=100", "train.batch_size=501"],
            r"train\.batch_size = 501: larger than the 500 training images left after "
            r"preprocess\.val_size = 100",
        ),
    ],
    ids=["val-size-vs-folder", "batch-vs-folder"],
)
def test_limits_from_a_folders_data_are_checked_before_anything_is_written(
    tmp_path, monkeypatch, idx_folder, overrides, expected
):
    message = _reject(tmp_path, monkeypatch, _sets(f"data.source={idx_folder}", *overrides))
    assert re.search(expected, message), message


def test_folder_missing_a_file_is_named(tmp_path, monkeypatch, idx_folder):
    partial = tmp_path.parent / f"{tmp_path.name}-partial"
    shutil.copytree(idx_folder, partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    message = _reject(tmp_path, monkeypatch, _sets(f"data.source={partial}"))
    assert re.search(r"data\.source = .*lacks t10k-labels-idx1-ubyte\.gz", message), message


# (id, params file text or None for no file, regex)
FILES = [
    ("missing", None, r"params file 'p\.yaml' not found \(pass one with -p FILE\)"),
    ("empty", "# nothing here\n", r"params file 'p\.yaml' is empty"),
    ("not-a-mapping", "- train\n- sweep\n", r"'p\.yaml' must be a mapping of sections.*got a list"),
    ("a-scalar", "just words\n", r"'p\.yaml' must be a mapping of sections.*got a str"),
    (
        "invalid-yaml",
        "train:\n  epochs: 3\n  batch_size: [1, 2\nsweep:\n  seeds: [0]\n",
        r"params file 'p\.yaml' is not valid YAML at line 4, column 6: expected ',' or '\]'.*"
        r"\(while parsing a flow sequence that starts at line 3\)",
    ),
    (
        "bad-indentation",
        "train:\n  epochs: 3\n   batch_size: 10\n",
        r"params file 'p\.yaml' is not valid YAML at line 3",
    ),
    (
        "python-tag",
        "train:\n  epochs: !!python/object/apply:os.system ['echo hi']\n",
        r"'p\.yaml' is not valid YAML at line 2.*python/object/apply:os\.system.*safe loader",
    ),
    ("section-a-list", "train: [1, 2]\n", r"train = \[1, 2\]: Input should be a valid dictionary"),
    ("unknown-key-in-file", "train:\n  epoks: 3\n", r"train\.epoks: .*did you mean 'epochs'"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in FILES], ids=[c[0] for c in FILES])
def test_bad_params_file_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, text, expected
):
    files = {} if text is None else {"p.yaml": text}
    message = _reject(tmp_path, monkeypatch, ["-p", "p.yaml"], files)
    assert re.search(expected, message, re.S), message


def test_every_problem_is_listed_at_once(tmp_path, monkeypatch):
    message = _reject(
        tmp_path, monkeypatch, _sets("train.epochs=0", "train.learning_rate=-1", "sweep.seeds=[]")
    )
    problems = [line for line in message.splitlines() if line.startswith("  - ")]
    assert len(problems) == 3, message
