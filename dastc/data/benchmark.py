"""The file readers of a real benchmark (``dataset=synthia|viper``) as its dataset config names them, for the
data tools: ``python -m dastc.flow.estimate`` and ``python -m dastc.data.verify``."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from dastc.cli import find_user_error
from dastc.data.real_clips import RealClips
from dastc.errors import ConfigError

# The tools' split names -> the dataset config's keys: the source clips, the target's training clips
# (Cityscapes-Seq train) and its validation clips (Cityscapes-Seq val).
SPLITS = {"source": "source", "train": "target", "val": "val"}


def selected_splits(split: str, option: str, dataset_cfg: DictConfig | None = None) -> list[str]:
    """``split`` ('source' | 'train' | 'val' | 'all') as a list of split names; ``option`` names the key. With
    ``dataset_cfg``, 'all' leaves out the splits it sets to null (``val: null``: a target without labels)."""
    if split == "all":
        return [s for s in SPLITS if dataset_cfg is None or dataset_cfg.get(SPLITS[s]) is not None]
    if split not in SPLITS:
        raise ConfigError(f"{option} must be one of {', '.join([*SPLITS, 'all'])}, got {split!r}")
    if dataset_cfg is not None and dataset_cfg.get(SPLITS[split]) is None:
        raise ConfigError(
            f"{option}={split}, but dataset={dataset_cfg.name} has none (dataset.{SPLITS[split]} is null)"
        )
    return [split]


def reader_config(node: DictConfig) -> DictConfig:
    """The file reader's config inside wrapper datasets (``AugmentedClips`` and the like, which hold it under
    ``dataset``)."""
    while OmegaConf.is_dict(node.get("dataset")) and "_target_" in node.dataset:
        node = node.dataset
    return node


def open_reader(dataset_cfg: DictConfig, split: str, **overrides) -> RealClips:
    """The reader of ``split`` built from the benchmark's config with ``overrides`` (``require_flow=False``
    ...). Raises DatasetNotFoundError when its files are not there, ConfigError for a benchmark without file
    readers."""
    cfg = reader_config(dataset_cfg[SPLITS[split]])
    if not issubclass(get_class(cfg._target_), RealClips):
        raise ConfigError(
            f"dataset={dataset_cfg.name} is not read from downloaded files ({cfg._target_}): the data tools "
            "are for the real benchmarks, dataset=synthia and dataset=viper"
        )
    try:
        return instantiate(cfg, **overrides)
    except InstantiationException as err:  # Hydra wraps the reader's own error: give the caller that one
        cause = find_user_error(err)
        if cause is None:
            raise
        raise cause from None
