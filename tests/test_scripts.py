"""The scripts in scripts/, run as a user would (subprocesses), on tiny settings."""

import importlib.util
import json
import statistics
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from dastc.metrics.published import CLASSES, paper_rows, published

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


def _metrics_file(folder, dataset, classes, value, method="DASTC", selection="final checkpoint"):
    folder.mkdir(parents=True)
    iou = {c: value + k for k, c in enumerate(classes)}
    result = {"IoU": iou, "mIoU": statistics.mean(iou.values())}
    payload = {"dataset": dataset, "method": method, "selection": selection, "step": 40000}
    (folder / "metrics.json").write_text(json.dumps({**payload, "metrics": {"target": result}}))
    return folder


def _compare_runs(*args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare_runs.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _table_and_notes(markdown_file):
    """The markdown table's lines and the notes under it (after one blank line)."""
    text = markdown_file.read_text()
    table, _, notes = text.partition("\n\n")
    return table.splitlines(), notes.splitlines()


def test_compare_runs_puts_runs_beside_the_papers_rows_with_how_each_checkpoint_was_chosen(tmp_path):
    classes = CLASSES["synthia"]
    a = _metrics_file(tmp_path / "a" / "run", "synthia", classes, 50.0)
    best = "best of 12 checkpoints, selected on target val"  # what python -m dastc.eval select=best writes
    b = _metrics_file(tmp_path / "b" / "run", "synthia", classes, 60.0, method="TPS", selection=best)
    proc = _compare_runs(a, b / "metrics.json", "--markdown", tmp_path / "t.md", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines, notes = _table_and_notes(tmp_path / "t.md")
    assert lines[0] == "| run | checkpoint | " + " | ".join(classes) + " | mIoU |"
    assert lines[2].startswith("| a/run (DASTC, step 40000) | final | 50.0 | 51.0 |")
    assert lines[2].endswith(f"**{statistics.mean(50.0 + k for k in range(11)):.1f}** |")
    assert lines[3].startswith("| run/metrics.json (TPS, step 40000) | best of 12 on val | 60.0 |")
    # The papers' rows pick their checkpoint on val (docs/benchmarks.md, Published numbers).
    assert any(
        line.startswith("| paper: QuadMix / DA-STC (CNN) | best on val | 90.8 | 39.9 |") for line in lines
    )
    assert len(lines) == 2 + 2 + len(published("synthia"))
    assert notes[0].startswith("checkpoint: 'best on val' rows report the best of many checkpoints")
    assert notes[1] == "paper rows: ZHE-SAPI/UDASS, video_udass/README.md, Main Results (best on val)."
    shown = proc.stdout  # the terminal table carries the same column and notes
    assert "best of 12 on val" in shown and "paper rows: ZHE-SAPI/UDASS" in shown
    other = _metrics_file(tmp_path / "c", "viper", CLASSES["viper"], 40.0)
    mixed = _compare_runs(a, other, cwd=tmp_path)
    assert mixed.returncode != 0 and "different benchmarks" in mixed.stderr
    toy = _metrics_file(tmp_path / "d", "toy", ["road", "sky"], 70.0)
    toy_out = _compare_runs(toy, "--markdown", tmp_path / "toy.md", cwd=tmp_path)
    assert "paper:" not in toy_out.stdout  # no published rows for the toy, and so no notes
    assert _table_and_notes(tmp_path / "toy.md")[1] == []


def test_compare_runs_on_an_image_benchmark_shows_the_13_class_mean_and_the_papers_means(tmp_path):
    from dastc.data.class_spaces import SYNTHIA_IMAGE

    classes = list(SYNTHIA_IMAGE.class_names)
    run_dir = _metrics_file(tmp_path / "a" / "run", "synthia_image", classes, 40.0)
    stored = json.loads((run_dir / "metrics.json").read_text())
    stored["metrics"]["target"]["mIoU13"] = 48.25
    (run_dir / "metrics.json").write_text(json.dumps(stored))
    proc = _compare_runs(run_dir, "--markdown", tmp_path / "t.md", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines, notes = _table_and_notes(tmp_path / "t.md")
    assert lines[0] == "| run | checkpoint | " + " | ".join(classes) + " | mIoU | mIoU13 |"
    assert lines[2].endswith("| 48.2 |")  # the run's 13-class mean (rounded half to even)
    # The paper's image rows carry means only (docs/benchmarks.md, Image benchmarks), and their source does
    # not say how their checkpoint was chosen.
    empty = " | " * (len(classes) - 1)
    assert lines[-1] == f"| paper: DA-STC (ViT) | not stated | {empty} | **67.5** | 74.3 |"
    assert f"| paper: Source only | not stated | {empty} | **29.5** | 33.7 |" in lines
    assert notes[0] == "paper rows: ZHE-SAPI/UDASS, image_udass/README.md, Main Results (not stated)."
    assert notes[1].startswith("Source only: the table heads this row's means")


def test_every_published_row_says_how_its_checkpoint_was_chosen_and_where_it_was_read():
    from dastc.metrics.published import BEST_ON_VAL, FINAL, NOT_STATED, PAPER_ROWS

    for benchmark, rows in PAPER_ROWS.items():
        assert rows and len({r.method for r in rows}) == len(rows), benchmark
        for row in rows:
            assert row.protocol in (BEST_ON_VAL, FINAL, NOT_STATED) and row.source, (benchmark, row.method)
            assert len(row.iou) in (0, len(CLASSES.get(benchmark, []))), (benchmark, row.method)
    # The video papers report the best checkpoint on val.
    assert {r.protocol for b in ("synthia", "viper") for r in PAPER_ROWS[b]} == {BEST_ON_VAL}


def test_published_per_class_values_average_to_the_published_miou_as_rounded():
    # An independent check of the transcription: the mean of the stored per-class values, rounded to one
    # decimal (half up, as a printed table rounds), must be the stated mIoU.
    for benchmark in ("synthia", "viper"):
        for row in paper_rows(benchmark):
            mean = sum(Decimal(str(v)) for v in row.iou) / len(row.iou)
            rounded = float(mean.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
            assert rounded == row.means["mIoU"], (benchmark, row.method, str(mean))


def _docs_tables(heading: str) -> list[list[str]]:
    """The cells of the first markdown table under ``heading`` in docs/benchmarks.md (header rows left out)."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    lines = text.split(f"\n{heading}\n", 1)[1].splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("|")) :]
    table = lines[: next(i for i, line in enumerate(lines) if not line.startswith("|"))]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]


def test_the_docs_published_tables_are_the_stored_rows():
    for benchmark, heading in (
        ("synthia", "### SYNTHIA-Seq to Cityscapes-Seq"),
        ("viper", "### VIPER to Cityscapes-Seq"),
    ):
        docs = {cells[0]: [float(v) for v in cells[1:]] for cells in _docs_tables(heading)}
        stored = {row.method: [*row.iou, row.means["mIoU"]] for row in paper_rows(benchmark)}
        assert docs == stored, benchmark
    # Image benchmarks: one line per benchmark and mean, one column per method (blank or bracketed: left out).
    image = {cells[0]: cells[1:] for cells in _docs_tables("## Image benchmarks")}
    for benchmark, mean, line in (
        ("gta5", "mIoU", "GTA5 to Cityscapes"),
        ("synthia_image", "mIoU", "SYNTHIA to Cityscapes, 16 classes"),
        ("synthia_image", "mIoU13", "SYNTHIA to Cityscapes, 13 classes"),
    ):
        stored = {row.method: row.means[mean] for row in paper_rows(benchmark)}
        shown = dict(zip(("Source only", "DA-STC (CNN)", "DA-STC (ViT)"), image[line], strict=True))
        assert {m: float(v) for m, v in shown.items() if not v.startswith("(")} == stored, line


def _check_step_rows(so: dict, dastc: dict, batch: int) -> None:
    # Every DA-STC component runs from the first step: all seven loss terms, far more FLOPs than source-only.
    assert set(dastc["loss_terms"]) == {
        "source_ce", "target_ce", "mix_s2t_ce", "mix_t2s_ce", "feat_s2t_ce", "feat_t2s_ce", "align"
    }  # fmt: skip
    assert so["loss_terms"] == ["source_ce"]
    assert dastc["gflops_per_step"] > 3 * so["gflops_per_step"] > 0
    for row in (so, dastc):
        assert row["clips_per_s"] == batch / row["step_s"]
        assert row["mfu"] == row["gflops_per_step"] * 1e9 / row["step_s"] / 1e12


def _benchmark_train_module():
    spec = importlib.util.spec_from_file_location("benchmark_train", ROOT / "scripts" / "benchmark_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_train_step_runs_every_dastc_loss_and_counts_its_flops(data_dir):
    bench = _benchmark_train_module()
    common = {"device": "cpu", "precision": "32-true", "warmup": 0, "steps": 1, "peak_tflops": 1.0}
    sizes = {
        "source_size": (48, 96),
        "target_size": (32, 64),
    }  # source larger: cropped for mixing, as on SYNTHIA
    rows = {}
    for method in ("source_only", "dastc"):
        overrides = [
            f"paths.data_dir={data_dir}",
            "backbone=accel",
            "backbone.depth=18",
            f"method={method}",
            "dataset.batch_size=1",
            "dataset.schedule.warmup_steps=0",
            "dataset.schedule.feature_fusion_start=0",
        ]
        rows[method] = bench._measure_step({**common, **sizes, "method": method, "overrides": overrides})
    _check_step_rows(rows["source_only"], rows["dastc"], batch=1)
    loader = bench._measure_loader(
        {"overrides": [f"paths.data_dir={data_dir}", "method=dastc"], "batches": 2}
    )
    assert loader["dataset"] == "toy" and loader["clips_per_s"] > 0
    missing = bench._measure_loader(
        {"overrides": ["dataset=synthia", f"paths.data_dir={data_dir}"], "batches": 1}
    )
    assert "SYNTHIA-Seq is not at" in missing["error"]


@pytest.mark.slow
def test_benchmark_train_times_both_methods_counts_flops_and_times_the_loader(data_dir, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "benchmark_train.py"),
            "--dataset",
            "toy",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--loader-batches",
            "2",
            "--peak-tflops",
            "1.0",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "backbone.depth=18",
            "dataset.batch_size=2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    so, dastc = result["steps"]
    assert (so["method"], dastc["method"]) == ("source_only", "dastc")
    _check_step_rows(so, dastc, batch=2)
    assert result["dastc_over_source_only"] == dastc["step_s"] / so["step_s"]
    assert result["loader"]["dataset"] == "toy" and result["loader"]["clips_per_s"] > 0
    assert "DA-STC step / source-only step" in proc.stdout
