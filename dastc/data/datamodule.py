"""The paired source/target DataModule: training streams (source clip, target clip) pairs, validation scores
target clips."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence

import lightning as L
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler

from dastc.data.clip import collate_clips


class PairedClips(Dataset):
    """Pairs a source and a target clip dataset into one endless, index-addressed stream.

    Sample ``g`` (any non-negative integer) takes the ``g``-th clip of an endless sequence of independent
    shuffles of each dataset: pass ``c = g // n`` of a dataset of ``n`` clips is a fresh permutation seeded by
    ``(seed, stream, c)``. The two datasets shuffle independently and wrap around on their own, so sets of
    different sizes never cut an epoch short, and any sample can be rebuilt from its index alone (workers,
    resumption and sharding need no shared state). ``len()`` is one pass over the larger dataset.
    """

    def __init__(self, source: Dataset, target: Dataset, seed: int = 0):
        self.source, self.target, self.seed = source, target, seed

    def __len__(self) -> int:
        return max(len(self.source), len(self.target))

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a handful of small permutations, one object per run
    def _permutation(self, stream: int, cycle: int, n: int) -> np.ndarray:
        return np.random.default_rng([self.seed, stream, cycle]).permutation(n)

    def indices(self, g: int) -> tuple[int, int]:
        """The (source, target) clip indices of sample ``g``."""
        ns, nt = len(self.source), len(self.target)
        return int(self._permutation(0, g // ns, ns)[g % ns]), int(self._permutation(1, g // nt, nt)[g % nt])

    def __getitem__(self, g: int) -> dict:
        s, t = self.indices(g)
        return {"source": self.source[s], "target": self.target[t]}


class ContinuingSampler(Sampler[int]):
    """Yields sample indices ``epoch * n ... (epoch + 1) * n - 1``: each epoch continues the endless stream."""

    def __init__(self, length: int):
        self.length = length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at the start of every epoch
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.length
        return iter(range(start, start + self.length))

    def __len__(self) -> int:
        return self.length


def collate_pairs(pairs: list[dict]) -> dict:
    return {
        "source": collate_clips([p["source"] for p in pairs]),
        "target": collate_clips([p["target"] for p in pairs]),
    }


class PairedClipDataModule(L.LightningDataModule):
    """Builds the benchmark's datasets from config and serves them.

    ``source``/``target``/``val`` (and each of ``extra_val``) are dataset configs with ``_target_``; ``prepare``
    is an optional config of a callable run once (on rank 0) before the datasets are opened, for example to
    generate the toy benchmark. Validation loader 0 is the target validation set that ``val/mIoU`` scores;
    ``extra_val`` sets follow in order and log under ``val_<name>/``.
    """

    def __init__(
        self,
        name: str,
        class_names: Sequence[str],
        num_classes: int,
        source: DictConfig,
        target: DictConfig,
        val: DictConfig,
        extra_val: Mapping[str, DictConfig] | None = None,
        prepare: DictConfig | None = None,
        eval_classes: Sequence[int] | None = None,
        ignore_index: int = 255,
        batch_size: int = 1,
        val_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        schedule: Mapping | None = None,
    ):
        super().__init__()
        if len(class_names) != num_classes:
            raise ValueError(
                f"dataset.class_names lists {len(class_names)} names but num_classes is {num_classes}"
            )
        self.name = name
        self.class_names = list(class_names)
        self.num_classes = num_classes
        self.eval_classes = list(eval_classes) if eval_classes is not None else list(range(num_classes))
        self.ignore_index = ignore_index
        self.configs = {"source": source, "target": target, "val": val, **dict(extra_val or {})}
        self.val_names = ["target"] + list(extra_val or {})
        self.prepare_cfg = prepare
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed
        self.schedule = dict(
            schedule or {}
        )  # the benchmark's recipe, read by the configs through interpolation
        self.datasets: dict[str, Dataset] = {}

    def prepare_data(self) -> None:
        if self.prepare_cfg is not None:
            instantiate(self.prepare_cfg)

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = {key: instantiate(cfg) for key, cfg in self.configs.items()}

    def _loader(self, dataset: Dataset, batch_size: int, collate, sampler=None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
            drop_last=sampler is not None,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        pairs = PairedClips(self.datasets["source"], self.datasets["target"], seed=self.seed)
        return self._loader(pairs, self.batch_size, collate_pairs, sampler=ContinuingSampler(len(pairs)))

    def val_dataloader(self) -> list[DataLoader]:
        self.setup()
        keys = ["val"] + self.val_names[1:]
        return [self._loader(self.datasets[key], self.val_batch_size, collate_clips) for key in keys]
