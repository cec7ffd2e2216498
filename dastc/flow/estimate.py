"""``python -m dastc.flow.estimate dataset=synthia|viper [flow.split=source|train|val|all] [flow.method=raft ...]``:
compute every optical flow file the benchmark's readers load, where they look for it (each reader's ``flow_dir``).

Existing files are skipped, so an interrupted run resumes and a second run does nothing. Flows are written as
16-bit PNGs in the readers' orientation (on frame t's grid, pointing into frame t-1; :mod:`dastc.flow`). The
Cityscapes-Seq flows are shared by both benchmarks. See conf/estimate_flow.yaml for the options.
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console

from dastc.cli import user_errors
from dastc.data.benchmark import SPLITS, open_reader, selected_splits
from dastc.data.image_io import read_rgb
from dastc.data.real_clips import RealClips
from dastc.errors import ConfigError
from dastc.flow.estimate_files import FlowFileCounts, estimate_flow_files
from dastc.flow.estimators import DISFlow, RAFTFlow, build_estimator, raft_weights_hint


def make_estimator(flow: DictConfig) -> DISFlow | RAFTFlow:
    """The estimator ``flow.method`` names, with its options."""
    if flow.method not in ("dis", "raft"):
        raise ConfigError(f"flow.method must be 'dis' or 'raft', got {flow.method!r}")
    if flow.scale is not None and flow.scale <= 0:
        raise ConfigError(f"flow.scale must be positive (or null), got {flow.scale}")
    if flow.method == "dis":
        kwargs = {"preset": flow.preset}
    else:
        if flow.raft_model not in ("large", "small"):
            raise ConfigError(f"flow.raft_model must be 'large' or 'small', got {flow.raft_model!r}")
        if not flow.raft_weights:
            raise ConfigError(
                "flow.method=raft needs flow.raft_weights=<file>: download "
                f"{raft_weights_hint(flow.raft_model)} and pass its path"
            )
        device = flow.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs = {
            "weights_path": flow.raft_weights,
            "model": flow.raft_model,
            "device": device,
            "num_flow_updates": flow.raft_iters,
        }
    try:
        return build_estimator(flow.method, **kwargs)
    except ValueError as err:  # an unknown DIS preset
        raise ConfigError(f"flow: {err}") from None


def reader_scale(reader: RealClips, first_frame: Path, scale: float | None) -> float:
    """``scale`` when given; else the factor that brings the frame files to the size the reader loads them at
    (flows are resized to the frames anyway, so estimating at full resolution would only cost time)."""
    if scale is not None:
        return float(scale)
    size = getattr(reader, "size", None)
    if size is None:
        return 1.0
    width = read_rgb(first_frame).shape[1]
    return min(1.0, size[1] / width)


def pairs_to_estimate(reader: RealClips, overwrite: bool) -> tuple[list[tuple[Path, Path, Path]], int]:
    """The reader's (current, previous, output) flow jobs, less those the authors' published files already
    cover (the readers use those when dastc's own file is absent), unless ``overwrite``; and how many that is."""
    pairs = reader.flow_pairs()
    if overwrite:
        return pairs, 0
    published = {f.ours for s in reader.samples for f in s.flows if f.published.is_file()}
    todo = [pair for pair in pairs if pair[2] not in published]
    return todo, len(pairs) - len(todo)


def estimate(cfg: DictConfig, console: Console | None = None) -> FlowFileCounts:
    """Compute the flows of the selected splits; returns the totals."""
    console = console or Console()
    flow = cfg.flow
    splits = selected_splits(flow.split, "flow.split", cfg.dataset)
    # Open every reader first: a missing dataset fails before any flow is computed.
    readers = {split: open_reader(cfg.dataset, split, require_flow=False) for split in splits}
    for split, reader in readers.items():
        if not reader.uses_flow:
            raise ConfigError(
                f"dataset={cfg.dataset.name} is an image benchmark: its clips are single images and need no flow"
            )
        if reader.flow_dir is None:
            raise ConfigError(
                f"the {split} reader (dataset.{SPLITS[split]}) has flow_dir=null: set it to where its flow "
                "files go"
            )
    estimator = make_estimator(flow)
    workers = (os.cpu_count() or 1) if flow.workers is None else int(flow.workers)
    computed = skipped = 0
    folders = []
    for split, reader in readers.items():
        pairs, published = pairs_to_estimate(reader, flow.overwrite)
        skipped += published
        if not pairs:
            continue
        scale = reader_scale(reader, pairs[0][0], flow.scale)
        folder = Path(os.path.commonpath([str(output.parent) for _, _, output in pairs]))
        console.print(
            f"{split}: {len(reader)} {reader.dataset_name} clips need {len(pairs) + published} flows"
            + (f" ({published} published files used as they are)" if published else "")
            + f"; {flow.method} at {scale:g} x the frame files' size -> {folder}",
            highlight=False,
            soft_wrap=True,
        )
        counts = estimate_flow_files(
            pairs, estimator, workers=workers, overwrite=flow.overwrite, progress=flow.progress, scale=scale
        )
        computed, skipped = computed + counts.computed, skipped + counts.skipped
        folders.append(str(folder))
    console.print(
        f"Optical flow for dataset={cfg.dataset.name}: {computed} computed, {skipped} already there "
        f"(skipped), in {', '.join(folders) or 'no folder (no clip needs flow)'}",
        highlight=False,
        soft_wrap=True,
    )
    return FlowFileCounts(computed, skipped)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="estimate_flow")
def main(cfg: DictConfig) -> None:
    with user_errors():
        estimate(cfg)


if __name__ == "__main__":
    main()
