"""Measurement helpers shared by the benchmark scripts (scripts/benchmark_model.py, scripts/benchmark_train.py):
the device's name, synchronisation, peak memory and the device's peak arithmetic throughput for MFU."""

from __future__ import annotations

import platform
import resource

import torch

# Dense peak TFLOP/s per GPU from the vendors' data sheets: (bf16 tensor core, tf32 tensor core). fp32 training
# runs its convolutions in TF32 on these GPUs (PyTorch's cuDNN default), so tf32 is its peak.
GPU_PEAK_TFLOPS = {
    "H200": (989.4, 494.7),
    "H100 SXM": (989.4, 494.7),
    "H100 80GB HBM3": (989.4, 494.7),  # how the SXM part names itself
    "H100 PCIe": (756.5, 378.0),
    "H100 NVL": (835.5, 417.5),
    "A100": (312.0, 156.0),
    "L40S": (362.1, 183.2),
    "A10": (125.0, 62.5),
}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def peak_tflops(device: str, precision: str) -> float | None:
    """The device's dense peak for ``precision`` (a Lightning precision: bf16-mixed, 32-true ...), or None
    when it is not in the table (CPUs: pass ``--peak-tflops`` to the script to get an MFU)."""
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, (bf16, tf32) in GPU_PEAK_TFLOPS.items():
        if key in name:
            return bf16 if precision.startswith("bf16") else tf32
    return None


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device: str) -> float:
    """CUDA: peak allocated memory of this process; CPU: its peak resident set size (libraries included)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
