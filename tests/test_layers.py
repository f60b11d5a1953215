"""The layout holds: layers point one way, the core stays light, commands that train nothing import
no TensorFlow (`actlab report` and a `reproduce` that cannot start not either), and no figure
touches pyplot's global state."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("flows", "tasks") for p in (ROOT / folder).rglob("*.py"))


def test_import_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is missing: install the dev extra"
    done = subprocess.run(
        [lint_imports], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


_PROBE = """
import json, sys
from typer.testing import CliRunner
from flows.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = ("tensorflow", "keras", "prefect", "mlflow")
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _loaded_by(args: list[str], cwd: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("args", "exit_code", "allowed"),
    [
        (["--help"], 0, []),
        (["run", "-p", str(ROOT / "params.yaml"), "--set", "train.epoch=3"], 2, []),
        (["runs", "-p", str(ROOT / "params.yaml")], 0, []),  # a SQLite store: read directly
        # reading runs back needs MLflow (and publishing a report Prefect), never TensorFlow
        (["report", "0" * 32, "-p", str(ROOT / "params.yaml")], 1, ["prefect", "mlflow"]),
        (["reproduce", "0" * 32, "-p", str(ROOT / "params.yaml")], 2, ["mlflow"]),
    ],
    ids=["help", "config-error", "runs", "report", "reproduce-unknown-run"],
)
def test_commands_that_train_nothing_import_no_tensorflow(tmp_path, args, exit_code, allowed):
    probe = _loaded_by(args, tmp_path)
    assert probe["exit"] == exit_code, probe["output"]
    assert set(probe["loaded"]) <= set(allowed), probe["loaded"]
    if args[0] == "run":
        assert "did you mean 'epochs'" in probe["output"]
    elif args[0] in ("report", "reproduce"):
        assert "0" * 32 in probe["output"]  # the run it could not find, named


def test_no_module_uses_pyplot():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            assert not any("pyplot" in n for n in names), f"{path}:{node.lineno} imports pyplot"
