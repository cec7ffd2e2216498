"""The scripts in scripts/, run as a user would (subprocesses), on tiny settings."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_compare_methods_trains_each_method_per_seed_and_summarises(data_dir, tmp_path):
    out = tmp_path / "compare"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "compare_methods.py"),
            "--seeds",
            "1,2",
            "--methods",
            "source_only,dastc",
            "--out",
            str(out),
            f"paths.data_dir={data_dir}",
            "trainer.max_steps=2",
            "dataset.schedule.warmup_steps=1",
            "dataset.batch_size=2",
            "trainer.limit_val_batches=1",
            "callbacks=none",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["results"]) == ["source_only", "dastc"] and summary["seeds"] == [1, 2]
    for name, result in summary["results"].items():
        runs = result["target_mIoU"]["runs"]
        assert len(runs) == 2 and result["target_mIoU"]["mean"] == statistics.mean(runs)
        for row in result["runs"]:  # each run is a normal run directory
            metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
            assert metrics["metrics"]["target"]["mIoU"] == row["target_mIoU"]
            assert metrics["method"] == {"source_only": "SourceOnly", "dastc": "DASTC"}[name]
    assert "source_only" in proc.stdout and "+-" in proc.stdout
    assert summary["reference"] == "dastc"  # DA-STC minus source-only, seed by seed
    paired = summary["paired"]["source_only"]
    dastc, source_only = (summary["results"][k]["target_mIoU"]["runs"] for k in ("dastc", "source_only"))
    assert paired["runs"] == [a - b for a, b in zip(dastc, source_only, strict=True)]
    assert paired["wins"] == sum(d > 0 for d in paired["runs"])
    shown = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare_methods.py"), "--show", str(out / "summary.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and "dastc minus each" in shown.stdout
