import pytest
import torch
import torchvision
from hydra.utils import instantiate
from torch import nn

from dastc.config import compose_config
from dastc.errors import DastcError
from dastc.models.deeplabv2 import DeepLabV2, FrozenBatchNorm2d
from dastc.models.input_norm import CAFFE_BGR_MEAN, InputNorm
from dastc.models.output import SegmentationOutput
from dastc.models.video import ACCEL
from dastc.models.weights import read_resnet_state_dict

SMALL_BACKBONES = {
    "accel": ["backbone=accel", "backbone.depth=18"],
    "accel_aspp": ["backbone=accel", "backbone.depth=18", "backbone.head=aspp"],
    "accel_resnet50": ["backbone=accel", "backbone.depth=50", "backbone.shallow_split=layer2"],
    "deeplabv3plus": ["backbone=deeplabv3plus", "backbone.encoder_name=resnet18"],
    "segformer": ["backbone=segformer", "backbone.encoder_name=mit_b0"],
    "smp_unet": ["backbone=smp_unet"],
    "smp_unet_fused": ["backbone=smp_unet", "backbone.temporal=flow_fusion"],
}


def build(name, classes=5):
    cfg = compose_config("train", SMALL_BACKBONES[name])
    cfg.backbone.num_classes = classes
    torch.manual_seed(0)
    return instantiate(cfg.backbone)


@pytest.mark.parametrize("name", sorted(SMALL_BACKBONES))
def test_every_backbone_fits_the_video_interface(name):
    model = build(name).eval()
    frames, flow = torch.rand(2, 3, 3, 64, 96), torch.randn(2, 2, 2, 64, 96)
    with torch.no_grad():
        out = model(frames, flow)
        assert isinstance(out, SegmentationOutput)
        assert out.logits.shape[:2] == (2, 5)
        assert out.features.shape[0] == 2 and out.features.ndim == 4
        assert out.features.shape[-1] <= out.logits.shape[-1]
        if name.startswith("accel"):
            assert out.aux_logits.shape == out.logits.shape
            assert out.logits.shape[-2:] == (9, 13)  # output stride 8 with ceil-mode pooling
        # Splitting at the shallow stage and continuing gives the same prediction.
        shallow = model.encode_shallow(frames)
        assert all(s.shape[:2] == (2, 3) for s in shallow)
        again = model(frames, flow, shallow=shallow)
        torch.testing.assert_close(again.logits, out.logits)
    groups = model.param_groups()
    assert {id(p) for g in groups.values() for p in g} == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("classes,expected", [(12, 61_821_328), (15, 61_932_862)])
def test_accel_resnet101_parameter_count_equals_method_md(classes, expected):
    model = ACCEL(DeepLabV2(classes, depth=101))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_frozen_batch_norm_never_changes_in_train_mode():
    net = DeepLabV2(4, depth=18)
    net.train()
    bn_before = {k: v.clone() for k, v in net.state_dict().items() if "bn" in k or "downsample.1" in k}
    conv_before = net.trunk.conv1.weight.clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    out = net(torch.rand(2, 3, 48, 64))
    (out.logits.square().mean() + out.aux_logits.square().mean()).backward()
    optimizer.step()
    for key, value in net.state_dict().items():
        if key in bn_before:
            assert torch.equal(value, bn_before[key]), key
    assert not torch.equal(net.trunk.conv1.weight, conv_before)
    assert all(isinstance(m, FrozenBatchNorm2d) for m in net.modules() if isinstance(m, nn.BatchNorm2d))


class ChannelsAsLogits(nn.Module):
    """A frame network whose logits are its input image: isolates what ACCEL itself does."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return SegmentationOutput(logits=x * self.scale)

    def param_groups(self):
        return {"backbone": [], "head": [self.scale]}


def test_accel_fusion_starts_as_the_current_frame():
    model = build("accel")
    frames, flow = torch.rand(1, 2, 3, 64, 96), torch.randn(1, 1, 2, 64, 96) * 3
    model.eval()
    with torch.no_grad():
        out = model(frames, flow)
        torch.testing.assert_close(out.logits, out.branch_logits["current"])
        torch.testing.assert_close(out.logits, model.frame_net(frames[:, -1]).logits)


def test_accel_warps_the_previous_scores_by_the_flow():
    model = ACCEL(ChannelsAsLogits())
    with torch.no_grad():  # fuse = the warped previous frame only
        model.fusion.weight.zero_()
        model.fusion.weight[:, 3:, 0, 0] = torch.eye(3)
    previous = torch.rand(1, 3, 10, 12)
    current = torch.zeros_like(previous)
    current[..., 2:, :-1] = previous[..., :-2, 1:]  # content moved 1 px left and 2 px down
    flow = torch.zeros(1, 1, 2, 10, 12)
    flow[:, :, 0], flow[:, :, 1] = 1.0, -2.0  # current grid -> previous frame
    out = model(torch.stack((previous, current), 1), flow)
    torch.testing.assert_close(out.logits[..., 2:, :-1], current[..., 2:, :-1])
    # Rows that come from outside the previous frame read 0 (up to float rounding of the sampling grid).
    torch.testing.assert_close(out.logits[..., :2, :], torch.zeros(1, 3, 2, 12), atol=1e-6, rtol=0)
    assert not out.branch_logits["previous_warped"].requires_grad  # the previous branch has no gradient
    assert out.logits.requires_grad


def test_accel_needs_flow_for_two_frames_and_skips_fusion_for_one():
    model = ACCEL(ChannelsAsLogits())
    with pytest.raises(ValueError, match="flow"):
        model(torch.rand(1, 2, 3, 4, 4))
    single = torch.rand(1, 1, 3, 4, 4)
    torch.testing.assert_close(model(single).logits, single[:, 0])


def test_torchvision_resnet_weights_round_trip(tmp_path):
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    net = DeepLabV2(4, depth=18, pretrained=str(tmp_path / "resnet18.pth"))
    loaded = net.trunk.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key


def test_caffe_deeplab_weights_drop_prefix_and_classifier(tmp_path):
    state = {
        f"Scale.{k}": v
        for k, v in torchvision.models.resnet18().state_dict().items()
        if not k.startswith("fc")
    }
    state["Scale.layer5.conv2d_list.0.weight"] = torch.zeros(21, 2048, 3, 3)
    torch.save(state, tmp_path / "DeepLab_resnet_pretrained_imagenet.pth")
    read = read_resnet_state_dict(tmp_path / "DeepLab_resnet_pretrained_imagenet.pth", "caffe")
    assert "conv1.weight" in read and not any(k.startswith("layer5") for k in read)
    net = DeepLabV2(
        4,
        depth=18,
        pretrained=str(tmp_path / "DeepLab_resnet_pretrained_imagenet.pth"),
        weights_format="caffe",
    )
    assert torch.equal(net.trunk.conv1.weight, state["Scale.conv1.weight"])
    assert net.input_norm.style == "caffe"


def test_missing_weights_file_is_one_clear_sentence(tmp_path):
    with pytest.raises(DastcError) as info:
        DeepLabV2(4, depth=101, pretrained=str(tmp_path / "resnet101-63fe2227.pth"))
    message = str(info.value)
    assert (
        "not found" in message and "download.pytorch.org" in message and "backbone.pretrained=null" in message
    )
    assert "\n" not in message


def test_input_normalisation_follows_the_weights():
    x = torch.rand(1, 3, 2, 2)
    caffe = InputNorm("caffe")(x)
    expected = x.flip(1) * 255 - torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(caffe, expected)
    tv = InputNorm("torchvision")(torch.full((1, 3, 1, 1), 0.485))
    assert tv[0, 0].item() == pytest.approx(0.0, abs=1e-6)


def test_smp_teacher_copy_is_independent_of_the_student():
    import copy

    student = build("smp_unet").eval()
    teacher = copy.deepcopy(student)
    frames = torch.rand(1, 1, 3, 32, 64)
    before = teacher(frames).logits.detach().clone()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    torch.testing.assert_close(teacher(frames).logits, before)


def test_group_norm_option_leaves_no_running_statistics_to_blend_domains():
    from dastc.models.smp_segmenter import SmpSegmenter

    net = SmpSegmenter(5, encoder_depth=3, decoder_channels=[64, 32, 16], norm="group")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules())
    assert {n for n, _ in net.named_buffers()} <= {"input_norm.mean", "input_norm.std"}
    frames = torch.rand(2, 3, 32, 64)
    net.train()
    before = net(frames).logits.detach()
    net(torch.rand(2, 3, 32, 64) * 5)  # a pass over very different clips changes nothing kept
    net.eval()
    torch.testing.assert_close(net(frames).logits, before)  # train and eval mode agree
    with pytest.raises(ValueError, match="backbone.norm"):
        SmpSegmenter(5, norm="instance")
