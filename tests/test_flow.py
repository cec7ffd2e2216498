import numpy as np
import pytest
import torch

from dastc.errors import DataFileError
from dastc.flow.io import read_flow_int16_x10, read_flow_png, write_flow_png
from dastc.flow.warp import resize_flow, warp


def test_flow_png_round_trip_is_exact_on_the_64th_pixel_grid(tmp_path):
    rng = np.random.default_rng(0)
    flow = np.round(rng.uniform(-300, 300, (7, 9, 2)) * 64) / 64
    write_flow_png(tmp_path / "f.png", flow)
    np.testing.assert_array_equal(read_flow_png(tmp_path / "f.png"), flow.astype(np.float32))


def test_flow_png_rejects_out_of_range_and_bad_files(tmp_path):
    with pytest.raises(ValueError):
        write_flow_png(tmp_path / "f.png", np.full((2, 2, 2), 600.0))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataFileError, match="bad.png"):
        read_flow_png(tmp_path / "bad.png")
    with pytest.raises(DataFileError, match="missing.png is missing"):
        read_flow_png(tmp_path / "missing.png")


def test_reads_the_authors_int16_x10_files(tmp_path):
    raw = np.array([[[15, -20]]], dtype=np.int16)
    np.save(tmp_path / "000001_int16_x10.npy", raw)
    np.testing.assert_allclose(read_flow_int16_x10(tmp_path / "000001_int16_x10.npy"), [[[1.5, -2.0]]])


def test_warp_brings_a_shifted_previous_frame_onto_the_current_grid():
    # The current frame is the previous one moved 3 px right and 1 px down: current(x) = prev(x - (3, 1)),
    # so the flow on the current grid pointing into the previous frame is (-3, -1).
    prev = torch.rand(1, 2, 12, 16, dtype=torch.float64)
    current = torch.zeros_like(prev)
    current[..., 1:, 3:] = prev[..., :-1, :-3]
    flow = torch.zeros(1, 2, 12, 16, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = -3.0, -1.0
    warped = warp(prev, flow)
    torch.testing.assert_close(warped[..., 1:, 3:], current[..., 1:, 3:])
    assert warped[..., :1, :].abs().max() == 0  # sampled outside the previous frame: zeros


def test_resize_flow_scales_vectors_per_axis():
    flow = torch.ones(1, 2, 4, 8)
    out = resize_flow(flow, (8, 4))  # height x2, width x0.5
    assert out.shape == (1, 2, 8, 4)
    torch.testing.assert_close(out[:, 0], torch.full((1, 8, 4), 0.5))
    torch.testing.assert_close(out[:, 1], torch.full((1, 8, 4), 2.0))


def test_warp_resizes_the_flow_to_the_warped_map():
    prev = torch.arange(8.0, dtype=torch.float64).view(1, 1, 1, 8).expand(1, 1, 4, 8).contiguous()
    flow = torch.zeros(1, 2, 8, 16, dtype=torch.float64)
    flow[:, 0] = 2.0  # 2 px at twice the resolution = 1 px on the map
    torch.testing.assert_close(warp(prev, flow)[..., :7], prev[..., 1:])
