"""DA-STC's building blocks: class masks, clip mixing, feature blend, TPS pseudo-labels, alignment losses."""

import math

import pytest
import torch
from torch import nn

from dastc.methods.alignment import class_aggregates, inter_class_loss, intra_class_loss, mmd_loss
from dastc.methods.fusion import (
    blend_features,
    choose_source_classes,
    choose_target_classes,
    class_mask,
    crop_clip,
    fill_unlabelled_frames,
    mix_clips,
    paste_rare_classes,
    random_crop_box,
)
from dastc.methods.pseudo_labels import clip_pseudo_labels
from dastc.models.output import SegmentationOutput


def _clip(seed, b=2, t=3, h=8, w=10, classes=6, labels=True):
    g = torch.Generator().manual_seed(seed)
    clip = {
        "frames": torch.rand(b, t, 3, h, w, generator=g),
        "flow": torch.randn(b, t - 1, 2, h, w, generator=g),
    }
    if labels:
        clip["labels"] = torch.randint(0, classes, (b, t, h, w), generator=g)
    return clip


def test_the_class_set_is_one_per_clip_and_each_frame_masks_its_own_pixels():
    src = _clip(0)
    g = torch.Generator().manual_seed(0)
    sets = choose_source_classes(src["labels"][:, -1], g, num_random=2, long_tail=(5,))
    assert sets.shape[0] == 2 and all(5 in s.tolist() for s in sets)
    mask = class_mask(src["labels"], sets)
    for b in range(2):
        chosen = [c for c in sets[b].tolist() if c >= 0]
        for t in range(3):  # the same set on every frame, each frame's own pixels of it
            assert torch.equal(mask[b, t], torch.isin(src["labels"][b, t], torch.tensor(chosen)))


def test_target_classes_exclude_the_source_set_and_respect_confidence():
    pseudo = torch.tensor([[[0, 1], [2, 3]]])
    g = torch.Generator().manual_seed(0)
    sets = choose_target_classes(pseudo, g, exclude=torch.tensor([[0, 1]]), num_random=2)
    assert sorted(sets[0].tolist()) == [2, 3]
    confidence = torch.tensor([[[[0.95, 0.95], [0.5, 0.95]]]])
    mask = class_mask(pseudo[:, None], sets, confidence=confidence, threshold=0.9)
    assert mask.tolist() == [[[[False, False], [False, True]]]]


def test_every_pixel_of_a_mixed_clip_comes_from_the_domain_its_mask_says_in_both_directions():
    src, tgt = _clip(1), _clip(2)
    pseudo = _clip(3)["labels"]
    g = torch.Generator().manual_seed(1)
    s_sets = choose_source_classes(src["labels"][:, -1], g, long_tail=(4,))
    t_sets = choose_target_classes(pseudo[:, -1], g, exclude=s_sets)
    for own, other, own_lab, other_lab, mask in (
        (tgt, src, pseudo, src["labels"], class_mask(src["labels"], s_sets)),  # source -> target
        (src, tgt, src["labels"], pseudo, class_mask(pseudo, t_sets)),  # target -> source
    ):
        assert mask.any() and (~mask).any()
        mixed = mix_clips(own, other, mask, own_lab, other_lab)
        m = mask[:, :, None].expand_as(own["frames"])
        assert torch.equal(mixed["frames"][m], other["frames"][m])
        assert torch.equal(mixed["frames"][~m], own["frames"][~m])
        assert torch.equal(mixed["labels"][mask], other_lab[mask]) and torch.equal(
            mixed["labels"][~mask], own_lab[~mask]
        )
        fm = mask[:, 1:, None].expand_as(own["flow"])  # flow i lies on frame i+1's grid
        assert torch.equal(mixed["flow"][fm], other["flow"][fm]) and torch.equal(
            mixed["flow"][~fm], own["flow"][~fm]
        )


def test_shallow_feature_blend_on_hand_made_tensors():
    own, other = torch.full((1, 2, 3, 2, 2), 1.0), torch.full((1, 2, 3, 2, 2), 11.0)
    mask = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    mask[:, :, :2, :2] = True  # the top-left feature pixel after nearest resizing
    out = blend_features(own, other, mask, alpha=0.3)
    assert torch.allclose(out[:, :, :, 0, 0], torch.full((1, 2, 3), 0.3 * 11 + 0.7 * 1))
    assert torch.equal(out[:, :, :, 1, 1], own[:, :, :, 1, 1])
    assert torch.equal(out[:, :, :, 0, 1], own[:, :, :, 0, 1])


def test_crop_box_is_inside_and_refuses_oversized_crops():
    g = torch.Generator().manual_seed(0)
    top, left, h, w = random_crop_box(640, 1280, (512, 1024), g)
    assert 0 <= top <= 128 and 0 <= left <= 256 and (h, w) == (512, 1024)
    with pytest.raises(ValueError):
        random_crop_box(100, 100, (200, 50), g)


class OneHotOfFirstChannel(nn.Module):
    """Logits that say 'class 1' where the current frame's first channel is 1, else 'class 0'."""

    def forward(self, frames, flow=None):
        on = frames[:, -1, 0]
        return SegmentationOutput(logits=torch.stack((1 - on, on), 1) * 20.0)


def test_rare_classes_are_pasted_from_their_own_clips_on_every_frame_with_labels_and_flow():
    mixed = {**_clip(4), "mask": torch.zeros(2, 3, 8, 10, dtype=torch.bool)}
    rare = [_clip(5), _clip(6)]
    classes = torch.tensor([[1, 2], [3, 1]])  # per sample, the class of rare clip 0 and rare clip 1
    out = paste_rare_classes(mixed, rare, classes)
    for b in range(2):
        expected_from = torch.full((3, 8, 10), -1)
        for k in range(2):
            expected_from[rare[k]["labels"][b] == classes[b, k]] = (
                k  # a later clip pastes over an earlier one
            )
        for t in range(3):
            for y, x in ((y, x) for y in range(8) for x in range(10)):
                k = int(expected_from[t, y, x])
                source = mixed if k < 0 else rare[k]
                assert torch.equal(out["frames"][b, t, :, y, x], source["frames"][b, t, :, y, x])
                assert out["labels"][b, t, y, x] == source["labels"][b, t, y, x]
                if t > 0:
                    assert torch.equal(out["flow"][b, t - 1, :, y, x], source["flow"][b, t - 1, :, y, x])
        assert torch.equal(out["mask"][b], expected_from >= 0)


def test_unlabelled_source_frames_take_the_current_frames_label():
    labels = torch.full((2, 2, 3, 3), 255)
    labels[:, 1] = 4
    labels[1, 0, 0, 0] = 2  # sample 1 has its own (partial) label on frame t-1: kept
    filled = fill_unlabelled_frames(labels)
    assert torch.equal(filled[0, 0], labels[0, 1]) and torch.equal(filled[1], labels[1])


def test_crop_clip_takes_one_window_of_every_tensor():
    clip = _clip(7, h=12, w=16)
    out = crop_clip({**clip, "meta": ["dropped"]}, (2, 3, 8, 10))
    assert set(out) == {"frames", "labels", "flow"}
    assert torch.equal(out["frames"], clip["frames"][..., 2:10, 3:13])
    assert torch.equal(out["flow"], clip["flow"][..., 2:10, 3:13])


@pytest.mark.parametrize("flip", [False, True])
def test_tps_pseudo_labels_land_where_the_flow_says(flip):
    h, w = 12, 16
    frames = torch.zeros(1, 3, 3, h, w)
    for k, x in enumerate((3, 5, 7)):  # a 2x3 object moving 2 px right per frame
        frames[0, k, 0, 4:6, x : x + 3] = 1.0
    flow = torch.zeros(1, 2, 2, h, w)
    flow[:, :, 0] = -2.0  # every frame's grid points 2 px left into the previous frame
    pseudo = clip_pseudo_labels(OneHotOfFirstChannel(), frames, flow, flip=flip)
    labels, confidence = pseudo.labels[:, -1], pseudo.confidence[:, -1]
    expected = torch.zeros(h, w, dtype=torch.long)
    expected[4:6, 7:10] = 1  # where the object is at t, though the teacher only saw t-1
    assert torch.equal(labels[0, :, 2:], expected[:, 2:])
    assert (labels[0, :, :2] == 255).all() and (confidence[0, :, :2] == 0).all()  # no source pixel in t-1


def _aggregates(offsets):
    """Three classes with one direction each; ``offsets`` permutes the target's directions."""
    base = torch.eye(3)
    feats_s = base[torch.tensor([0, 1, 2])].T.reshape(1, 3, 1, 3).repeat(1, 1, 6, 1)
    feats_t = base[torch.tensor(offsets)].T.reshape(1, 3, 1, 3).repeat(1, 1, 6, 1)
    labels = torch.tensor([0, 1, 2]).view(1, 1, 3).repeat(1, 6, 1)
    s, ps = class_aggregates(feats_s, labels, None, num_classes=4)
    t, pt = class_aggregates(feats_t, labels, None, num_classes=4)
    return s, t, ps & pt


def test_alignment_losses_are_lowest_for_aligned_separated_classes():
    s, t, both = _aggregates([0, 1, 2])
    assert both.tolist() == [True, True, True, False]  # class 3 absent, dropped
    aligned_intra, aligned_inter = intra_class_loss(s, t, both), inter_class_loss(s, t, both)
    s, t, both = _aggregates([1, 0, 2])  # classes 0 and 1 swapped in the target
    assert intra_class_loss(s, t, both) > aligned_intra + 0.5
    assert inter_class_loss(s, t, both) > aligned_inter + 1.0
    collapsed = torch.ones(4, 3)  # every class on one direction
    assert inter_class_loss(collapsed, collapsed, both) > aligned_inter + 0.5
    assert inter_class_loss(collapsed, collapsed, both, kind="margin") > inter_class_loss(
        *_aggregates([0, 1, 2]), kind="margin"
    )
    assert aligned_intra.item() == pytest.approx(0.0, abs=1e-6)


def test_aggregates_are_confidence_weighted_and_need_min_pixels():
    feats = torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0, 100.0]).view(1, 1, 1, 6)
    labels = torch.tensor([0, 0, 0, 0, 0, 1]).view(1, 1, 6)
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0]).view(1, 1, 6)
    means, present = class_aggregates(feats, labels, weights, num_classes=2, min_pixels=4)
    assert means[0, 0].item() == pytest.approx(4.0) and present.tolist() == [True, False]


def test_absent_classes_leave_the_losses_finite():
    s, t = torch.zeros(4, 3, requires_grad=True), torch.zeros(4, 3)
    nobody = torch.zeros(4, dtype=torch.bool)
    one = torch.tensor([True, False, False, False])
    for loss in (intra_class_loss(s, t, nobody), inter_class_loss(s, t, nobody), inter_class_loss(s, t, one)):
        assert torch.isfinite(loss) and loss.item() == 0.0
        loss.backward()


def test_mmd_matches_a_hand_computation():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [3.0]])
    # pooled points 0, 1, 0, 3; squared distances summed over ordered pairs = 1+0+9+1+1+4+0+1+9+9+4+9 = 48
    bandwidth = 48 / 12 / 2 ** (5 // 2)  # = 1

    def k(a, b):
        return sum(math.exp(-((a - b) ** 2) / (bandwidth * 2**i)) for i in range(5))

    xs, ys = [0.0, 1.0], [0.0, 3.0]
    expected = (
        sum(k(a, b) for a in xs for b in xs)
        + sum(k(a, b) for a in ys for b in ys)
        - 2 * sum(k(a, b) for a in xs for b in ys)
    ) / 4
    assert mmd_loss(x, y).item() == pytest.approx(expected, rel=1e-5)
    assert mmd_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
