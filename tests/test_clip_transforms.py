import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dastc.data.clip_transforms import AugmentedClips, ClipAugment, resize_clip
from dastc.flow.warp import warp

H, W = 48, 64


def _texture(seed: int = 0) -> torch.Tensor:
    """A smooth random RGB texture [3, H, W] in [0, 1]: bilinear resampling barely changes it."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, H // 6, W // 6, generator=g, dtype=torch.float64)
    return F.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def _affine_flow() -> torch.Tensor:
    """A flow [1, 2, H, W] that varies over the image (so mirroring is tested, not only the sign)."""
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    return torch.stack((1.5 + 3.0 * xs / W, -1.0 + 2.0 * ys / H))[None]


def _moving_clip(frame0: torch.Tensor) -> dict:
    """Two frames where frame 1 = frame 0 warped by the flow: frame1(x) = frame0(x + flow(x))."""
    flow = _affine_flow()
    frame1 = warp(frame0[None], flow)[0]
    labels = torch.randint(0, 5, (2, H, W), generator=torch.Generator().manual_seed(1))
    labels[:, :4] = 255
    return {
        "frames": torch.stack((frame0, frame1)).float(),
        "labels": labels,
        "flow": flow.float(),
        "meta": {"dataset": "synthetic"},
    }


def _warp_error(clip: dict, valid: torch.Tensor) -> tuple[float, float]:
    """Mean |warp(frame 0, flow) - frame 1| and |frame 0 - frame 1| over ``valid`` [H, W] pixels."""
    frames = clip["frames"].double()
    warped = warp(frames[:1], clip["flow"].double())[0]
    err = (warped - frames[1]).abs().mean(0)[valid].mean().item()
    unwarped = (frames[0] - frames[1]).abs().mean(0)[valid].mean().item()
    return err, unwarped


def test_augmented_flow_still_warps_frame_0_onto_frame_1():
    augment = ClipAugment(crop_size=(40, 56), scale_range=(0.6, 1.5), hflip_p=0.5)
    clip = _moving_clip(_texture())
    # The same draw on an all-ones clip marks the pixels that came from inside both original frames.
    ones = _moving_clip(torch.ones(3, H, W, dtype=torch.float64))
    flips, scales = set(), set()
    for seed in range(8):
        out = augment(clip, np.random.default_rng(seed))
        mask = augment(ones, np.random.default_rng(seed))
        valid = (mask["frames"][1].min(0).values > 0.999) & (
            warp(mask["frames"][:1].double(), out["flow"].double())[0].min(0).values > 0.999
        )
        valid = -F.max_pool2d(-valid[None, None].float(), 5, 1, 2)[0, 0] > 0.5  # 2 px away from any edge
        assert valid.sum() > 200
        err, unwarped = _warp_error(out, valid)
        assert err < 0.01 and err < 0.15 * unwarped, (seed, err, unwarped)
        flips.add(bool(out["flow"][0, 0].mean() < 0))  # the flow's x is positive everywhere unless flipped
        scales.add(bool((mask["frames"][0] == 0).any()))  # padded: scaled below the crop
    assert flips == {True, False} and scales == {True, False}


def test_shapes_dtypes_and_label_values():
    clip = _moving_clip(_texture())
    out = ClipAugment(crop_size=(40, 56), scale_range=(0.5, 1.5))(clip, np.random.default_rng(3))
    assert out["frames"].shape == (2, 3, 40, 56) and out["frames"].dtype == torch.float32
    assert out["labels"].shape == (2, 40, 56) and out["labels"].dtype == torch.long
    assert out["flow"].shape == (1, 2, 40, 56) and out["flow"].dtype == torch.float32
    assert set(out["labels"].unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    assert out["meta"] == {"dataset": "synthetic"}
    assert clip["frames"].shape == (2, 3, H, W)  # the input clip is untouched


def test_one_draw_covers_every_frame_and_a_seed_reproduces_it():
    frame = _texture(2).float()
    clip = {"frames": frame.expand(3, 3, H, W).clone(), "labels": torch.zeros(3, H, W, dtype=torch.long)}
    augment = ClipAugment(crop_size=(32, 32), scale_range=(0.7, 1.3))
    for seed in range(4):
        out = augment(clip, np.random.default_rng(seed))
        assert torch.equal(out["frames"][0], out["frames"][1]) and torch.equal(
            out["frames"][0], out["frames"][2]
        )
        again = augment(clip, np.random.default_rng(seed))
        assert torch.equal(out["frames"], again["frames"])


def test_flip_mirrors_the_flow_field_and_negates_x():
    clip = _moving_clip(_texture())
    out = ClipAugment(hflip_p=1.0)(clip, np.random.default_rng(0))
    torch.testing.assert_close(out["frames"], clip["frames"].flip(-1))
    torch.testing.assert_close(out["labels"], clip["labels"].flip(-1))
    torch.testing.assert_close(out["flow"][:, 0], -clip["flow"][:, 0].flip(-1))
    torch.testing.assert_close(out["flow"][:, 1], clip["flow"][:, 1].flip(-1))


def test_scaling_multiplies_flow_vectors_and_padding_fills_ignore():
    clip = {
        "frames": torch.rand(2, 3, 10, 20),
        "labels": torch.ones(2, 10, 20, dtype=torch.long),
        "flow": torch.tensor([1.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, 10, 20).clone(),
    }
    doubled = ClipAugment(scale_range=(2.0, 2.0), hflip_p=0.0)(clip, np.random.default_rng(0))
    assert doubled["frames"].shape == (2, 3, 20, 40)
    torch.testing.assert_close(doubled["flow"][0, :, 2:-2, 2:-2].mean((1, 2)), torch.tensor([2.0, -2.0]))
    padded = ClipAugment(crop_size=(16, 24), scale_range=(0.5, 0.5), hflip_p=0.0)(
        clip, np.random.default_rng(0)
    )
    assert padded["frames"].shape == (2, 3, 16, 24)
    assert (padded["labels"] == 255).sum() == 2 * (16 * 24 - 5 * 10)
    assert (padded["labels"] == 1).sum() == 2 * 5 * 10
    assert padded["flow"][:, :, padded["labels"][1] == 255].abs().max() == 0


def test_single_frame_clip_and_clip_without_flow():
    clip = {"frames": torch.rand(1, 3, H, W), "flow": torch.zeros(0, 2, H, W)}
    out = ClipAugment(crop_size=(32, 32), scale_range=(0.8, 1.2))(clip, np.random.default_rng(0))
    assert out["frames"].shape == (1, 3, 32, 32) and out["flow"].shape == (0, 2, 32, 32)
    out = ClipAugment(crop_size=(32, 32))({"frames": torch.rand(2, 3, H, W)}, np.random.default_rng(0))
    assert set(out) == {"frames"}


def test_bad_clips_give_clear_errors():
    augment = ClipAugment(crop_size=(32, 32))
    rng = np.random.default_rng(0)
    with pytest.raises(
        ValueError, match=r"labels is \[2, 40, 64\] but frames \[2, 3, 48, 64\] need labels \[2, 48, 64\]"
    ):
        augment({"frames": torch.rand(2, 3, H, W), "labels": torch.zeros(2, 40, W, dtype=torch.long)}, rng)
    with pytest.raises(ValueError, match="flow"):
        augment({"frames": torch.rand(2, 3, H, W), "flow": torch.zeros(2, 2, H, W)}, rng)
    with pytest.raises(ValueError, match=r"\[T, 3, H, W\]"):
        augment({"frames": torch.rand(3, H, W)}, rng)
    with pytest.raises(ValueError, match="scale_range"):
        ClipAugment(scale_range=(1.5, 0.5))


def test_resize_clip_keeps_flow_consistent_with_the_frames():
    clip = _moving_clip(_texture())
    out = resize_clip(clip, (36, 80))
    assert out["frames"].shape == (2, 3, 36, 80) and out["labels"].shape == (2, 36, 80)
    assert set(out["labels"].unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    torch.testing.assert_close(out["flow"][0, 0].mean(), clip["flow"][0, 0].mean() * 80 / W)
    torch.testing.assert_close(out["flow"][0, 1].mean(), clip["flow"][0, 1].mean() * 36 / H)
    valid = torch.zeros(36, 80, dtype=torch.bool)
    valid[4:-4, 4:-10] = True  # away from the border that frame 1 sampled outside frame 0
    err, unwarped = _warp_error(out, valid)
    assert err < 0.01 and err < 0.15 * unwarped
    assert resize_clip(clip, (H, W))["frames"] is clip["frames"]


class _SameClip(torch.utils.data.Dataset):
    """Every index holds the same clip, so differences between indices come from the augmentation alone."""

    def __init__(self, n: int = 8):
        self.n, self.clip = n, _moving_clip(_texture())

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {**self.clip, "meta": {"index": index}}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("frames", "labels", "flow"))


def test_augmented_clips_draw_per_index_reproducibly():
    augment = ClipAugment(crop_size=(40, 56), scale_range=(0.7, 1.3), hflip_p=0.5)
    data = AugmentedClips(_SameClip(), augment, seed=3)
    first = [data[i] for i in range(len(data))]
    assert all(_same(a, data[i]) for i, a in enumerate(first))  # the same clip for the same index, every time
    assert first[5]["meta"] == {"index": 5} and first[5]["frames"].shape == (2, 3, 40, 56)
    # Different indices, draws and seeds draw differently.
    assert sum(_same(first[0], other) for other in first[1:]) == 0
    assert not _same(data.sample(2, draw=1), first[2]) and _same(data.sample(2, draw=0), first[2])
    assert not _same(AugmentedClips(_SameClip(), augment, seed=4)[0], first[0])
    # Loader workers rebuild exactly the clips of the main process.
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2)
    assert all(_same(a, b) for a, b in zip(first, loader, strict=True))


def test_augmented_clips_class_index_label_is_the_readers():
    data = AugmentedClips(_SameClip(), ClipAugment(hflip_p=1.0), seed=0)
    np.testing.assert_array_equal(data.current_label(1), _SameClip()[1]["labels"][-1].numpy())
