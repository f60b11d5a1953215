"""tasks/steps.py: the Prefect tasks are thin wrappers over the plain functions."""

from tasks.core.config import DataConfig, PreprocessConfig
from tasks.core.results import CACHED, RAN, PreparedData, RawDataset
from tasks.data.download import fetch_dataset
from tasks.data.prepare import preprocess_dataset
from tasks.steps import download_dataset, preprocess


def test_prefect_tasks_wrap_the_functions(idx_folder, tmp_path):
    cfg = DataConfig(source=str(idx_folder), dir=tmp_path / "data")
    raw = download_dataset.fn(cfg)
    assert isinstance(raw, RawDataset)
    again = fetch_dataset(cfg)
    assert (raw.source, raw.name, raw.digest, raw.files) == (
        again.source,
        again.name,
        again.digest,
        again.files,
    )
    assert (raw.stage.status, again.stage.status) == (RAN, CACHED)
    prepared = preprocess.fn(raw, PreprocessConfig(val_size=100), tmp_path)
    assert isinstance(prepared, PreparedData)
    assert prepared.path == preprocess_dataset(raw, PreprocessConfig(val_size=100), tmp_path)
    assert prepared.stage.status == "ran"
    assert (download_dataset.name, preprocess.name) == ("download_dataset", "preprocess")
