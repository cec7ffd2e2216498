"""TPS's recipe as its released code runs it: PIL's Gaussian blur, the student's rescaled target pair, the student
as its own pseudo-labeller, and each method's lambda_T / strong augmentation per benchmark."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn

from dastc.build import build_datamodule, build_method
from dastc.config import compose_config
from dastc.methods.ema import EMATeacher
from dastc.methods.tps import TPS, strong_photometric


def _pil_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float64)


def _levels(images: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] in [0, 1] -> [H, W, 3] 8-bit levels, rounded as PIL stores them."""
    return (images[0].permute(1, 2, 0) * 255).round().double().numpy()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("sigma", [5, 7, 9])
def test_blur_is_pils_gaussian_blur_of_that_sigma(image, sigma):
    from dastc.methods.target_augment import gaussian_blur

    difference = np.abs(_levels(gaussian_blur(_tensor(image), sigma)) - _pil_blur(image, sigma))
    # PIL approximates the Gaussian by three box blurs of the same variance, rounding to 8 bits after each
    # pass: inside the image we agree to a level. At the borders PIL extends the edge pixels per box pass
    # where we pad the Gaussian once; the mean over the whole image stays far below a level and a half.
    m = 3 * sigma
    assert difference[m:-m, m:-m].max() <= 2 and difference[m:-m, m:-m].mean() < 0.5
    assert difference.mean() < 1.5


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_blur_stays_on_the_frames_device_in_their_precision_under_autocast(image, device):
    from dastc.methods.target_augment import gaussian_blur

    frames = _tensor(image).repeat(3, 1, 1, 1)
    expected = gaussian_blur(frames, 7)
    with torch.autocast(device, dtype=torch.bfloat16):  # as in a bf16-mixed training step
        out = gaussian_blur(frames.to(device), 7)
    assert out.device.type == device and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), expected, atol=1e-5, rtol=0)


def test_the_strong_augmentations_blur_is_one_of_pils_5_7_9(image):
    augment = strong_photometric(blur_p=1.0, jitter_p=0.0, gray_p=0.0)
    for seed in range(3):
        torch.manual_seed(seed)
        ours = _levels(augment(_tensor(image)))
        best = min(np.abs(ours - _pil_blur(image, sigma)).mean() for sigma in (5, 7, 9))
        assert best < 1.5, f"seed {seed}: {best:.2f} levels from PIL's GaussianBlur(5 / 7 / 9)"


class _Tiny(nn.Module):
    def forward(self, frames, flow=None):
        return frames


def _tps(**kwargs) -> TPS:
    return TPS(_Tiny(), num_classes=2, class_names=["a", "b"], **kwargs)


def test_the_strong_augmentation_is_configurable_and_replays_from_the_global_rng(image):
    params = {"blur_p": 1.0, "blur_sigmas": [5], "jitter_p": 0.0, "gray_p": 0.0}
    clip = _tensor(image).repeat(3, 1, 1, 1)  # a clip of three frames
    out = _tps(strong_aug_params=params).augment(clip)
    from dastc.methods.target_augment import gaussian_blur

    torch.testing.assert_close(out, gaussian_blur(clip, 5))
    augment = _tps().augment  # the defaults: blur 0.6, jitter 0.8, grayscale 0.2
    draws = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        draws.append(augment(clip))
    torch.testing.assert_close(draws[0], draws[1])  # a resumed run (same RNG state) draws the same
    assert not torch.equal(draws[0], draws[2])


def test_rescaled_sides_are_tps_multiples_of_8():
    from dastc.methods.target_augment import scaled_size

    # round(512 x 0.81 / 8) = round(51.84) = 52 -> 416; round(1024 x 0.81 / 8) = round(103.68) = 104 -> 832
    assert scaled_size(512, 1024, 0.81) == (416, 832)
    assert scaled_size(512, 1024, 1.19) == (608, 1216) and scaled_size(512, 1024, 0.8) == (408, 816)


def test_the_rescale_ratio_is_randint_80_120_over_100():
    from dastc.methods.target_augment import draw_scale

    torch.manual_seed(0)
    ratios = {draw_scale(0.8, 1.2) for _ in range(2000)}
    assert ratios == {r / 100 for r in range(80, 120)}  # 0.80 ... 1.19, as numpy's randint(80, 120) / 100


def _target(height=64, width=128):
    frames = torch.rand(2, 1, 3, height, width).repeat(1, 3, 1, 1, 1)  # (t-2, t-1, t) identical
    return {"frames": frames, "flow": torch.randn(2, 2, 2, height, width)}


def test_the_students_pair_is_rescaled_by_one_ratio_the_flow_kept():
    from dastc.methods.target_augment import draw_scale, scaled_size

    method, target = _tps(), _target()
    sizes = set()
    for seed in range(6):
        torch.manual_seed(seed)
        view = method.student_view(target, target["frames"])
        torch.manual_seed(seed)
        size = scaled_size(64, 128, draw_scale(0.8, 1.2))
        assert view["frames"].shape == (2, 2, 3, *size)  # both frames, one size
        torch.testing.assert_close(view["frames"][:, 0], view["frames"][:, 1])  # the same resize
        expected = F.interpolate(target["frames"][:, 2], size=size, mode="bilinear", align_corners=True)
        torch.testing.assert_close(view["frames"][:, 1], expected)
        assert torch.equal(view["flow"], target["flow"][:, 1:])  # the pseudo-labels' grid
        sizes.add(size)
    assert len(sizes) > 1
    image = {"frames": target["frames"][:, :1], "flow": None}
    torch.manual_seed(0)
    view = method.student_view(image, image["frames"])
    assert view["frames"].shape[:3] == (2, 1, 3) and view["frames"].shape[-2:] != (64, 128)
    assert view["flow"] is None
    unscaled = _tps(rescale=None).student_view(target, target["frames"])
    assert unscaled["frames"].shape[-2:] == (64, 128)


def test_a_tps_step_feeds_the_student_a_rescaled_target_pair(data_dir):
    cfg = compose_config(
        "train", [f"paths.data_dir={data_dir}", "method=tps", "dataset.schedule.warmup_steps=0"]
    )
    method = build_method(cfg, build_datamodule(cfg))
    seen = []
    method.student.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    source = {
        "frames": torch.rand(1, 2, 3, 64, 128),
        "flow": torch.zeros(1, 1, 2, 64, 128),
        "labels": torch.randint(0, 8, (1, 2, 64, 128)),
    }
    target = {"frames": torch.rand(1, 3, 3, 64, 128), "flow": _target()["flow"][:1]}
    batch = {"source": source, "target": target}
    for seed in range(2):
        torch.manual_seed(seed)
        losses = method.training_losses(batch)
        assert all(torch.isfinite(v) for v in losses.values())
    rescaled = [s for s in seen if s != (64, 128)]
    assert rescaled and all(h % 8 == 0 and w % 8 == 0 for h, w in rescaled)


@pytest.mark.parametrize("method_name", ["tps", "dastc"])
def test_per_frame_pseudo_labels_are_the_teachers_own_prediction_of_each_frame(data_dir, method_name):
    cfg = compose_config(
        "train",
        [
            f"paths.data_dir={data_dir}",
            f"method={method_name}",
            "method.pseudo_labels=per_frame",
            "method.flip_prob=0",
        ],
    )
    method = build_method(cfg, build_datamodule(cfg)).eval()
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 3, 64, 128)
    # a flow that would move everything: per-frame labels must not use it
    target = {"frames": frames, "flow": torch.full((2, 2, 2, 64, 128), 7.0)}
    pseudo = method.pseudo_labels(target)
    assert pseudo.labels.shape == (2, 2, 64, 128)
    with torch.no_grad():
        for k, frame in enumerate((1, 2)):  # t-1, then t: the teacher on that frame alone
            logits = method.teacher(frames[:, frame : frame + 1], None).logits
            probs = F.interpolate(logits, size=(64, 128), mode="bilinear", align_corners=True).softmax(1)
            assert torch.equal(pseudo.labels[:, k], probs.argmax(1))
            torch.testing.assert_close(pseudo.confidence[:, k], probs.max(1).values)
    with pytest.raises(Exception, match="method.pseudo_labels must be 'temporal' or 'per_frame'"):
        build_method(
            *(lambda c: (c, build_datamodule(c)))(
                compose_config(
                    "train", [f"paths.data_dir={data_dir}", "method=tps", "method.pseudo_labels=both"]
                )
            )
        )


def test_tps_labels_with_the_student_itself_and_dastc_with_a_mean_teacher():
    for benchmark in ("synthia", "viper"):
        tps = compose_config("train", [f"dataset={benchmark}", "method=tps"]).method
        dastc = compose_config("train", [f"dataset={benchmark}", "method=dastc"]).method
        assert tps.teacher.mode == dastc.teacher.mode == "ema"
        assert tps.teacher.momentum == 0.0 and dastc.teacher.momentum == 0.999
        assert list(tps.rescale) == list(dastc.rescale) == [0.8, 1.2]
    # Momentum 0: after each optimiser step the teacher is the student, in eval mode.
    student = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Dropout(0.5))
    teacher = EMATeacher(student, momentum=0.0)
    with torch.no_grad():
        student[0].weight.add_(1.0)
    teacher.update(student)
    torch.testing.assert_close(teacher.model.state_dict(), student.state_dict())
    assert not teacher.train().model.training


@pytest.mark.parametrize(
    "benchmark,method,lambda_target,strong",
    [
        ("synthia", "tps", 1.0, True),
        ("synthia", "dastc", 1.0, True),
        ("viper", "tps", 0.1, True),  # TPS on VIPER keeps the strong augmentation
        ("viper", "dastc", 0.2, False),  # the authors' released DA-STC loop
    ],
)
def test_each_method_reads_its_own_lambda_and_strong_augmentation(benchmark, method, lambda_target, strong):
    cfg = compose_config("train", [f"dataset={benchmark}", f"method={method}"])
    assert cfg.method.lambda_target == cfg.dataset.schedule[method].lambda_target == lambda_target
    assert cfg.method.strong_aug == cfg.dataset.schedule[method].strong_target_aug == strong


@pytest.mark.parametrize("benchmark", ["synthia", "viper"])
def test_the_paper_benchmarks_do_not_mirror_clips_as_the_reference_loaders(benchmark):
    dataset = compose_config("train", [f"dataset={benchmark}"]).dataset
    assert dataset.source.augment.hflip_p == 0.0 and dataset.target.augment.hflip_p == 0.0
