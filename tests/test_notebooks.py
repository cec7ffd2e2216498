"""The notebooks run headless, top to bottom, on the toy benchmark and a tiny trained DA-STC run."""

from pathlib import Path

import nbclient
import nbformat
import pytest

from dastc.config import compose_config
from dastc.train import train

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    overrides = [
        f"paths.data_dir={data_dir}",
        "method=dastc",
        "trainer.max_steps=4",
        "trainer.log_every_n_steps=1",
        "trainer.limit_val_batches=1",
        "dataset.schedule.warmup_steps=1",
        "dataset.schedule.feature_fusion_start=0",
        "dataset.schedule.val_every=2",
        "dataset.batch_size=2",
    ]
    train(compose_config("train", overrides, output_dir=out))
    return out


NAMES = ["01_dataset.ipynb", "02_trained_run.ipynb", "03_training_curves.ipynb"]


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes_without_error(name, data_dir, run_dir, monkeypatch):
    monkeypatch.setenv("DASTC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DASTC_RUN_DIR", str(run_dir))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError, with the failing cell and its traceback
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{name} drew no figure"
    if name == "02_trained_run.ipynb":  # DA-STC after its warm-up: every panel of a training step is drawn
        text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
        assert "DASTC on toy, step 4" in text
        assert len(images) == 3 + 4  # 3 validation clips; source, target, mix_s2t, mix_t2s


def test_logged_metrics_reads_the_sparse_rows_of_the_csv_logger(tmp_path):
    from dastc.report import logged_metrics

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv/metrics.csv").write_text(
        "epoch,step,train/loss,val/mIoU\n0,9,1.5,\n0,19,1.25,\n0,19,,40.5\n1,29,0.75,\n"
    )
    curves = logged_metrics(tmp_path)
    assert curves == {"train/loss": ([9, 19, 29], [1.5, 1.25, 0.75]), "val/mIoU": ([19], [40.5])}
    with pytest.raises(FileNotFoundError, match="curves come from the CSV logger"):
        logged_metrics(tmp_path / "elsewhere")


def test_latest_run_is_the_newest_run_with_a_final_checkpoint(tmp_path):
    import os

    from dastc.checkpoint import latest_run
    from dastc.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no run with checkpoints/last.ckpt under .*train"):
        latest_run(tmp_path)
    runs = {
        "runs/a": 100,
        "multiruns/m/0": 300,  # sweep jobs count too
        "runs/b": 200,
    }
    for name, mtime in runs.items():
        ckpt = tmp_path / "train" / name / "checkpoints/last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
        os.utime(ckpt, (mtime, mtime))
    (tmp_path / "train/runs/c").mkdir()  # newer, but no checkpoint
    assert latest_run(tmp_path) == tmp_path / "train/multiruns/m/0"
