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


def test_16_and_13_class_means_on_a_hand_made_confusion_matrix(tmp_path):
    """SYNTHIA images (docs/benchmarks.md, Image benchmarks): 16 classes scored, also reported over 13 (no
    wall, fence, pole)."""
    from torch import nn

    from dastc.methods.source_only import SourceOnly
    from dastc.report import csv_table, markdown_table, write_metrics

    names = [f"c{i}" for i in range(16)]
    thirteen = [c for c in range(16) if c not in (3, 4, 5)]
    method = SourceOnly(nn.Identity(), 16, names, report_subsets={"mIoU13": thirteen})
    logged = {}
    method.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    method.log_dict = lambda values, **kwargs: logged.update(values)
    labels = torch.arange(16).repeat_interleave(4)  # 4 pixels of each class
    prediction = labels.clone()
    prediction[labels == 3] = 4  # wall all called fence: IoU(wall) = 0, IoU(fence) = 4 / 8
    prediction[(labels == 5).nonzero()[:2, 0]] = 0  # half the pole pixels called road: pole 2/4, road 4/6
    method.val_confusion[0].update(prediction[None, :, None], labels[None, :, None])
    method.on_validation_epoch_end()
    result = method.last_val_metrics["target"]
    iou = {**{c: 100.0 for c in range(16)}, 0: 400 / 6, 3: 0.0, 4: 50.0, 5: 50.0}
    assert result["IoU"] == pytest.approx({f"c{c}": v for c, v in iou.items()})
    assert result["mIoU"] == pytest.approx(sum(iou.values()) / 16)
    assert result["mIoU13"] == pytest.approx(sum(iou[c] for c in thirteen) / 13)  # 12 x 100 + 66.67 over 13
    assert logged["val/mIoU13"] == result["mIoU13"] and logged["val/mIoU"] == result["mIoU"]
    metrics = method.last_val_metrics
    assert csv_table(metrics).splitlines()[-2:] == [
        f"mIoU,{result['mIoU']:.4f}",
        f"mIoU13,{result['mIoU13']:.4f}",
    ]
    assert markdown_table(metrics).splitlines()[0].endswith("| mIoU | mIoU13 |")
    write_metrics(tmp_path, metrics, {"dataset": "synthia_image"})
    assert f"{result['mIoU13']:.2f}" in (tmp_path / "metrics.md").read_text()


def test_report_subsets_must_list_scored_classes(make_cfg):
    from dastc.build import build_datamodule
    from dastc.cli import find_user_error
    from dastc.errors import ConfigError

    with pytest.raises(Exception) as raised:  # noqa: B017 - Hydra wraps it; the ConfigError is behind
        build_datamodule(make_cfg("+dataset.report_subsets.mIoU3=[0,1,9]"))
    assert isinstance(find_user_error(raised.value), ConfigError)
    assert "dataset.report_subsets.mIoU3 must" in str(find_user_error(raised.value))
