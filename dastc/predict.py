"""``python -m dastc.predict ckpt_path=RUN input=DIR_OR_VIDEO``: segment a folder of frames or a video with a
trained run and write what to look at (conf/predict.yaml):

- ``masks/<frame>.png`` (colourised in the benchmark's palette) and ``overlays/<frame>.png``;
- ``overlay.mp4`` and ``overlay.gif``;
- ``consistency.json``: the temporal consistency of the predictions, the share of pixels whose previous
  prediction, warped onto the current frame by the flow, agrees with the current one (pixels that the flow
  takes outside the previous frame are not counted).

Each frame goes through the network with the previous one and the flow between them (OpenCV DIS, on the
current frame's grid pointing into the previous one), as in validation; the first frame is its own previous
frame with zero flow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from dastc import config  # noqa: F401 - registers the config resolvers
from dastc.build import rebuild_run
from dastc.checkpoint import load_run_checkpoint, resolve_ckpt_path
from dastc.cli import user_errors
from dastc.data.image_io import read_rgb
from dastc.errors import ConfigError, DataFileError
from dastc.flow.estimators import DISFlow
from dastc.flow.warp import warp
from dastc.viz.colour import colourise, overlay, palette_for

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def read_frames(source: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, RGB uint8 frame)`` from a folder of images (sorted by name) or a video file."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataFileError(
                f"input folder {source} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        for path in files:
            yield path.stem, read_rgb(path)
        return
    if not source.is_file():
        raise DataFileError(f"input {source} is neither a folder of frames nor a video file")
    video = cv2.VideoCapture(str(source))
    if not video.isOpened():
        raise DataFileError(f"video {source} could not be opened")
    index = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        yield f"{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        index += 1
    video.release()
    if index == 0:
        raise DataFileError(f"video {source} holds no readable frame")


def load_model(cfg: DictConfig):
    """The run's method (network, classes) with the checkpoint's weights, in eval mode."""
    path = resolve_ckpt_path(str(cfg.ckpt_path), ".")
    checkpoint = load_run_checkpoint(path)
    _, datamodule, method = rebuild_run(checkpoint, cfg.paths, cfg.get("eval_model"))  # no data is read
    method.load_run_weights(checkpoint)
    return method.eval(), datamodule.class_names


def _tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1).float().div_(255.0)


def agreement(previous: torch.Tensor, current: torch.Tensor, flow: torch.Tensor) -> tuple[int, int]:
    """(agreeing, counted) pixels: ``previous`` [H, W] class ids warped onto ``current``'s grid by ``flow``
    [2, H, W] (nearest), counted where the flow stays inside the previous frame."""
    warped = warp(previous[None, None].float(), flow[None], mode="nearest")[0, 0].long()
    h, w = current.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=current.device), torch.arange(w, device=current.device), indexing="ij"
    )
    x, y = xs + flow[0], ys + flow[1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return int(((warped == current) & inside).sum()), int(inside.sum())


@torch.no_grad()
def predict(cfg: DictConfig, console: Console | None = None) -> dict:
    """Segment ``cfg.input``, write the outputs into ``paths.output_dir``; returns the consistency summary."""
    console = console or Console()
    method, class_names = load_model(cfg)
    device = torch.device(resolve_device(cfg.get("device", "auto")))
    method.to(device)
    palette = palette_for(class_names)
    flow_net = DISFlow(cfg.flow_preset)
    out = Path(cfg.paths.output_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    overlays, agree, counted, previous = [], 0, 0, None
    with Progress(transient=True) as bar:
        task = bar.add_task("segmenting", total=None)
        for k, (name, frame) in enumerate(read_frames(cfg.input)):
            if cfg.max_frames is not None and k >= cfg.max_frames:
                break
            if cfg.size is not None:
                frame = cv2.resize(frame, (cfg.size[1], cfg.size[0]), interpolation=cv2.INTER_AREA)
            if previous is not None and previous[1].shape != frame.shape:
                raise DataFileError(f"frame {name} of {cfg.input} has another size than the frame before it")
            prev_frame = frame if previous is None else previous[1]
            flow = torch.from_numpy(flow_net(frame, prev_frame)).permute(2, 0, 1)
            clip = {
                "frames": torch.stack([_tensor(prev_frame), _tensor(frame)])[None].to(device),
                "flow": flow[None, None].to(device),
            }
            mask = method.predict_clip(clip)[0].cpu()
            if previous is not None:
                a, c = agreement(previous[0], mask, flow)
                agree, counted = agree + a, counted + c
            previous = (mask, frame)
            labels = mask.numpy().astype(np.uint8)
            Image.fromarray(colourise(labels, palette)).save(out / "masks" / f"{name}.png")
            overlays.append(overlay(frame, labels, palette, cfg.alpha))
            Image.fromarray(overlays[-1]).save(out / "overlays" / f"{name}.png")
            bar.advance(task)
    write_videos(out, overlays, cfg.fps)
    summary = {
        "frames": len(overlays),
        "temporal_consistency": agree / counted if counted else None,
        "input": str(cfg.input),
        "checkpoint": str(cfg.ckpt_path),
    }
    (out / "consistency.json").write_text(json.dumps(summary, indent=2))
    share = "n/a (one frame)" if summary["temporal_consistency"] is None else f"{100 * agree / counted:.2f}%"
    console.print(
        f"{len(overlays)} frames segmented; temporal consistency {share} -> {out}",
        highlight=False,
        soft_wrap=True,
    )
    return summary


def resolve_device(name: str) -> str:
    """``auto``: the GPU when there is one, else the CPU; otherwise the torch device named."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name}, but torch sees no CUDA device here: use device=cpu or auto")
    return name


def write_videos(out: Path, frames: list[np.ndarray], fps: int) -> None:
    """``overlay.mp4`` (H.264 in yuv420p, which browsers play; ffmpeg from imageio-ffmpeg) and ``overlay.gif``
    (Pillow) of RGB frames."""
    import imageio_ffmpeg  # here: only this writer needs it

    h, w = frames[0].shape[:2]
    # yuv420p stores colour per 2x2 block, so H.264 needs even sizes: an odd last row or column is repeated.
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    writer = imageio_ffmpeg.write_frames(
        str(out / "overlay.mp4"),
        (w + w % 2, h + h % 2),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,  # the padded sizes are even: no rescaling
        ffmpeg_log_level="error",
        output_params=["-movflags", "+faststart"],  # the index first: a browser plays while it downloads
    )
    try:
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(np.pad(frame, pad, mode="edge")))
    except OSError as err:  # imageio-ffmpeg's error carries ffmpeg's command and message
        raise DataFileError(f"ffmpeg could not write {out / 'overlay.mp4'}: {err}") from None
    finally:
        writer.close()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(out / "overlay.gif", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    with user_errors():
        predict(cfg)


if __name__ == "__main__":
    main()
