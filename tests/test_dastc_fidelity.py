"""DA-STC as the paper and the authors' loop run it: tensors made where the data lives, corner-aligned output
geometry, auxiliary pseudo-labels, mixed clips on the main head, raw target pixels pasted into the source, rare
classes in both mixed clips, the flow fallback inside pasted objects, and alignment over the clip's frames."""

import pytest
import torch

from dastc.build import build_datamodule, build_method
from dastc.config import compose_config
from dastc.methods.dastc import _frames_computed
from dastc.methods.fusion import choose_source_classes, choose_target_classes, crop_box_holding, flow_fallback
from dastc.methods.losses import segmentation_loss, upsample_to
from dastc.methods.pseudo_labels import clip_pseudo_labels
from dastc.models.output import SegmentationOutput
from dastc.models.video import ACCEL


def _method(data_dir, *overrides):
    cfg = compose_config(
        "train",
        [
            f"paths.data_dir={data_dir}",
            "method=dastc",
            "backbone=accel",
            "backbone.depth=18",
            "dataset.schedule.feature_fusion_start=0",
            "dataset.schedule.warmup_steps=0",
            *overrides,
        ],
    )
    torch.manual_seed(0)
    method = build_method(cfg, build_datamodule(cfg))
    method.log = method.log_dict = lambda *a, **k: None
    return method.eval()  # no dropout: the same passes give the same numbers


# --- 1. every tensor on the device of the data it meets ---------------------------------------------------------
def test_class_sets_are_made_on_the_labels_device_not_the_default_one():
    # CPU tests cannot meet a GPU; a default device other than the data's catches every tensor made without one.
    labels = torch.tensor([[[0, 1], [2, 3]]])
    with torch.device("meta"):
        g = torch.Generator().manual_seed(0)
        sets = choose_source_classes(labels, g, num_random=2, long_tail=(5,))
        target = choose_target_classes(labels, g, exclude=sets)
    assert sets.device.type == "cpu" and target.device.type == "cpu" and 5 in sets[0].tolist()


@pytest.mark.parametrize("method", ["dastc", "tps"])
def test_a_training_step_makes_no_tensor_on_the_default_device(data_dir, batch, method):
    # (torchvision's hue adjustment makes a tensor on the default device, then moves it where the image is:
    # right on a GPU, but "meta" cannot move; the strong augmentation stays off here.)
    m = _method(data_dir, f"method={method}")
    torch.manual_seed(1)
    with torch.device("meta"):  # a tensor made without a device would land on "meta" and meet CPU data
        losses = m.training_losses(batch)
    assert all(v.device.type == "cpu" and torch.isfinite(v) for v in losses.values())


# --- 5. geometry ------------------------------------------------------------------------------------------------
def test_outputs_are_upsampled_corner_aligned_like_deeplab_v2():
    # Output pixel m of a 5-wide map lands on input pixel m (3 - 1) / (5 - 1) = m / 2: the corners coincide.
    logits = torch.tensor([-1.0, 1.0, 3.0]).view(1, 1, 1, 3).expand(1, 1, 2, 3)
    up = upsample_to(logits, (2, 5))
    torch.testing.assert_close(up[0, 0, 0], torch.tensor([-1.0, 0.0, 1.0, 2.0, 3.0]))


# --- 6. pseudo-labels, losses and mixing ------------------------------------------------------------------------
class TwoHeads(torch.nn.Module):
    """A teacher whose main head says class 1 everywhere and whose auxiliary head says class 2."""

    def forward(self, frames, flow=None):
        b, _, _, h, w = frames.shape
        main = torch.zeros(b, 3, h, w)
        main[:, 1] = 5.0
        aux = torch.zeros(b, 3, h, w)
        aux[:, 2] = 5.0
        return SegmentationOutput(logits=main, aux_logits=aux)


def test_auxiliary_pseudo_labels_are_the_teachers_auxiliary_prediction():
    frames, flow = torch.zeros(1, 3, 3, 4, 6), torch.zeros(1, 2, 2, 4, 6)
    flow[:, 1, 0] = -2.0  # the two left columns of t come from outside t-1: ignored
    pseudo = clip_pseudo_labels(TwoHeads(), frames, flow)
    assert (pseudo.labels[0, -1, :, 2:] == 1).all() and (pseudo.aux[0, :, 2:] == 2).all()
    assert (pseudo.aux[0, :, :2] == 255).all()


def test_the_auxiliary_head_learns_from_its_own_labels():
    g = torch.Generator().manual_seed(0)
    out = SegmentationOutput(
        logits=torch.randn(1, 3, 2, 2, generator=g), aux_logits=torch.randn(1, 3, 2, 2, generator=g)
    )
    main, aux = torch.tensor([[[0, 1], [2, 0]]]), torch.tensor([[[2, 2], [1, 255]]])

    def ce(logits, labels):  # by hand: mean over labelled pixels of -log softmax at the label
        logp = logits.log_softmax(1)[0]
        picked = [logp[labels[0, i, j], i, j] for i in range(2) for j in range(2) if labels[0, i, j] != 255]
        return -torch.stack(picked).mean()

    expected = ce(out.logits, main) + 0.1 * ce(out.aux_logits, aux)
    torch.testing.assert_close(segmentation_loss(out, main, 0.1, 255, aux_labels=aux), expected)


def test_mixed_clips_are_supervised_through_the_main_head_only(data_dir, batch):
    torch.manual_seed(1)
    with_aux = _method(data_dir).training_losses(batch)
    torch.manual_seed(1)
    without = _method(data_dir, "method.aux_weight=0").training_losses(batch)
    for name in ("mix_s2t_ce", "mix_t2s_ce", "feat_s2t_ce", "feat_t2s_ce"):
        torch.testing.assert_close(with_aux[name], without[name])
    assert not torch.allclose(with_aux["target_ce"], without["target_ce"])  # the TPS loss keeps its aux term


def test_target_to_source_pastes_raw_target_pixels_and_source_to_target_mixes_into_the_augmented_pair(
    data_dir, batch
):
    m = _method(
        data_dir,
        "dataset.schedule.dastc.strong_target_aug=true",
        "method.fusion.target_threshold=0",
        "method.fusion.rare_class_paste=false",  # rare pixels come from other clips
    )
    target = batch["target"]["frames"][:, 1:]
    seen = {}
    for seed in range(4):  # until a draw augments the target visibly
        torch.manual_seed(seed)
        visuals = m.sample_visuals(batch, step=0)
        augmented = visuals["target"]["frames"][1:]
        if not torch.allclose(augmented, target[0]):
            seen = visuals
            break
    t2s, source = seen["mix_t2s"]["frames"], batch["source"]["frames"][0]
    pasted = (t2s != source).any(1)  # [T, H, W]
    assert pasted.any()
    expanded = pasted[:, None].expand_as(t2s)
    assert torch.equal(t2s[expanded], target[0][expanded])  # raw target pixels, not the augmented ones
    s2t = seen["mix_s2t"]["frames"]
    kept = (s2t == augmented).all(1)
    assert kept.float().mean() > 0.3  # the base of the source->target clip is the augmented target pair


def test_rare_class_windows_are_drawn_again_until_they_hold_the_class():
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[:3] = 7  # the rare class fills the top 3 rows: a 40-row window starting below row 2 misses it
    g = torch.Generator().manual_seed(0)
    once = [crop_box_holding(labels, 7, (40, 40), g, min_pixels=5, tries=1)[0] for _ in range(50)]
    assert sum(top > 2 for top in once) > 30  # one draw mostly cuts it out (22 of 25 tops do) ...
    for _ in range(20):  # ... drawn again until enough of it is inside
        top, left, h, w = crop_box_holding(labels, 7, (40, 40), g, min_pixels=5, tries=100)
        assert (labels[top : top + h, left : left + w] == 7).sum() >= 5
    assert crop_box_holding(labels, 9, (40, 40), g) is not None  # an absent class: a window all the same


def test_pasted_pixels_whose_flow_leaves_the_pasted_object_fall_back_to_the_current_frame():
    mask = torch.zeros(1, 2, 1, 6, dtype=torch.bool)
    mask[0, 0, 0, 1:3] = True  # the object at t-1
    mask[0, 1, 0, 2:5] = True  # at t, one pixel further right and one wider
    flow = torch.zeros(1, 1, 2, 1, 6)
    flow[:, :, 0] = -1.0  # every pixel of t came from one pixel left
    fallback = flow_fallback(mask, flow)
    # t's pixels 2, 3 came from 1, 2 (the object at t-1); pixel 4 from 3, which was not the object.
    assert fallback[0, 0].tolist() == [False, False, False, False, True, False]
    assert flow_fallback(mask[:, 1:], None) is None


class Constant(torch.nn.Module):
    """A frame network whose logits are the frame's first channel, repeated for 2 classes."""

    num_classes = 2

    def forward(self, x):
        return SegmentationOutput(logits=x[:, :1].repeat(1, 2, 1, 1), features=x[:, :1])

    def param_groups(self):
        return {"backbone": [], "head": []}


def test_accel_uses_the_current_frames_scores_where_the_fallback_says():
    net = ACCEL(Constant())
    with torch.no_grad():
        net.fusion.weight.zero_()
        net.fusion.weight[:, 2:, 0, 0] = torch.eye(2)  # output = the warped previous frame alone
    frames = torch.stack((torch.full((1, 3, 2, 3), 1.0), torch.full((1, 3, 2, 3), 5.0)), 1)
    fallback = torch.tensor([[[True, False, False], [False, False, True]]])
    out = net(frames, torch.zeros(1, 1, 2, 2, 3), fallback=fallback)
    assert out.logits[0, 0].tolist() == [[5.0, 1.0, 1.0], [1.0, 1.0, 5.0]]


# --- 4. the alignment spans the clip's frames -------------------------------------------------------------------
def test_aggregates_span_the_frames_the_student_computed(data_dir, batch):
    m = _method(data_dir)
    source = batch["source"]
    with torch.no_grad():
        out = m.student(source["frames"], source["flow"])
    assert out.previous is not None and len(_frames_computed(out)) == 2

    def aggregate(outs):
        parts = [
            (o, source["labels"][:, -1 - k], torch.ones_like(source["labels"][:, :1]).float(), None)
            for k, o in enumerate(outs)
        ]
        return m._aggregate(parts)[0]

    both, current = aggregate(_frames_computed(out)), aggregate([out])
    assert not torch.allclose(both, current)  # frames that differ: the clip's aggregate is not frame t's
    still = {**source, "frames": source["frames"][:, [1, 1]], "labels": source["labels"][:, [1, 1]]}
    with torch.no_grad():
        out = m.student(still["frames"], torch.zeros_like(source["flow"]))
    parts = [
        (o, still["labels"][:, -1], torch.ones_like(still["labels"][:, :1]).float(), None)
        for o in _frames_computed(out)
    ]
    torch.testing.assert_close(m._aggregate(parts)[0], m._aggregate(parts[:1])[0])  # a still clip: the same


def test_cosine_alignment_runs_no_second_target_pass(data_dir, batch):
    calls = {"cosine": 0, "mmd": 0}
    for loss in calls:
        m = _method(
            data_dir, f"method.align.loss={loss}", "method.fusion.image=false", "method.fusion.feature=false"
        )
        forward = m.student.forward

        def counting(*args, _loss=loss, _forward=forward, **kwargs):
            calls[_loss] += 1
            return _forward(*args, **kwargs)

        m.student.forward = counting
        torch.manual_seed(1)
        m.training_losses(batch)
    assert calls == {"cosine": 2, "mmd": 3}  # source + target pass; mmd adds the authors' (t, t-2) pass
