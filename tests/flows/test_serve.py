"""`actlab serve`: a scheduled deployment on a real Prefect server runs on trigger into MLflow."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.config import load_config
from tests.flows.conftest import PARAMS, small_overrides

runner = CliRunner()
DEPLOYMENT = "compare-activations/test-serve"


def _sets(overrides: list[str]) -> list[str]:
    return [word for o in overrides for word in ("--set", o)]


def _wait_for_deployment(server: subprocess.Popen, seconds: float = 180):
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"actlab serve exited {server.returncode}")
            try:
                return client.read_deployment_by_name(DEPLOYMENT)
            except ObjectNotFound:
                time.sleep(1)
    pytest.fail(f"{DEPLOYMENT} was not registered within {seconds} s")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 180 s to register, 600 s for the run, 300 s to end
def test_served_deployment_runs_on_trigger_and_logs_to_mlflow(tmp_path, idx_folder):
    overrides = small_overrides(tmp_path, idx_folder) + ["sweep.models=[tutorial]"]
    cfg = load_config(PARAMS, overrides)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # pick the triggered run up within a second
    }
    actlab = Path(sys.executable).with_name("actlab")
    args = ["serve", "--cron", "0 3 * * *", "--name", "test-serve", "-p", str(PARAMS)]
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        [str(actlab), *args, *_sets(overrides)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployment = _wait_for_deployment(server)
        assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
        assert deployment.parameters["config"]["train"]["epochs"] == 2

        flow_run = run_deployment(DEPLOYMENT, timeout=600, poll_interval=2)

        assert flow_run.state.is_completed(), (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()

    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["prefect.flow_run_id"] == str(flow_run.id)
    assert sorted(c.info.run_name for c in children) == [
        "tutorial/relu/seed=0",
        "tutorial/softmax/seed=0",
    ]


def test_serve_rejects_bad_params_and_a_bad_cron_before_serving(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad_key = runner.invoke(
        app, ["serve", "--cron", "0 3 * * *", "-p", str(PARAMS), "--set", "train.epoch=3"]
    )
    assert bad_key.exit_code == 2
    assert "train.epoch: unknown key (did you mean 'epochs'?)" in bad_key.stderr

    bad_cron = runner.invoke(app, ["serve", "--cron", "61 3 * * *", "-p", str(PARAMS)])
    assert bad_cron.exit_code == 2
    assert "--cron '61 3 * * *'" in bad_cron.stderr and "e.g. '0 3 * * *'" in bad_cron.stderr

    secret = "tracking.uri=http://me:hunter2@127.0.0.1:5000"
    leaky = runner.invoke(app, ["serve", "--cron", "0 3 * * *", "-p", str(PARAMS), "--set", secret])
    assert leaky.exit_code == 2
    assert "tracking.uri holds a password" in leaky.stderr and "hunter2" not in leaky.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # needs the Prefect test server
def test_prefect_yaml_deploys_the_same_schedule_onto_a_process_work_pool(tmp_path):
    from prefect.client.schemas.actions import WorkPoolCreate

    repo = Path(__file__).resolve().parents[2]
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool("local-process")
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name="local-process", type="process"))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    prefect = Path(sys.executable).with_name("prefect")
    done = subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("compare-activations/scheduled")
    assert deployment.work_pool_name == "local-process"
    assert deployment.entrypoint == "flows/compare.py:compare_activations"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
    assert deployment.global_concurrency_limit.limit == 1  # one comparison at a time
    assert deployment.parameters == {"config": {}}
    steps = deployment.pull_steps
    assert steps == [
        {
            "prefect.deployments.steps.set_working_directory": {
                "directory": "{{ prefect.variables.actlab_dir }}"
            }
        }
    ]
