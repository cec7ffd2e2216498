"""``python -m dastc.data.verify dataset=synthia|viper``: check that a real benchmark is complete before training.

The checks run in this order and the command stops at the first kind of problem, listing the files (exit
status 2):

1. layout: each dataset is where the config says;
2. frames: every labelled frame has the frames its clip needs (t, t-1, and t-2 for target training);
3. labels: every label file the clips use decodes and holds only the dataset's own class ids;
4. flow: every flow the clips need is there (dastc's PNG or the authors' published ``*_int16_x10.npy``).

It prints the clips found per split next to the official counts (docs/benchmarks.md, The benchmarks) and the
class histogram of the source labels. Nothing is written.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from dastc.cli import user_errors
from dastc.data.benchmark import open_reader, selected_splits
from dastc.data.real_clips import RealClips, flow_command
from dastc.errors import DataFileError, DatasetNotFoundError

# Clips of the full datasets (docs/benchmarks.md, The benchmarks): labelled SYNTHIA-Seq frames 000001-000849,
# VIPER's labelled train frames, Cityscapes-Seq's annotated train and val frames.
OFFICIAL_CLIPS = {
    ("synthia_seq", "train"): 849,
    ("viper", "train"): 13367,
    ("cityscapes_seq", "train"): 2975,
    ("cityscapes_seq", "val"): 500,
}

NAMES = {"synthia_seq": "SYNTHIA-Seq", "viper": "VIPER", "cityscapes_seq": "Cityscapes-Seq"}


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def listing(lines: Iterable[object], max_listed: int = 10) -> str:
    """Indented lines, at most ``max_listed`` of them, then 'and N more'."""
    lines = [str(line) for line in lines]
    shown = [f"  {line}" for line in lines[:max_listed]]
    if len(lines) > max_listed:
        shown.append(f"  and {len(lines) - max_listed} more")
    return "\n".join(shown)


@dataclass
class LabelStats:
    """What decoding a reader's labels found: problems ('path: reason') and, per train id, the labelled pixels
    and the number of label files holding the class."""

    num_classes: int
    problems: list[str] = field(default_factory=list)
    pixels: np.ndarray = field(init=False)
    files: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.pixels = np.zeros(self.num_classes, dtype=np.int64)
        self.files = np.zeros(self.num_classes, dtype=np.int64)


def open_readers(dataset_cfg: DictConfig, splits: list[str]) -> dict[str, RealClips]:
    """Check 1: every split's reader opens (roots present, at least one clip)."""
    readers, missing = {}, []
    for split in splits:
        try:
            readers[split] = open_reader(dataset_cfg, split, require_flow=False)
        except DatasetNotFoundError as err:
            missing.append(f"{split}: {err}")
    if missing:
        raise DatasetNotFoundError(
            f"dataset={dataset_cfg.name} is incomplete: {plural(len(missing), 'split')} cannot be read:\n"
            + listing(missing)
        )
    return readers


def check_frames(readers: dict[str, RealClips], max_listed: int) -> None:
    """Check 2: the frames that labelled frames need are all present."""
    missing = list(dict.fromkeys(p for reader in readers.values() for p in reader.missing_frames))
    if missing:
        raise DataFileError(
            f"labelled clips miss {plural(len(missing), 'frame')} (those clips are left out of training and "
            "scoring; unpack the archive again):\n" + listing(missing, max_listed)
        )


def _label_paths(reader: RealClips) -> list[Path]:
    paths = (p for s in reader.samples for p in s.labels if p is not None)
    return list(dict.fromkeys(paths))


def _check_label(reader: RealClips, path: Path, num_classes: int) -> tuple[str | None, np.ndarray | None]:
    """(problem or None, per-class pixel counts or None) of one label file."""
    try:
        raw = reader.read_raw_label(path)
        bad = np.unique(raw[raw >= reader.raw_label_ids])
        if bad.size:
            name = NAMES.get(reader.dataset_name, reader.dataset_name)
            return f"{path}: raw ids {bad[:5].tolist()} outside {name}'s 0..{reader.raw_label_ids - 1}", None
        decoded = np.asarray(reader.decode_label(raw, path))
    except DataFileError as err:
        return str(err), None
    kept = decoded[decoded != 255]
    if kept.size and kept.max() >= num_classes:
        return f"{path}: decodes to train ids above {num_classes - 1} (other than 255)", None
    return None, np.bincount(kept.ravel(), minlength=num_classes)


def check_labels(
    readers: dict[str, RealClips], num_classes: int, workers: int, progress: bool
) -> dict[str, LabelStats]:
    """Check 3: decode every label file the labelled readers use; per split, the problems and class counts."""
    stats = {}
    with Progress(disable=not progress, transient=True) as bar, ThreadPoolExecutor(max(1, workers)) as pool:
        for split, reader in readers.items():
            if not reader.labelled:
                continue
            paths = _label_paths(reader)
            task = bar.add_task(f"decoding {split} labels", total=len(paths))
            stats[split] = split_stats = LabelStats(num_classes)
            checks = pool.map(functools.partial(_check_label, reader, num_classes=num_classes), paths)
            for problem, counts in checks:
                bar.advance(task)
                if problem is not None:
                    split_stats.problems.append(problem)
                else:
                    split_stats.pixels += counts
                    split_stats.files += counts > 0
    return stats


def raise_label_problems(stats: dict[str, LabelStats], max_listed: int) -> None:
    problems = [p for s in stats.values() for p in s.problems]
    if problems:
        raise DataFileError(
            f"{plural(len(problems), 'label file')} unreadable or holding values outside the dataset's "
            "class ids:\n" + listing(problems, max_listed)
        )


def missing_flows(reader: RealClips) -> list[Path]:
    """The flows the reader's clips need that exist in neither dastc's format nor the published one (where
    dastc's estimator would write each), in order, once each."""
    flows = (f for s in reader.samples for f in s.flows)
    return list(dict.fromkeys(f.ours for f in flows if not f.ours.is_file() and not f.published.is_file()))


def check_flows(readers: dict[str, RealClips], benchmark: str, max_listed: int) -> None:
    """Check 4: every flow the clips need exists, in dastc's format or the published one."""
    missing = dict.fromkeys(p for reader in readers.values() for p in missing_flows(reader))
    if missing:
        raise DataFileError(
            f"{plural(len(missing), 'flow file')} missing: compute them with `{flow_command(benchmark)}` "
            "(or put the authors' published *_int16_x10.npy files directly in the flow folders):\n"
            + listing(missing, max_listed)
        )


def clips_table(readers: dict[str, RealClips]) -> Table:
    table = Table(title="Clips per split")
    for column in ("split", "dataset", "clips found", "official count", "root", "flow folder"):
        table.add_column(column, overflow="fold")  # paths wrap rather than lose their ends
    for split, reader in readers.items():
        official = OFFICIAL_CLIPS.get((reader.dataset_name, reader.split))
        found = f"{len(reader):,}"
        if official is not None and len(reader) != official:
            found = f"[yellow]{found}[/yellow]"  # a partial copy: allowed, but not the paper's data
        table.add_row(
            split,
            NAMES.get(reader.dataset_name, reader.dataset_name),
            found,
            f"{official:,}" if official is not None else "-",
            str(reader.root),
            str(reader.flow_dir) if reader.flow_dir is not None else "not used",
        )
    return table


def histogram_table(stats: LabelStats, class_names: list[str]) -> Table:
    table = Table(title="Source labels: class histogram")
    for column, justify in (
        ("id", "right"),
        ("class", "left"),
        ("pixels", "right"),
        ("label files", "right"),
    ):
        table.add_column(column, justify=justify)
    total = max(int(stats.pixels.sum()), 1)
    for c, name in enumerate(class_names):
        share = f"{100 * stats.pixels[c] / total:.2f} %"
        table.add_row(str(c), name, share if stats.pixels[c] else "[red]0 %[/red]", f"{stats.files[c]:,}")
    return table


def verify(cfg: DictConfig, console: Console | None = None) -> None:
    """Run the checks (raising a DastcError at the first kind of problem) and print the summary."""
    console = console or Console()
    options, dataset = cfg.verify, cfg.dataset
    readers = open_readers(dataset, selected_splits(options.split, "verify.split", dataset))
    console.print(clips_table(readers))
    check_frames(readers, options.max_listed)
    if options.labels:
        stats = check_labels(readers, dataset.num_classes, options.workers, options.progress)
        raise_label_problems(stats, options.max_listed)
        if "source" in stats:
            console.print(histogram_table(stats["source"], list(dataset.class_names)))
    check_flows(readers, dataset.name, options.max_listed)
    console.print(
        f"[green]dataset={dataset.name}: all checks passed[/green] ({', '.join(readers)}): ready for "
        f"`python -m dastc.train dataset={dataset.name} backbone=accel`"
    )


@hydra.main(version_base="1.3", config_path="../../conf", config_name="verify")
def main(cfg: DictConfig) -> None:
    with user_errors():
        verify(cfg)


if __name__ == "__main__":
    main()
