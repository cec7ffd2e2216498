"""Offline flow estimation over many frame pairs, written as 16-bit flow PNGs (:func:`dastc.flow.io.write_flow_png`).

Resumable (existing outputs are skipped), atomic (a killed run never leaves a half-written file) and parallel
over processes for CPU estimators such as :class:`dastc.flow.estimators.DISFlow`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dastc.data.image_io import read_rgb
from dastc.errors import DataFileError
from dastc.flow.io import write_flow_png

log = logging.getLogger(__name__)

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]
FlowJob = tuple[Path, Path, Path]  # (current frame, previous frame, output flow PNG)


class FlowFileCounts(NamedTuple):
    computed: int
    skipped: int


def _resize(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return frame
    h, w = frame.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # INTER_AREA averages when shrinking, so fine texture does not alias into false motion.
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def write_flow_png_atomic(path: Path, flow: np.ndarray) -> None:
    """Write ``flow`` to a temporary file beside ``path`` and rename it: readers see the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")  # .png: OpenCV picks the encoder by suffix
    try:
        write_flow_png(tmp, flow)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def estimate_one(estimator: Estimator, job: FlowJob, scale: float = 1.0) -> None:
    """Read one frame pair, estimate the flow of the current frame into the previous one and write it."""
    current_path, previous_path, output_path = job
    current, previous = read_rgb(current_path), read_rgb(previous_path)
    if current.shape != previous.shape:
        raise DataFileError(
            f"frames {current_path} ({current.shape[1]}x{current.shape[0]}) and {previous_path} "
            f"({previous.shape[1]}x{previous.shape[0]}) differ in size"
        )
    flow = estimator(_resize(current, scale), _resize(previous, scale))
    write_flow_png_atomic(output_path, flow)


# Worker-process state: the estimator is sent once per process rather than once per job.
_worker_estimator: Estimator | None = None


def _init_worker(estimator: Estimator) -> None:
    global _worker_estimator
    _worker_estimator = estimator
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV threads on top would oversubscribe the cores


def _worker_job(job: FlowJob, scale: float) -> None:
    assert _worker_estimator is not None
    estimate_one(_worker_estimator, job, scale)


def _as_jobs(pairs: Iterable[Sequence[str | Path]]) -> list[FlowJob]:
    jobs = []
    for pair in pairs:
        if len(pair) != 3:
            raise ValueError(f"each pair must be (current_frame, previous_frame, output_flow), got {pair!r}")
        current, previous, output = (Path(p) for p in pair)
        if output.suffix.lower() != ".png":
            raise ValueError(f"flow output {output} must end in .png (16-bit flow PNG)")
        jobs.append((current, previous, output))
    return jobs


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]optical flow"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _run_serial(jobs: list[FlowJob], estimator: Estimator, scale: float, advance: Callable[[], None]) -> None:
    for job in jobs:
        estimate_one(estimator, job, scale)
        advance()


def _run_pool(
    jobs: list[FlowJob], estimator: Estimator, scale: float, workers: int, advance: Callable[[], None]
) -> None:
    # spawn, not fork: the parent may hold torch/OpenCV thread pools that a forked child would inherit broken.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(estimator,)
    ) as pool:
        pending = {pool.submit(_worker_job, job, scale) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
                advance()


def estimate_flow_files(
    pairs: Iterable[Sequence[str | Path]],
    estimator: Estimator,
    workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    scale: float = 1.0,
) -> FlowFileCounts:
    """Estimate and write the flow of every ``(current_frame, previous_frame, output_png)`` triple.

    Each output holds the flow on the current frame's grid pointing into the previous frame (the orientation of
    :mod:`dastc.flow`), as a 16-bit flow PNG; parent directories are created. Outputs that exist are skipped
    unless ``overwrite``, so an interrupted run resumes where it stopped. ``workers > 0`` spreads the pairs over
    that many processes when the estimator allows it (``estimator.parallel_safe``, true for DIS); RAFT runs in
    this process. ``scale`` < 1 estimates on frames shrunk by that factor and writes the flow at that size (in
    pixels of that size); readers resize flows to the map they warp. An unreadable frame raises a
    :class:`DataFileError` naming the file. Returns the numbers of flows computed and skipped.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    jobs = _as_jobs(pairs)
    todo = jobs if overwrite else [job for job in jobs if not job[2].exists()]
    skipped = len(jobs) - len(todo)
    if workers > 0 and not getattr(estimator, "parallel_safe", False):
        log.info("%r runs in the main process; ignoring workers=%d", estimator, workers)
        workers = 0
    with _progress_bar(progress) as bar:
        task = bar.add_task("flow", total=len(todo))

        def advance() -> None:
            bar.advance(task)

        if workers > 0 and len(todo) > 1:
            _run_pool(todo, estimator, scale, min(workers, len(todo)), advance)
        else:
            _run_serial(todo, estimator, scale, advance)
    return FlowFileCounts(computed=len(todo), skipped=skipped)
