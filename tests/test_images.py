"""Images as clips of one frame (docs/method.md, Images (clips of one frame)): the methods run with T=1 and
skip everything that needs a previous frame or a flow. (Training and evaluation through the command line:
tests/test_image_benchmarks.py.)"""

import pytest
import torch

from dastc.build import build_datamodule, build_method
from dastc.config import compose_config
from dastc.methods.pseudo_labels import clip_pseudo_labels
from dastc.models.output import SegmentationOutput

IMAGES = [
    "dataset.source.num_frames=1",
    "dataset.target.num_frames=1",
    "dataset.val.num_frames=1",
    "dataset.extra_val.source.num_frames=1",
]
ALL = {"source_ce", "target_ce", "mix_s2t_ce", "mix_t2s_ce", "feat_s2t_ce", "feat_t2s_ce", "align"}


class LeftRight(torch.nn.Module):
    """A stand-in teacher: class 1 where the image's red channel is bright, class 0 elsewhere, sure of it."""

    def forward(self, frames, flow=None):
        assert flow is None or flow.shape[1] == 0  # an image needs no flow
        red = frames[:, -1, 0:1]
        return SegmentationOutput(logits=torch.cat([(0.5 - red) * 20, (red - 0.5) * 20], 1))


def test_image_pseudo_labels_are_the_teachers_prediction_with_or_without_the_flip():
    frames = torch.zeros(2, 1, 3, 4, 6)
    frames[0, 0, 0, :, :2] = 1.0  # the left third of image 0 is red
    for flip in (False, True):
        labels, confidence, _ = clip_pseudo_labels(LeftRight(), frames, None, flip)
        assert labels.shape == confidence.shape == (2, 1, 4, 6)
        expected = torch.zeros(2, 1, 4, 6, dtype=torch.long)
        expected[0, 0, :, :2] = 1
        assert torch.equal(labels, expected)  # mirrored back: the red pixels stay on the left
        assert (confidence > 0.99).all()


@pytest.mark.parametrize(
    "backbone,flow", [(["backbone=accel", "backbone.depth=18"], "absent"), (["backbone=smp_unet"], "empty")]
)
def test_a_dastc_step_on_images_runs_every_loss_without_a_flow(data_dir, backbone, flow):
    overrides = [
        f"paths.data_dir={data_dir}",
        "method=dastc",
        "dataset.batch_size=2",
        "dataset.schedule.warmup_steps=0",
        "dataset.schedule.feature_fusion_start=0",
        *IMAGES,
        *backbone,
    ]
    cfg = compose_config("train", overrides)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["target"]["frames"].shape[1] == 1 and batch["target"]["flow"].shape[1] == 0
    if flow == "absent":  # an image dataset may carry no flow at all
        for clip in [batch["source"], batch["target"], *batch["rare"]["clips"]]:
            del clip["flow"]
    torch.manual_seed(0)
    method = build_method(cfg, datamodule).eval()
    method.visuals = {}
    losses = method.training_losses(batch)
    assert set(losses) == ALL
    assert all(torch.isfinite(v) for v in losses.values())
    # One frame everywhere: the panels show single images, pseudo-labels of the image itself.
    assert (
        method.visuals["target"]["frames"].shape[0] == 1 and method.visuals["target"]["pseudo"].shape[0] == 1
    )
    # The step trains: its gradients reach the network.
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student.parameters())
