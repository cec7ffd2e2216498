"""Your own target videos (``dataset=videos``, docs/benchmarks.md): unlabelled target clips from a folder of
video files and/or sub-folders of frames, for any benchmark's ``target``.

    <root>/<name>.mp4 | .avi | .mov | .mkv ...   one sequence per video, decoded once into the frame cache
    <root>/<name>/<frame>.png | .jpg              one sequence per folder of frames, in name order

Videos are decoded with the ffmpeg that imageio-ffmpeg ships, once, into ``<cache_dir>/<name>/000000.png ...``
(default ``<root>/.frames``; resumable, redone when the video file changes); clips then read those PNGs like the
other readers read their frames. Flow files: ``<flow_dir>/<name>/<frame>_<previous frame>.png`` (file stems),
the flow of a frame towards the one before it, computed by ``python -m dastc.flow.estimate dataset=videos``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dastc.data.image_io import read_rgb
from dastc.data.real_clips import ClipFiles, FlowFile, RealClips, flow_command, list_dir, resize_image
from dastc.errors import DataFileError, DatasetNotFoundError
from dastc.files import write_json_atomic

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
# What a cache folder was decoded from, and how many frames it holds once complete.
CACHE_RECORD = "extracted.json"


def natural_key(name: str) -> list:
    """Sort key comparing the digit runs of a name as numbers: frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    """The frame images of ``folder`` (png/jpg, not hidden), in natural name order."""
    names = [n for n in list_dir(folder) if n.lower().endswith(FRAME_SUFFIXES) and not n.startswith(".")]
    return [folder / n for n in sorted(names, key=natural_key)]


class VideoFrames(RealClips):
    """Unlabelled clips of ``num_frames`` consecutive frames (t-2, t-1, t by default) of every video and frame
    folder in ``root``; every ``stride``-th clip of a sequence is a sample (1: every frame t that has
    ``num_frames - 1`` frames before it).

    Frames are resized to ``size`` (height, width; None: as stored): ``frames`` [T, 3, *size] and ``flow``
    [T-1, 2, *size] with ``flow[i]`` on frame i+1's grid pointing into frame i; no ``labels``. A sequence shorter
    than ``num_frames`` is left out with a warning naming it. ``cache_dir`` (default ``<root>/.frames``) holds
    the decoded video frames; ``benchmark`` names the dataset config in the flow command that errors suggest.
    """

    dataset_name = "videos"

    def __init__(
        self,
        root: str | os.PathLike,
        num_frames: int = 3,
        stride: int = 1,
        flow_dir: str | os.PathLike | None = None,
        size: tuple[int, int] | None = (512, 1024),
        cache_dir: str | os.PathLike | None = None,
        require_flow: bool = True,
        ignore_index: int = 255,
        benchmark: str = "videos",
        progress: bool = True,
    ):
        super().__init__(flow_dir, require_flow, flow_command(benchmark, "train"), ignore_index, "train")
        if num_frames < 1 or stride < 1:
            raise ValueError(f"num_frames and stride must be at least 1, got {num_frames} and {stride}")
        self.labelled = False
        self.root = Path(root)
        self.num_frames, self.stride = num_frames, stride
        self.size = tuple(size) if size is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root / ".frames"
        found = find_sequences(self.root, self.cache_dir, progress)
        self.sources = {name: source for name, (source, _) in found.items()}  # the video or folder
        self.sequences = {name: frames for name, (_, frames) in found.items()}
        short = [name for name, frames in self.sequences.items() if len(frames) < num_frames]
        for name in short:
            log.warning(
                "videos: sequence %s has %d frames, fewer than the %d of a clip: left out",
                self.sources[name],
                len(self.sequences[name]),
                num_frames,
            )
        for name, frames in self.sequences.items():
            for t in range(num_frames - 1, len(frames), stride):
                self.samples.append(self._clip_files(name, frames[t - num_frames + 1 : t + 1], t))
        if not self.samples:
            raise DatasetNotFoundError(
                f"no sequence in {self.root} has the {num_frames} frames a clip needs "
                f"(too short: {', '.join(short)})"
            )

    def _clip_files(self, name: str, frames: list[Path], t: int) -> ClipFiles:
        flows = ()
        if self.flow_dir is not None:
            folder = self.flow_dir / name
            flows = tuple(
                FlowFile(
                    current=current,
                    previous=previous,
                    ours=folder / f"{current.stem}_{previous.stem}.png",
                    published=folder / f"{current.stem}_{previous.stem}_int16_x10.npy",
                )
                for previous, current in zip(frames[:-1], frames[1:], strict=True)
            )
        return ClipFiles(
            sequence=name,
            frame_ids=tuple(range(t - len(frames) + 1, t + 1)),
            frames=tuple(frames),
            labels=(None,) * len(frames),
            flows=flows,
        )

    def read_frame(self, path: Path) -> np.ndarray:
        return resize_image(read_rgb(path), self.size)


def find_sequences(root: Path, cache_dir: Path, progress: bool = True) -> dict[str, tuple[Path, list[Path]]]:
    """Sequence name -> (the video or folder, its frame files), for every video (decoded into ``cache_dir`` when not yet there) and
    every sub-folder of frames in ``root``, in name order. Hidden entries and the cache itself are skipped."""
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"the target videos folder {root} does not exist: put your videos "
            f"({', '.join(VIDEO_SUFFIXES)}) or folders of frames there, or point dataset.target.dataset.root "
            "at them"
        )
    entries = sorted(
        (p for p in root.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name)
    )
    sequences: dict[str, tuple[Path, list[Path]]] = {}
    for entry in entries:
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            _add(sequences, entry.stem, extract_frames(entry, cache_dir / entry.stem, progress), entry)
        elif entry.is_dir() and entry.resolve() != cache_dir.resolve():
            frames = frame_files(entry)
            if frames:
                _add(sequences, entry.name, frames, entry)
            else:
                log.warning("videos: %s holds no frames (%s): left out", entry, ", ".join(FRAME_SUFFIXES))
    if not sequences:
        raise DatasetNotFoundError(
            f"the target videos folder {root} holds no video ({', '.join(VIDEO_SUFFIXES)}) and no sub-folder of "
            f"frames ({', '.join(FRAME_SUFFIXES)})"
        )
    return sequences


def _add(sequences: dict[str, tuple[Path, list[Path]]], name: str, frames: list[Path], source: Path) -> None:
    # The name keys the cache and flow folders: two sources with one name would share (and spoil) them.
    if name in sequences:
        raise DataFileError(
            f"{source} and another video or frame folder in {source.parent} are both named {name!r}: rename one"
        )
    sequences[name] = (source, frames)


def _signature(video: Path) -> dict:
    stat = video.stat()
    return {"video": video.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_record(path: Path) -> dict:
    """A cache folder's record; empty when there is none or it is unreadable (then the folder is resumed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def extract_frames(video: Path, folder: Path, progress: bool = True) -> list[Path]:
    """The frames of ``video`` as ``folder/000000.png ...``, decoded on first use and read from there after.

    A complete folder (its record matches the video's size and time) is used as it is; an interrupted
    extraction resumes (frames already written are kept); a video that changed is decoded afresh. Raises a
    DataFileError naming the video when it cannot be decoded.
    """
    record, signature = folder / CACHE_RECORD, _signature(video)
    state = _read_record(record)
    if state.get("source") == signature and state.get("frames") is not None:
        frames = frame_files(folder)
        if len(frames) == state["frames"]:
            return frames
    if state and state.get("source") != signature:  # another video under this name: its frames are stale
        for path in frame_files(folder):
            path.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(record, {"source": signature, "frames": None})
    except OSError as err:
        raise DataFileError(
            f"cannot write the decoded frames of {video} into {folder} ({err.strerror}): set "
            "dataset.target.dataset.cache_dir to a writable folder"
        ) from None
    count = _decode(video, folder, progress)
    write_json_atomic(record, {"source": signature, "frames": count})
    return [folder / f"{i:06d}.png" for i in range(count)]


def _decode(video: Path, folder: Path, progress: bool) -> int:
    """Decode every frame of ``video`` into ``folder`` (skipping those already there); returns their number."""
    count = 0
    frames = _decoded_frames(video)
    try:
        estimate = next(frames)  # the frame count the header suggests, for the bar only
        with _progress_bar(progress) as bar:
            task = bar.add_task(video.name, total=estimate)
            for count, frame in enumerate(frames, start=1):
                path = folder / f"{count - 1:06d}.png"
                if not path.is_file():
                    _write_png_atomic(path, frame)
                bar.update(task, completed=count, total=max(count, estimate or 0))
    finally:
        frames.close()  # ends ffmpeg at once when writing a frame failed
    if count == 0:
        raise DataFileError(f"video {video} holds no frame that ffmpeg can decode")
    return count


def _decoded_frames(video: Path):
    """First the frame count the video's header suggests (None when unknown), then its frames as H x W x 3
    uint8 RGB; ffmpeg's failures become a DataFileError naming the video."""
    import imageio_ffmpeg  # here: only videos need it

    reader = imageio_ffmpeg.read_frames(str(video))
    try:
        meta = next(reader)
        width, height = meta["size"]
        yield round(meta.get("fps", 0) * meta.get("duration", 0)) or None
        for raw in reader:
            yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    except (OSError, RuntimeError, IndexError, ValueError, StopIteration) as err:
        # imageio-ffmpeg raises OSError/RuntimeError with ffmpeg's log; its header parser IndexError/ValueError
        detail = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise DataFileError(f"video {video} could not be decoded ({detail.strip()})") from None
    finally:
        reader.close()


def _write_png_atomic(path: Path, rgb: np.ndarray) -> None:
    # A temporary name, then a rename: an interrupted extraction never leaves half a PNG to resume from.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise DataFileError(f"could not write the decoded frame {tmp} (is the disk full or read-only?)")
    os.replace(tmp, path)


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]decoding {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )
