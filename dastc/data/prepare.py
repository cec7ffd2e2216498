"""Getting a downloaded benchmark ready before training: the cheap checks of ``python -m dastc.data.verify`` and
the optical flow that is still missing, computed with the engine of ``python -m dastc.flow.estimate``.

Run once per node, by the DataModule's ``prepare_data`` (rank 0, before the process group and before any GPU
work), so that a run on an incomplete benchmark stops with one sentence at start-up instead of at its first
clip, and a first run computes its flow instead of asking for a separate command.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dastc.data.benchmark import SPLITS, open_reader
from dastc.data.real_clips import RealClips
from dastc.data.verify import check_flows, missing_flows, plural

log = logging.getLogger(__name__)

# The flow options of `python -m dastc.flow.estimate` (conf/estimate_flow.yaml): one set of defaults for both.
ESTIMATE_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "estimate_flow.yaml"


def flow_options(overrides: Mapping | None = None) -> DictConfig:
    """conf/estimate_flow.yaml's ``flow`` options with ``overrides`` (``dataset.prepare.flow_options``)."""
    options = OmegaConf.load(ESTIMATE_CONFIG).flow
    return OmegaConf.merge(options, OmegaConf.create(dict(overrides or {})))


def prepare_benchmark(name: str, configs: Mapping[str, DictConfig], options: Mapping, console=None) -> None:
    """Check that a downloaded benchmark is there (every split's reader opens, with at least one clip) and, when
    ``options["flow"]``, compute the flow files its clips need that neither dastc nor the authors' published
    files provide; then every flow must be there (the error names the command that computes them).

    ``configs`` maps the DataModule's ``source``/``target``/``val`` to their dataset configs (``val`` may be
    None: a target without labelled frames); ``options`` is the benchmark's ``dataset.prepare``.
    """
    console = console or Console()
    dataset = OmegaConf.create(
        {"name": name, **{key: configs[key] for key in SPLITS.values() if configs.get(key) is not None}}
    )
    splits = [split for split, key in SPLITS.items() if key in dataset]
    readers = _open(dataset, splits)
    missing_frames = list(dict.fromkeys(p for r in readers.values() for p in r.missing_frames))
    if missing_frames:  # a partial copy trains on the clips it has; say so once
        log.warning(
            "%s: %s that labelled clips need are missing, so those clips are left out (first: %s); "
            "`python -m dastc.data.verify dataset=%s` lists them",
            name,
            plural(len(missing_frames), "frame"),
            missing_frames[0],
            name,
        )
    flow_readers = [
        split for split, r in readers.items() if r.uses_flow and r.flow_dir is not None and missing_flows(r)
    ]
    if options.get("flow", True) and flow_readers:
        from dastc.flow.estimate import estimate

        for split in flow_readers:  # resumable: the files already there are skipped
            flow = OmegaConf.merge(flow_options(options.get("flow_options")), {"split": split})
            estimate(OmegaConf.create({"dataset": dataset, "flow": flow}), console)
    check_flows(readers, name, max_listed=10)  # the samples name the files: the new ones are found


def _open(dataset: DictConfig, splits: list[str]) -> dict[str, RealClips]:
    """Every split's reader, without requiring flow; the first that cannot open raises its own one-sentence
    error (which dataset is missing, what to download and where to put it)."""
    return {split: open_reader(dataset, split, require_flow=False) for split in splits}
