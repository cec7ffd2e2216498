"""Independent checks of the maths (issue 17, section 2): each value below is computed by hand (or from a
published table), never by calling the implementation under test a second time."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

import dastc.methods.pseudo_labels as pseudo_labels_module
from dastc.data.class_spaces import SYNTHIA_IMAGE, VIPER
from dastc.data.viper import VIPER_COLOURS
from dastc.flow.warp import compose, warp
from dastc.methods.alignment import class_aggregates, inter_class_loss, intra_class_loss
from dastc.methods.dastc import DASTC
from dastc.methods.ema import EMATeacher
from dastc.methods.pseudo_labels import clip_pseudo_labels
from dastc.metrics.iou import iou_from_confusion, mean_iou
from dastc.models.output import SegmentationOutput


def _flow(fx, fy, h, w):
    """A [1, 2, h, w] flow whose x and y components are the python functions ``fx(y, x)``, ``fy(y, x)``."""
    grid = [
        [[fx(y, x) for x in range(w)] for y in range(h)],
        [[fy(y, x) for x in range(w)] for y in range(h)],
    ]
    return torch.tensor([grid], dtype=torch.float32)


# --- 1. flow composition -----------------------------------------------------------------------------------------
def test_compose_of_constant_shifts_is_their_sum_inside_and_the_first_flow_outside():
    h, w = 4, 7
    f_ab = _flow(lambda y, x: 2.0, lambda y, x: 0.0, h, w)  # a -> b: +2 px in x everywhere
    f_bc = _flow(lambda y, x: -1.0, lambda y, x: 1.0, h, w)  # b -> c: -1 px in x, +1 px in y
    f_ac = compose(f_ab, f_bc)
    # By hand: where x + 2 is a pixel of b (x <= 4) f_ac = (2 - 1, 0 + 1) = (1, 1); for x = 5, 6 the path leaves
    # frame b (x + 2 = 7, 8 > w - 1 = 6), the second term reads 0: f_ac = f_ab = (2, 0).
    expected_x = [[1.0] * 5 + [2.0] * 2 for _ in range(h)]
    expected_y = [[1.0] * 5 + [0.0] * 2 for _ in range(h)]
    torch.testing.assert_close(f_ac, torch.tensor([[expected_x, expected_y]]), atol=1e-5, rtol=0)


def test_compose_samples_the_second_flow_where_the_first_one_lands():
    h, w = 5, 6
    # f_ab = (+2, +1); f_bc varies over b's grid: f_bc(X, Y) = (X - 3, 10 * Y), so reading it at the wrong place
    # (x instead of x + f_ab(x)) gives other numbers.
    f_ab = _flow(lambda y, x: 2.0, lambda y, x: 1.0, h, w)
    f_bc = _flow(lambda y, x: x - 3.0, lambda y, x: 10.0 * y, h, w)
    f_ac = compose(f_ab, f_bc)
    # By hand: the path lands on b's pixel (X, Y) = (x + 2, y + 1); inside b (X <= 5, Y <= 4) f_ac = (2 + X - 3,
    # 1 + 10 Y) = (x + 1, 11 + 10 y); outside, f_ac = (2, 1).
    for y in range(h):
        for x in range(w):
            inside = x + 2 <= w - 1 and y + 1 <= h - 1
            want = (x + 1.0, 11.0 + 10.0 * y) if inside else (2.0, 1.0)
            got = (f_ac[0, 0, y, x].item(), f_ac[0, 1, y, x].item())
            assert got == pytest.approx(want, abs=1e-4), (y, x)


# --- 2. the teacher's 50% flip with flow ---------------------------------------------------------------------------
class FlowFollowingTeacher(torch.nn.Module):
    """Its logits for frame t-1 are the class map written in frame t-2 (channel 0 holds the class id) carried
    onto t-1 by the flow it is given: a teacher that depends on the flow's sign and on the mirroring."""

    num_classes = 4

    def forward(self, frames, flow):
        classes = frames[:, 0, 0].round().long()  # frame t-2
        one_hot = F.one_hot(classes, self.num_classes).permute(0, 3, 1, 2).float()
        return SegmentationOutput(logits=10.0 * warp(one_hot, flow[:, 0], mode="nearest"))


def _asymmetric_moving_scene():
    # A class map without mirror symmetry, moving by whole pixels in x (flows: t-1 -> t-2 and t -> t-1 both
    # read 1 px to the right, i.e. the scene moves left by 1 px per frame).
    h, w = 3, 8
    classes = torch.tensor([[0, 1, 1, 2, 3, 3, 3, 0], [1, 2, 0, 0, 3, 1, 2, 2], [3, 3, 2, 1, 0, 0, 1, 2]])
    frames = torch.zeros(1, 3, 3, h, w)
    frames[0, 0, 0] = classes.float()
    flow = torch.zeros(1, 2, 2, h, w)
    flow[:, :, 0] = 1.0
    return classes, frames, flow


def test_flipped_teacher_gives_the_labels_of_the_unflipped_one_on_a_moving_asymmetric_scene():
    classes, frames, flow = _asymmetric_moving_scene()
    plain = clip_pseudo_labels(FlowFollowingTeacher(), frames, flow, flip=False)
    flipped = clip_pseudo_labels(FlowFollowingTeacher(), frames, flow, flip=True)
    # By hand: t-1 reads t-2 one pixel to the right (last column: outside, all-zero logits -> class 0), and t
    # reads t-1 one pixel to the right (last column outside -> 255).
    previous = torch.cat((classes[:, 1:], torch.zeros(3, 1, dtype=torch.long)), 1)
    current = torch.cat((previous[:, 1:], torch.full((3, 1), 255)), 1)
    assert plain.labels[0, 0].tolist() == previous.tolist()
    assert plain.labels[0, 1].tolist() == current.tolist()
    # A mirror-symmetric pipeline: flipping the clip (flow x negated) and mirroring back changes nothing.
    assert torch.equal(flipped.labels, plain.labels)
    torch.testing.assert_close(flipped.confidence, plain.confidence)


def test_the_flip_check_catches_a_flow_whose_x_is_not_negated(monkeypatch):
    # The scene above is sensitive to the sign: mirroring the flow without negating x gives other labels.
    def flip_without_negating(frames, flow):
        return frames.flip(-1), flow.flip(-1)

    classes, frames, flow = _asymmetric_moving_scene()
    plain = clip_pseudo_labels(FlowFollowingTeacher(), frames, flow, flip=False)
    monkeypatch.setattr(pseudo_labels_module, "flip_clip", flip_without_negating)
    wrong = clip_pseudo_labels(FlowFollowingTeacher(), frames, flow, flip=True)
    assert not torch.equal(wrong.labels[:, 0], plain.labels[:, 0])


# --- 3. alignment losses ------------------------------------------------------------------------------------------
def _at_angle(degrees, length):
    return [length * math.cos(math.radians(degrees)), length * math.sin(math.radians(degrees))]


# Three classes; class 1 is present in one domain only and must drop out. Lengths differ to check that only the
# directions count. Source at 0, (anything), 90 degrees; target at 30, (anything), 60 degrees.
SOURCE = torch.tensor([_at_angle(0, 2.0), [5.0, -1.0], _at_angle(90, 0.5)], dtype=torch.float64)
TARGET = torch.tensor([_at_angle(30, 3.0), [-4.0, 2.0], _at_angle(60, 1.0)], dtype=torch.float64)
BOTH = torch.tensor([True, False, True])
COS = math.cos


def test_intra_class_loss_is_the_mean_of_one_minus_cos_over_shared_classes():
    # class 0: angle 30 degrees between source and target; class 2: 30 degrees as well -> (1 - cos 30) each.
    want = ((1 - COS(math.radians(30))) + (1 - COS(math.radians(30)))) / 2
    assert intra_class_loss(SOURCE, TARGET, BOTH).item() == pytest.approx(want, rel=1e-9)
    # With class 1 included: its cos is (5 * -4 + -1 * 2) / (sqrt(26) sqrt(20)).
    cos1 = (5 * -4 + -1 * 2) / (math.sqrt(26) * math.sqrt(20))
    want3 = (2 * (1 - COS(math.radians(30))) + (1 - cos1)) / 3
    assert intra_class_loss(SOURCE, TARGET, torch.tensor([True, True, True])).item() == pytest.approx(want3)


def test_infonce_inter_class_loss_by_hand():
    tau = 0.5
    r = math.radians
    # cos(s_i, t_j) for s = (0, 90) degrees and t = (30, 60) degrees.
    cos = [[COS(r(30)), COS(r(60))], [COS(r(60)), COS(r(30))]]

    def ce(row, target):  # cross-entropy of logits row / tau against class ``target``
        return -(row[target] / tau) + math.log(sum(math.exp(v / tau) for v in row))

    s_to_t = (ce(cos[0], 0) + ce(cos[1], 1)) / 2  # each source aggregate picks its target among T
    t_to_s = (ce([cos[0][0], cos[1][0]], 0) + ce([cos[0][1], cos[1][1]], 1)) / 2  # columns: T S^T
    want = 0.5 * (s_to_t + t_to_s)
    got = inter_class_loss(SOURCE, TARGET, BOTH, kind="infonce", temperature=tau)
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_infonce_by_hand_on_an_asymmetric_cosine_matrix():
    # Rows and columns of S T^T differ here, so swapping them (or forgetting one direction) changes the value.
    source = torch.tensor([_at_angle(0, 1.0), _at_angle(90, 1.0)], dtype=torch.float64)
    target = torch.tensor([_at_angle(10, 1.0), _at_angle(45, 1.0)], dtype=torch.float64)
    r, tau = math.radians, 0.2
    cos = [[COS(r(10)), COS(r(45))], [COS(r(80)), COS(r(45))]]  # cos(s_i, t_j)

    def ce(row, target):
        return -(row[target] / tau) + math.log(sum(math.exp(v / tau) for v in row))

    rows = (ce(cos[0], 0) + ce(cos[1], 1)) / 2
    cols = (ce([cos[0][0], cos[1][0]], 0) + ce([cos[0][1], cos[1][1]], 1)) / 2
    got = inter_class_loss(source, target, torch.tensor([True, True]), kind="infonce", temperature=tau)
    assert got.item() == pytest.approx(0.5 * (rows + cols), rel=1e-9)


def test_margin_inter_class_loss_by_hand():
    # Pooled direction of class 0: between 0 and 30 degrees -> 15; class 2: between 90 and 60 -> 75. Their cos
    # is cos 60 = 0.5; both ordered pairs count: relu(0.5 - margin).
    got = inter_class_loss(SOURCE, TARGET, BOTH, kind="margin", margin=0.1)
    assert got.item() == pytest.approx(0.5 - 0.1, rel=1e-9)
    assert inter_class_loss(SOURCE, TARGET, BOTH, kind="margin", margin=0.7).item() == 0.0
    # Fewer than two shared classes: 0.
    assert inter_class_loss(SOURCE, TARGET, torch.tensor([True, False, False])).item() == 0.0


def test_class_aggregates_are_confidence_weighted_means_and_presence_counts_weighted_pixels():
    # One frame, D = 2, 2 x 3 pixels. Feature of pixel (y, x) = (x + 3 y, 10 (x + 3 y)), i.e. pixel k = 0..5 has
    # (k, 10 k).
    k = torch.arange(6, dtype=torch.float64).view(2, 3)
    features = torch.stack((k, 10 * k))[None]
    labels = torch.tensor([[[0, 0, 1], [1, 255, 0]]])
    weights = torch.tensor([[[0.25, 0.75, 0.5], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    means, present = class_aggregates(features, labels, weights, num_classes=3, min_pixels=1)
    # Class 0: pixels 0 (w 0.25) and 1 (w 0.75); pixel 5 has weight 0 and is left out:
    # (0.25 * 0 + 0.75 * 1) / (0.25 + 0.75) = 0.75 (the plain mean of pixels 0, 1, 5 would be 2).
    # Class 1: pixel 2 (w 0.5); pixel 3 has weight 0: mean = 2. Pixel 4 is ignored (255). Class 2: absent.
    torch.testing.assert_close(
        means, torch.tensor([[0.75, 7.5], [2.0, 20.0], [0.0, 0.0]], dtype=torch.float64)
    )
    assert present.tolist() == [True, True, False]
    # min_pixels counts pixels of positive weight: class 0 has 2, class 1 has 1.
    means, present = class_aggregates(features, labels, weights, num_classes=3, min_pixels=2)
    assert present.tolist() == [True, False, False]
    assert means[1].tolist() == [0.0, 0.0]  # absent classes get zero means


def test_labels_and_weights_at_the_feature_resolution():
    method = SimpleNamespace(align=SimpleNamespace(loss="infonce"), ignore_index=255)
    # Labels [1, 4, 6] -> features 2 x 3: nearest picks source rows 0, 2 and columns 0, 2, 4 (index floor(2 i)).
    labels = torch.arange(24).view(1, 4, 6) % 5
    labels[0, 2, 4] = 255
    # Weights w(y, x) = 10 y + x, corner-aligned to 2 x 3: output row r sits on input row 3 r, column c on
    # input column 2.5 c, so (linear weights) w = 30 r + 2.5 c.
    weights = (10 * torch.arange(4.0).view(4, 1) + torch.arange(6.0)).view(1, 1, 4, 6)
    out = SegmentationOutput(logits=torch.zeros(1, 5, 7, 7), features=torch.zeros(1, 8, 2, 3))
    small, small_w = DASTC._at(method, out, labels, weights)
    assert small.tolist() == [[[labels[0, r, c].item() for c in (0, 2, 4)] for r in (0, 2)]]
    assert small[0, 1, 2].item() == 255  # the ignored label at (2, 4) survives
    torch.testing.assert_close(small_w, torch.tensor([[[0.0, 2.5, 5.0], [30.0, 32.5, 35.0]]]))
    # The agreement filter: where the prediction (argmax of agree_with, here already at 2 x 3) differs from the
    # label the pixel becomes 255; the weights are left as they are.
    prediction = small.clone()
    prediction[small == 255] = 0
    prediction[0, 0, 1] = (prediction[0, 0, 1] + 1) % 5  # disagrees
    agree_with = F.one_hot(prediction, 5).permute(0, 3, 1, 2).float()
    filtered, filtered_w = DASTC._at(method, out, labels, weights, agree_with)
    want = small.clone()
    want[0, 0, 1] = 255
    assert filtered.tolist() == want.tolist()
    torch.testing.assert_close(filtered_w, small_w)
    # With the mmd loss the labels go to the logits' resolution (7 x 7) instead.
    mmd = SimpleNamespace(align=SimpleNamespace(loss="mmd"), ignore_index=255)
    assert DASTC._at(mmd, out, labels, weights)[0].shape == (1, 7, 7)


# --- 4. IoU with ignored pixels ------------------------------------------------------------------------------------
def test_iou_ignores_255_and_matches_torchmetrics_and_a_hand_count():
    num_classes = 4
    labels = torch.tensor([[0, 0, 1, 1], [2, 255, 255, 2]])
    prediction = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 2]])
    confusion = MulticlassConfusionMatrix(num_classes, ignore_index=255)(prediction, labels)
    iou = iou_from_confusion(confusion)
    # Hand count over the 6 labelled pixels (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,0) (2,2).
    # class 0: tp 1, fp 1 (gt 2), fn 1 -> 1/3; class 1: tp 2, fp 1 (gt 0), fn 0 -> 2/3;
    # class 2: tp 1, fp 0 (its prediction on a 255 pixel does not count), fn 1 -> 1/2; class 3: never -> NaN.
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(iou[3].item())
    assert mean_iou(iou).item() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    jaccard = MulticlassJaccardIndex(num_classes, ignore_index=255, average=None)(prediction, labels)
    torch.testing.assert_close(iou[:3].float(), jaccard[:3].float())


# --- 5. published class tables -------------------------------------------------------------------------------------
# The VIPER benchmark's classes.csv (id, name, R, G, B), as reproduced verbatim in public loaders (e.g. the
# `classes_csv` string of GTA5/VIPER loaders derived from CyCADA, and the VIPER PALETTE of DAFormer-derived
# tools/convert_datasets/viper.py).
VIPER_CLASSES_CSV = """0,unlabeled,0,0,0
1,ambiguous,111,74,0
2,sky,70,130,180
3,road,128,64,128
4,sidewalk,244,35,232
5,railtrack,230,150,140
6,terrain,152,251,152
7,tree,87,182,35
8,vegetation,35,142,35
9,building,70,70,70
10,infrastructure,153,153,153
11,fence,190,153,153
12,billboard,150,20,20
13,trafficlight,250,170,30
14,trafficsign,220,220,0
15,mobilebarrier,180,180,100
16,firehydrant,173,153,153
17,chair,168,153,153
18,trash,81,0,21
19,trashcan,81,0,81
20,person,220,20,60
21,animal,255,0,0
22,bicycle,119,11,32
23,motorcycle,0,0,230
24,car,0,0,142
25,van,0,80,100
26,bus,0,60,100
27,truck,0,0,70
28,trailer,0,0,90
29,train,0,80,100
30,plane,0,100,100
31,boat,50,0,90"""

# VIPER id -> 15-class train id of DA-VSN (Dayan-Guan/DA-VSN, davsn/dataset/Viper.py, id_to_trainid).
DA_VSN_VIPER_IDS = {3: 0, 4: 1, 9: 2, 11: 3, 13: 4, 14: 5, 7: 6, 8: 6, 6: 7, 2: 8, 20: 9, 24: 10, 27: 11, 26: 12,
                    23: 13, 22: 14}  # fmt: skip

# SYNTHIA-RAND-CITYSCAPES id -> 16-class train id (valeoai/MTAF, mtaf/dataset/synthia.py, num_classes == 16; the
# 19-class table of ADVENT/CBST with terrain (16), truck (18) and train (20) removed and the rest renumbered).
MTAF_SYNTHIA_16_IDS = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11, 8: 12,
                       19: 13, 12: 14, 11: 15}  # fmt: skip


def test_viper_colours_are_the_published_class_colours():
    rows = [line.split(",") for line in VIPER_CLASSES_CSV.splitlines()]
    assert [int(r[0]) for r in rows] == list(range(32))
    assert list(VIPER_COLOURS) == [(int(r[2]), int(r[3]), int(r[4])) for r in rows]


def test_viper_and_synthia_rand_id_tables_are_the_published_ones():
    assert dict(VIPER.source_ids) == DA_VSN_VIPER_IDS
    assert dict(SYNTHIA_IMAGE.source_ids) == MTAF_SYNTHIA_16_IDS
    # The names agree too: each VIPER class decodes to the project class of the same name (tree -> vegetation).
    names = {int(r[0]): r[1] for r in (line.split(",") for line in VIPER_CLASSES_CSV.splitlines())}
    aliases = {"tree": "vegetation", "trafficlight": "traffic light", "trafficsign": "traffic sign"}
    for raw, train in VIPER.source_ids:
        assert aliases.get(names[raw], names[raw]) == VIPER.class_names[train], raw
    # The lookup tables hold exactly these pairs and 255 elsewhere.
    for space, table in ((VIPER, DA_VSN_VIPER_IDS), (SYNTHIA_IMAGE, MTAF_SYNTHIA_16_IDS)):
        assert space.source_lut.tolist() == [table.get(i, 255) for i in range(256)]


# --- 7. EMA teacher ------------------------------------------------------------------------------------------------
class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.norm = torch.nn.BatchNorm1d(1)

    def forward(self, x):
        return self.norm(self.linear(x))


def _set(module, weight, bias, running_mean, batches):
    with torch.no_grad():
        module.linear.weight.copy_(torch.tensor([weight]))
        module.linear.bias.fill_(bias)
        module.norm.running_mean.fill_(running_mean)
        module.norm.num_batches_tracked.fill_(batches)


def test_ema_update_is_the_momentum_average_and_integer_buffers_are_copied():
    student = Small()
    teacher = EMATeacher(student, momentum=0.9)
    _set(teacher.model, [1.0, -2.0], 4.0, 10.0, 3)
    _set(student, [3.0, 8.0], -6.0, 0.0, 7)
    teacher.update(student)
    # 0.9 p + 0.1 s: weight (0.9 + 0.3, -1.8 + 0.8) = (1.2, -1.0); bias 3.6 - 0.6 = 3.0; running mean 9.0.
    torch.testing.assert_close(teacher.model.linear.weight, torch.tensor([[1.2, -1.0]]))
    assert teacher.model.linear.bias.item() == pytest.approx(3.0, abs=1e-6)
    assert teacher.model.norm.running_mean.item() == pytest.approx(9.0, abs=1e-6)
    assert teacher.model.norm.num_batches_tracked.item() == 7  # copied, not averaged
    # A second step with another student: 0.9 * 1.2 + 0.1 * 0 = 1.08, 0.9 * -1.0 + 0.1 * 0 = -0.9.
    _set(student, [0.0, 0.0], 0.0, 0.0, 8)
    teacher.update(student)
    torch.testing.assert_close(teacher.model.linear.weight, torch.tensor([[1.08, -0.9]]))
    assert teacher.model.norm.num_batches_tracked.item() == 8
    assert all(not p.requires_grad for p in teacher.model.parameters())


class Constant(torch.nn.Module):
    """Returns its single parameter, so a call shows which network answered."""

    def __init__(self, value):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(float(value)))

    def forward(self, x):
        return self.value.detach().clone()


def test_ema_mode_labels_with_the_initial_network_until_switch_step():
    student = Constant(0.0)
    teacher = EMATeacher(student, momentum=0.5, mode="ema", switch_step=2)
    teacher.set_initial(Constant(100.0))
    assert teacher(None).item() == 100.0  # step 0: the initial network labels
    with torch.no_grad():
        student.value.fill_(8.0)
    teacher.update(student)  # step 1: model = 0.5 * 0 + 0.5 * 8 = 4 (it follows the student meanwhile)
    assert teacher(None).item() == 100.0 and teacher.model.value.item() == 4.0
    teacher.update(student)  # step 2 = switch_step: model = 0.5 * 4 + 0.5 * 8 = 6, and it labels from now on
    assert teacher(None).item() == 6.0
    assert teacher.initial is None
