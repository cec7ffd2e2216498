"""Sample panels: the grid drawn from a recorded clip, recording that changes nothing, and the panels reaching
W&B (offline), TensorBoard and PNG files during a training run."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dastc.build import build_datamodule, build_method
from dastc.config import compose_config
from dastc.train import train
from dastc.viz.colour import palette_for
from dastc.viz.panel_callback import current_frame_masks
from dastc.viz.panels import clip_panel, clip_views, confidence_to_rgb

NAMES = ["road", "sidewalk", "building", "sky", "vegetation", "pole", "car", "person"]


def _record():
    frames = torch.zeros(3, 3, 8, 16)
    frames[:, 0] = 1.0  # red
    pseudo = torch.zeros(2, 8, 16, dtype=torch.long)
    pseudo[1, :, 8:] = 6  # car on the right half of frame t
    pseudo[1, 0, 0] = 255  # one ignored pixel
    return {"frames": frames, "pseudo": pseudo, "confidence": torch.ones(2, 8, 16)}


def test_panel_grid_places_every_view_in_its_row_and_column():
    palette = palette_for(NAMES)
    panel = clip_panel(clip_views(_record(), palette), tile_width=32)
    header, margin, tile_h, tile_w = 20, 34, 16, 32  # tiles scaled x2 at the frame's aspect ratio
    assert panel.shape == (header + 3 * tile_h, margin + 3 * tile_w, 3)

    def tile(row, col):
        y, x = header + row * tile_h, margin + col * tile_w
        return panel[y : y + tile_h, x : x + tile_w]

    assert (tile(2, 0) == [255, 0, 0]).all()  # frame t, red
    assert (tile(0, 1) == 48).all() and (tile(0, 2) == 48).all()  # no pseudo-label for t-2: an empty tile
    road, car = palette[0], palette[6]
    assert (tile(2, 1)[2:, :16] == road).all() and (tile(2, 1)[:, 16:] == car).all()
    assert (tile(2, 1)[:2, :2] == 0).all()  # ignore is black, enlarged by nearest neighbour
    assert (tile(1, 1) == road).all()
    assert (tile(2, 2) == confidence_to_rgb(np.ones((1, 1)))[0, 0]).all()  # fully confident: top of viridis
    assert not (confidence_to_rgb(np.zeros((1, 1))) == confidence_to_rgb(np.ones((1, 1)))).all()


def test_panel_rejects_views_longer_than_the_clip_and_clips_without_frames():
    record = _record()
    with pytest.raises(ValueError, match="pseudo has 4 frames, the clip 3"):
        clip_views({**record, "pseudo": torch.zeros(4, 8, 16, dtype=torch.long)}, palette_for(NAMES))
    with pytest.raises(KeyError, match="needs the clip's frames"):
        clip_views({"pseudo": record["pseudo"]}, palette_for(NAMES))


def test_wandb_masks_are_the_current_frame_at_the_frame_size():
    record = {**_record(), "prediction": torch.full((1, 4, 8), 3)}  # a half-size prediction of frame t
    frame, masks = current_frame_masks(record, NAMES)
    assert frame.shape == (8, 16, 3)
    assert set(masks) == {"pseudo-labels", "prediction"}
    assert (
        masks["pseudo-labels"]["mask_data"][0, 0] == 255 and masks["pseudo-labels"]["mask_data"][0, 15] == 6
    )
    assert masks["prediction"]["mask_data"].shape == (8, 16) and (masks["prediction"]["mask_data"] == 3).all()
    assert (
        masks["prediction"]["class_labels"][6] == "car"
        and masks["prediction"]["class_labels"][255] == "ignore"
    )


def test_recording_changes_no_loss_and_no_random_state(data_dir):
    cfg = compose_config(
        "train",
        [
            f"paths.data_dir={data_dir}",
            "method=dastc",
            "dataset.batch_size=2",
            "dataset.schedule.warmup_steps=0",
            "dataset.schedule.feature_fusion_start=0",
        ],
    )
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    method = build_method(cfg, dm).eval()  # eval: no dropout, no batch-norm statistics moving between calls
    results = []
    for recording in (False, True):
        method.visuals = {} if recording else None
        torch.manual_seed(1)
        losses = method.training_losses(batch)
        results.append((losses, torch.rand(()), method.visuals))
    (plain, after_plain, _), (recorded, after_recorded, visuals) = results
    assert plain.keys() == recorded.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], recorded[name], rtol=0, atol=0)
    assert after_plain == after_recorded  # recording drew no random number
    assert set(visuals) == {"source", "target", "mix_s2t", "mix_t2s"}
    assert visuals["target"]["frames"].shape[0] == 3 and visuals["target"]["pseudo"].shape[0] == 2
    assert visuals["source"]["prediction"].shape == (1, *visuals["source"]["labels"].shape[1:])  # frame t


def test_training_run_sends_panels_to_wandb_offline_tensorboard_and_png_files(data_dir, tmp_path):
    out = tmp_path / "run"
    cfg = compose_config(
        "train",
        [
            f"paths.data_dir={data_dir}",
            "logger=[csv,tensorboard,wandb]",
            "method=dastc",
            "trainer.max_steps=4",
            "dataset.schedule.warmup_steps=1",
            "dataset.schedule.panel_every=2",
            "dataset.schedule.val_every=4",
            "dataset.batch_size=2",
            "trainer.limit_val_batches=1",
        ],
        output_dir=out,
    )
    train(cfg)
    panels = {"source", "target", "mix_s2t", "mix_t2s", "val_target", "val_source"}
    # PNG files: training panels at steps 0 and 2 (adaptation from step 1 on), validation at step 4, once.
    assert {p.parent.name for p in (out / "panels").glob("*/*.png")} == panels
    assert sorted(p.name for p in (out / "panels/source").iterdir()) == ["step000000.png", "step000002.png"]
    assert [p.name for p in (out / "panels/target").iterdir()] == ["step000002.png"]
    assert [p.name for p in (out / "panels/val_target").iterdir()] == ["step000004.png"]
    image = np.asarray(Image.open(out / "panels/target/step000002.png"))
    assert image.shape == (20 + 3 * 128, 34 + 3 * 256, 3)  # 3 frames x (frame, pseudo-labels, confidence)

    # W&B offline: the panels and the mask overlays are files of the run, listed in its history.
    (run,) = (out / "wandb").glob("offline-run-*")
    media = run / "files/media/images"
    assert {p.name.rsplit("_", 2)[0] for p in (media / "panels").glob("*.png")} == panels
    assert {p.name.rsplit("_", 2)[0] for p in (media / "masks").glob("*.png")} == panels

    # TensorBoard: one image summary per panel and step.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {f"panels/{name}" for name in panels}
    assert [e.step for e in events.Images("panels/source")] == [0, 2]
    assert json.loads((out / "metrics.json").read_text())["metrics"]["target"]["mIoU"] >= 0
