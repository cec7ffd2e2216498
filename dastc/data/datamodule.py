"""The paired source/target DataModule: training streams (source clip, target clip) pairs, validation scores
target clips."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dastc.data.class_index import (
    ClassIndex,
    RareClassClips,
    build_class_index,
    current_label,
    load_or_build_class_index,
)
from dastc.data.clip import collate_clips
from dastc.data.histogram import match_clip_histograms
from dastc.data.prepare import prepare_benchmark
from dastc.data.rare_class_sampling import RareClassSampling
from dastc.errors import ConfigError, DataFileError

log = logging.getLogger(__name__)


def draw(dataset: Dataset, index: int, pass_number: int) -> dict:
    """Clip ``index`` of ``dataset``, with the random augmentation of that pass over it where the dataset
    augments (``sample(index, pass_number)``; :class:`dastc.data.clip_transforms.AugmentedClips`)."""
    if hasattr(dataset, "sample"):
        return dataset.sample(index, pass_number)
    return dataset[index]


class PairedClips(Dataset):
    """Pairs a source and a target clip dataset into one endless, index-addressed stream.

    Sample ``g`` (any non-negative integer) takes the ``g``-th clip of an endless sequence of independent
    shuffles of each dataset: pass ``c = g // n`` of a dataset of ``n`` clips is a fresh permutation seeded by
    ``(seed, stream, c)``. The two datasets shuffle independently and wrap around on their own, so sets of
    different sizes never cut an epoch short, and any sample can be rebuilt from its index alone (workers,
    resumption and sharding need no shared state). ``len()`` is one pass over the larger dataset. With ``rcs``
    (rare class sampling) the source clip of sample ``g`` is ``rcs(g)`` instead, the target stream unchanged.
    """

    def __init__(
        self,
        source: Dataset,
        target: Dataset,
        seed: int = 0,
        rare: RareClassClips | None = None,
        hist_match: bool = False,
        rcs: RareClassSampling | None = None,
    ):
        self.source, self.target, self.seed, self.rare = source, target, seed, rare
        self.hist_match, self.rcs = hist_match, rcs

    def __len__(self) -> int:
        return max(len(self.source), len(self.target))

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a handful of small permutations, one object per run
    def _permutation(self, stream: int, cycle: int, n: int) -> np.ndarray:
        return np.random.default_rng([self.seed, stream, cycle]).permutation(n)

    def indices(self, g: int) -> tuple[int, int]:
        """The (source, target) clip indices of sample ``g``."""
        ns, nt = len(self.source), len(self.target)
        s = self.rcs(g) if self.rcs is not None else int(self._permutation(0, g // ns, ns)[g % ns])
        return s, int(self._permutation(1, g // nt, nt)[g % nt])

    def __getitem__(self, g: int) -> dict:
        s, t = self.indices(g)
        # The pass over each dataset picks the augmentation draw, so a clip is not augmented alike every pass;
        # rare class sampling repeats clips within a pass, so there each sample has its own draw.
        pair = {
            "source": draw(self.source, s, g if self.rcs is not None else g // len(self.source)),
            "target": draw(self.target, t, g // len(self.target)),
        }
        if self.hist_match:  # this step's target frame's colours (docs/method.md, TPS (stage 1))
            reference = pair["target"]["frames"][-1]
            pair["source"]["frames"] = match_clip_histograms(pair["source"]["frames"], reference)
        if self.rare is not None:  # source clips of long-tail classes (docs/method.md, Rare-class pasting)
            pair["rare"] = self.rare[g]
        return pair


class StreamSampler(DistributedSampler):
    """Yields this rank's share of ``length`` consecutive sample indices of the endless stream per pass, each
    pass continuing where the previous one stopped; the first starts at ``start`` (where a resumed run left
    off). With ``num_replicas`` ranks, step k's global batch is indices ``start + k*B*R ... + (k+1)*B*R - 1``
    (B = ``batch_size`` per rank, R ranks), rank r taking the r-th block of B: no sample twice, and the same
    samples per step as one process with batch B*R; a last incomplete step is left out. A DistributedSampler,
    so that Lightning does not wrap it in one."""

    def __init__(self, start: int, length: int, batch_size: int = 1, num_replicas: int = 1, rank: int = 0):
        if start < 0 or length <= 0 or batch_size <= 0:
            raise ValueError(f"bad stream range: start {start}, length {length}, batch size {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} of {num_replicas}")
        super().__init__(range(length), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.next_index, self.length, self.batch_size = start, length, batch_size

    def __iter__(self) -> Iterator[int]:
        step_size = self.batch_size * self.num_replicas
        first = self.next_index + self.rank * self.batch_size
        for k in range(self.length // step_size):
            for b in range(self.batch_size):
                yield first + k * step_size + b
            self.next_index += step_size  # the pass's position, shared by every rank

    def __len__(self) -> int:
        return self.length // (self.batch_size * self.num_replicas) * self.batch_size


class SkipBadClips(Dataset):
    """Replaces an unreadable clip by the next readable one and marks it in ``meta["replaced"]`` (the error), so
    that the method can count and report skipped clips (``dataset.on_bad_clip=skip``, training sets only)."""

    def __init__(self, dataset: Dataset, max_tries: int = 10):
        self.dataset, self.max_tries = dataset, max_tries

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, index: int, pass_number: int = 0) -> dict:
        errors = []
        for k in range(self.max_tries):
            try:
                clip = draw(self.dataset, (index + k) % len(self.dataset), pass_number)
            except DataFileError as err:
                errors.append(str(err))
                continue
            if errors:
                clip["meta"] = {**clip["meta"], "replaced": "; ".join(errors)}
            return clip
        raise DataFileError(f"{self.max_tries} clips in a row are unreadable, the first: {errors[0]}")

    def __getitem__(self, index: int) -> dict:
        return self.sample(index)

    def current_label(self, index: int):
        return current_label(self.dataset, index)


def collate_pairs(pairs: list[dict]) -> dict:
    """``source``/``target`` clip batches; with rare-class clips also ``rare = {"classes": long [B, K],
    "clips": [K clip batches]}`` (clip batch k holds every sample's k-th rare clip)."""
    batch = {
        "source": collate_clips([p["source"] for p in pairs]),
        "target": collate_clips([p["target"] for p in pairs]),
    }
    if "rare" in pairs[0]:
        rare = [p["rare"] for p in pairs]
        batch["rare"] = {
            "classes": torch.stack([r["classes"] for r in rare]),
            "clips": [collate_clips([r["clips"][k] for r in rare]) for k in range(len(rare[0]["clips"]))],
        }
    return batch


class PairedClipDataModule(L.LightningDataModule):
    """Builds the benchmark's datasets from config and serves them.

    Training is one pass over ``trainer.max_steps x batch_size x world size`` samples of the endless paired
    stream; the number of samples consumed is saved in checkpoints, so a resumed run continues the stream
    exactly. Each loader draws its worker seeds from its own generator, never from the global random state
    (which the checkpoint restores for the model's own randomness).

    ``source``/``target``/``val`` (and each of ``extra_val``) are dataset configs with ``_target_``; ``prepare``
    is run once (on rank 0) before the datasets are opened: a config of a callable (generating the toy
    benchmark), or the options of :func:`dastc.data.prepare.prepare_benchmark` for a downloaded one (its cheap
    checks, and ``flow: true`` computes missing flow files). With ``rare_classes`` > 0 (DA-STC's rare-class pasting asks for it) each
    training sample also carries that many source clips of long-tail classes (``schedule.long_tail_classes``),
    found through the class index cached at ``class_index`` (built on first use). ``rcs`` (``enabled``,
    ``temperature``, ``min_pixels``) switches on rare class sampling of the source clips through the same
    index (:mod:`dastc.data.rare_class_sampling`). ``hist_match`` matches each
    source clip's colour histograms to its paired target clip's current frame. Validation loader 0 is the target
    validation set that ``val/mIoU`` scores; ``extra_val`` sets follow in order and log under ``val_<name>/``.
    ``val`` None (a target without labelled frames, ``dataset=videos``): no target set, the extra sets alone.
    """

    def __init__(
        self,
        name: str,
        class_names: Sequence[str],
        num_classes: int,
        source: DictConfig,
        target: DictConfig,
        val: DictConfig | None,
        extra_val: Mapping[str, DictConfig] | None = None,
        prepare: DictConfig | None = None,
        eval_classes: Sequence[int] | None = None,
        report_subsets: Mapping[str, Sequence[int]] | None = None,
        ignore_index: int = 255,
        batch_size: int = 1,
        val_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        seed: int = 0,
        on_bad_clip: str = "raise",
        schedule: Mapping | None = None,
        class_index: str | None = None,
        rare_classes: int = 0,
        hist_match: bool = False,
        rcs: Mapping | None = None,
    ):
        super().__init__()
        if on_bad_clip not in ("raise", "skip"):
            raise ValueError(f"dataset.on_bad_clip must be 'raise' or 'skip', got {on_bad_clip!r}")
        if len(class_names) != num_classes:
            raise ValueError(
                f"dataset.class_names lists {len(class_names)} names but num_classes is {num_classes}"
            )
        self.name = name
        self.class_names = list(class_names)
        self.num_classes = num_classes
        self.eval_classes = list(eval_classes) if eval_classes is not None else list(range(num_classes))
        # Extra means reported beside mIoU, over a subset of the scored classes (SYNTHIA images: mIoU13).
        self.report_subsets = {str(k): [int(c) for c in v] for k, v in (report_subsets or {}).items()}
        for name, classes in self.report_subsets.items():
            if name in ("mIoU", "IoU") or not set(classes) <= set(self.eval_classes):
                raise ConfigError(
                    f"dataset.report_subsets.{name} must be named other than mIoU/IoU and list scored classes "
                    f"(dataset.eval_classes), got {classes}"
                )
        self.ignore_index = ignore_index
        extra = {f"val_{name}": cfg for name, cfg in (extra_val or {}).items()}
        # val=None: a target without labelled frames (dataset=videos); then nothing scores the target.
        labelled = {"val": val} if val is not None else {}
        self.configs = {"source": source, "target": target, **labelled, **extra}
        self.val_names = (["target"] if val is not None else []) + list(extra_val or {})
        self.prepare_cfg = prepare
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed
        self.prefetch_factor = prefetch_factor  # batches each worker prepares ahead (None: PyTorch's 2)
        self.on_bad_clip = on_bad_clip
        # The benchmark's recipe; the trainer, method and callback configs read it through interpolation.
        self.schedule = dict(schedule or {})
        self.class_index_path, self.rare_classes = class_index, rare_classes
        self.hist_match = hist_match
        # Rare class sampling of the source clips (DAFormer, Hoyer et al. CVPR 2022); off without the key.
        self.rcs_cfg = dict(rcs) if rcs and rcs.get("enabled") else None
        self.datasets: dict[str, Dataset] = {}
        self.rare: RareClassClips | None = None
        self.rcs: RareClassSampling | None = None
        self.samples_consumed = 0  # restored from checkpoints: where the training stream resumes

    def prepare_data(self) -> None:
        if self.prepare_cfg is not None and "_target_" in self.prepare_cfg:
            instantiate(self.prepare_cfg)  # a generated benchmark (the toy one)
        elif self.prepare_cfg is not None:  # a downloaded one: check it, compute the flow it still lacks
            prepare_benchmark(self.name, self.configs, self.prepare_cfg)
        # Build the class index's cache once, here, before the other ranks read it in setup().
        if self.needs_class_index and self.class_index_path:
            self._class_index(instantiate(self.configs["source"]))

    @property
    def needs_class_index(self) -> bool:
        return self.rare_classes > 0 or self.rcs_cfg is not None

    def _class_index(self, source: Dataset) -> ClassIndex:
        if self.class_index_path:
            return load_or_build_class_index(
                source, self.class_index_path, self.num_classes, self.ignore_index
            )
        return build_class_index(source, self.num_classes, self.ignore_index)

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = {key: instantiate(cfg) for key, cfg in self.configs.items()}
            index = self._class_index(self.datasets["source"]) if self.needs_class_index else None
            if self.rare_classes > 0:
                self.rare = RareClassClips(
                    self.datasets["source"],
                    index.clips,
                    self.schedule.get("long_tail_classes", ()),
                    self.rare_classes,
                    self.seed,
                )
            if self.rcs_cfg is not None:
                self.rcs = RareClassSampling(
                    index, float(self.rcs_cfg["temperature"]), int(self.rcs_cfg["min_pixels"]), self.seed
                )
                if rank_zero_only.rank == 0:
                    log.info(self.rcs.summary(self.class_names))
            if self.on_bad_clip == "skip":  # validation always raises: a score must cover the whole set
                for key in ("source", "target"):
                    self.datasets[key] = SkipBadClips(self.datasets[key])
                if self.rare is not None:
                    self.rare.dataset = self.datasets["source"]

    def state_dict(self) -> dict:
        consumed = self.samples_consumed
        if self.trainer is not None:  # the loop's batch count is itself restored on resume: it is absolute
            # "processed", not "completed": checkpoints written at a step's end (every_n_train_steps, save_last)
            # are saved before Lightning counts that batch completed, and its samples are already consumed.
            batches = self.trainer.fit_loop.epoch_loop.batch_progress.total.processed
            consumed = batches * self.batch_size * self.trainer.world_size
        return {"samples_consumed": consumed}

    def load_state_dict(self, state: dict) -> None:
        self.samples_consumed = int(state.get("samples_consumed", 0))

    def _loader(
        self, dataset: Dataset, batch_size: int, collate, sampler=None, drop_last=False
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            collate_fn=collate,
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        pairs = PairedClips(
            self.datasets["source"], self.datasets["target"], self.seed, self.rare, self.hist_match, self.rcs
        )
        trainer = self.trainer
        if trainer is None:  # used outside Lightning (notebooks, tests): one pass over the larger dataset
            length = len(pairs)
        elif trainer.max_steps is None or trainer.max_steps <= 0:
            raise ValueError("training is step-based: set trainer.max_steps to a positive number")
        else:  # one pass covers the run; steps skipped as non-finite continue the stream in a next pass
            length = (
                trainer.max_steps * trainer.accumulate_grad_batches * self.batch_size * trainer.world_size
            )
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = StreamSampler(self.samples_consumed, length, self.batch_size, world, rank)
        return self._loader(pairs, self.batch_size, collate_pairs, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> list[DataLoader]:
        self.setup()
        keys = ["val" if name == "target" else f"val_{name}" for name in self.val_names]
        loaders = []
        for key in keys:
            dataset, sampler = self.datasets[key], None
            if self.trainer is not None and self.trainer.world_size > 1:
                # Each clip scored once: Lightning's default sampler pads ranks with repeated clips, which the
                # summed confusion matrices would count twice (docs/benchmarks.md, Evaluation protocol: each
                # clip once).
                sampler = UnrepeatedDistributedSampler(
                    dataset,
                    num_replicas=self.trainer.world_size,
                    rank=self.trainer.global_rank,
                    shuffle=False,
                )
            loaders.append(self._loader(dataset, self.val_batch_size, collate_clips, sampler=sampler))
        return loaders
