import cv2
import numpy as np
import pytest
import torch

from dastc.errors import CheckpointError, DataFileError
from dastc.flow.estimate_files import estimate_flow_files
from dastc.flow.estimators import DISFlow, RAFTFlow, build_estimator
from dastc.flow.io import read_flow_png
from dastc.flow.warp import warp

SHIFT = (
    3,
    -2,
)  # (dx, dy): the current frame's content sits 3 px right of and 2 px above the previous frame's


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture (blurred noise, contrast stretched) that flow estimators can lock onto."""
    noise = np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)
    smooth = (cv2.GaussianBlur(noise, (0, 0), 2.0) - 127.5) * 6 + 127.5
    return np.clip(smooth, 0, 255).astype(np.uint8)


def _translated_pair(h: int = 96, w: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(current, previous) with current(x) = previous(x - SHIFT): the true flow into previous is -SHIFT."""
    dx, dy = SHIFT
    big = _texture(h + 20, w + 20, seed)
    previous = big[10 : 10 + h, 10 : 10 + w]
    current = big[10 - dy : 10 - dy + h, 10 - dx : 10 - dx + w]
    return np.ascontiguousarray(current), np.ascontiguousarray(previous)


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double()


def test_dis_recovers_a_translation_in_the_backward_orientation():
    current, previous = _translated_pair()
    flow = DISFlow("medium")(current, previous)
    assert flow.shape == (96, 128, 2) and flow.dtype == np.float32
    interior = flow[8:-8, 8:-8].reshape(-1, 2)
    np.testing.assert_allclose(np.median(interior, axis=0), [-SHIFT[0], -SHIFT[1]], atol=1.0)
    # Warping the previous frame with the flow must rebuild the current frame (orientation check).
    warped = warp(_chw(previous), _chw(flow))
    err_warped = (warped - _chw(current))[..., 8:-8, 8:-8].abs().mean()
    err_unwarped = (_chw(previous) - _chw(current))[..., 8:-8, 8:-8].abs().mean()
    assert err_warped < 0.1 * err_unwarped


def test_dis_rejects_bad_presets_and_mismatched_frames():
    with pytest.raises(ValueError, match="preset"):
        DISFlow("slow")
    with pytest.raises(ValueError, match="differ in size"):
        DISFlow()(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))
    assert isinstance(build_estimator("dis", preset="fast"), DISFlow)


def _write_pairs(root, n: int = 3) -> list[tuple]:
    pairs = []
    for i in range(n):
        current, previous = _translated_pair(48, 64, seed=i)
        cv2.imwrite(str(root / f"{i}_cur.png"), current[..., ::-1])
        cv2.imwrite(str(root / f"{i}_prev.png"), previous[..., ::-1])
        pairs.append((root / f"{i}_cur.png", root / f"{i}_prev.png", root / "flow" / "sub" / f"{i}.png"))
    return pairs


def test_estimate_flow_files_writes_skips_and_overwrites(tmp_path):
    pairs = _write_pairs(tmp_path)
    estimator = DISFlow("medium")
    assert estimate_flow_files(pairs, estimator, progress=False) == (3, 0)
    flow = read_flow_png(pairs[0][2])  # round-trips through the PNG reader
    expected = estimator(
        cv2.imread(str(pairs[0][0]))[..., ::-1].copy(), cv2.imread(str(pairs[0][1]))[..., ::-1].copy()
    )
    np.testing.assert_allclose(flow, expected, atol=1 / 128)
    assert np.median(flow[6:-6, 6:-6].reshape(-1, 2), axis=0) == pytest.approx([-3, 2], abs=1.0)

    assert estimate_flow_files(pairs, estimator, progress=False) == (0, 3)  # resumable
    write_flow = pairs[1][2]
    write_flow.write_bytes(b"stale")
    assert estimate_flow_files(pairs, estimator, overwrite=True, progress=False) == (3, 0)
    assert read_flow_png(write_flow).shape == (48, 64, 2)
    assert not [
        p for p in (tmp_path / "flow" / "sub").iterdir() if p.name.startswith(".")
    ]  # no temp files left


def test_estimate_flow_files_scale_writes_the_reduced_size(tmp_path):
    pairs = _write_pairs(tmp_path, n=1)
    estimate_flow_files(pairs, DISFlow(), scale=0.5, progress=False)
    assert read_flow_png(pairs[0][2]).shape == (24, 32, 2)


def test_estimate_flow_files_names_a_missing_frame(tmp_path):
    pairs = _write_pairs(tmp_path, n=1)
    missing = (tmp_path / "nope.png", pairs[0][1], tmp_path / "out.png")
    with pytest.raises(DataFileError, match="nope.png"):
        estimate_flow_files([missing], DISFlow(), progress=False)
    with pytest.raises(DataFileError, match="nope.png"):
        estimate_flow_files([*pairs, missing], DISFlow(), workers=2, progress=False)
    assert not (tmp_path / "out.png").exists()


def test_a_failed_write_leaves_no_file(tmp_path):
    pairs = _write_pairs(tmp_path, n=1)

    def wild(current, previous):  # beyond the PNG's +-512 px range
        return np.full(current.shape[:2] + (2,), 1000.0, np.float32)

    with pytest.raises(ValueError, match="exceeds"):
        estimate_flow_files(pairs, wild, progress=False)
    assert not (tmp_path / "flow" / "sub").exists() or not list((tmp_path / "flow" / "sub").iterdir())


def test_workers_give_the_same_flows_as_the_main_process(tmp_path):
    pairs = _write_pairs(tmp_path, n=4)
    serial = [(c, p, tmp_path / "serial" / o.name) for c, p, o in pairs]
    pooled = [(c, p, tmp_path / "pooled" / o.name) for c, p, o in pairs]
    assert estimate_flow_files(serial, DISFlow(), progress=False) == (4, 0)
    assert estimate_flow_files(pooled, DISFlow(), workers=2, progress=False) == (4, 0)
    for (_, _, a), (_, _, b) in zip(serial, pooled, strict=True):
        np.testing.assert_array_equal(read_flow_png(a), read_flow_png(b))


def test_raft_missing_weights_say_which_file_to_get(tmp_path):
    with pytest.raises(CheckpointError, match=r"raft_large_C_T_SKHT_V2-.*\.pth"):
        RAFTFlow(tmp_path / "raft_large.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pth"):
        RAFTFlow(tmp_path / "junk.pth", model="small")


def test_raft_runs_with_local_weights_and_pads_to_multiples_of_8(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    torch.save(raft_small(weights=None).state_dict(), tmp_path / "raft_small.pth")
    estimator = RAFTFlow(tmp_path / "raft_small.pth", model="small", num_flow_updates=1)
    current, previous = _translated_pair(60, 90)  # neither side a multiple of 8
    flow = estimator(current, previous)
    assert flow.shape == (60, 90, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


def test_estimators_that_are_not_parallel_safe_run_in_this_process(tmp_path):
    pairs = _write_pairs(tmp_path, n=2)
    calls = []

    def in_process(current, previous):  # a closure: could not even be sent to a worker process
        calls.append(current.shape)
        return np.zeros(current.shape[:2] + (2,), np.float32)

    assert estimate_flow_files(pairs, in_process, workers=2, progress=False) == (2, 0)
    assert calls == [(48, 64, 3)] * 2
