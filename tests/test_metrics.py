import math

import pytest
import torch

from dastc.metrics.iou import iou_from_confusion, mean_iou


def test_iou_on_hand_made_confusion_matrix():
    # rows = ground truth, columns = prediction
    confusion = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    iou = iou_from_confusion(confusion)
    # class 0: tp 3, fp 2, fn 1 -> 3/6; class 1: tp 4, fp 1, fn 2 -> 4/7; class 2 never occurs -> NaN
    assert iou[0].item() == pytest.approx(3 / 6)
    assert iou[1].item() == pytest.approx(4 / 7)
    assert math.isnan(iou[2].item())
    assert mean_iou(iou).item() == pytest.approx((3 / 6 + 4 / 7) / 2)


def test_mean_iou_over_a_subset_of_classes():
    iou = torch.tensor([0.5, 0.25, 1.0, float("nan")])
    assert mean_iou(iou, [0, 2]).item() == pytest.approx(0.75)
    assert mean_iou(iou, [1, 3]).item() == pytest.approx(0.25)


def test_predicted_but_absent_class_counts_as_zero():
    confusion = torch.tensor([[5, 5], [0, 0]])  # class 1 never in ground truth but predicted 5 times
    iou = iou_from_confusion(confusion)
    assert iou.tolist() == pytest.approx([0.5, 0.0])
