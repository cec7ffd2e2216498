"""Category-aware spatio-temporal feature alignment (docs/method.md, Category-aware alignment).

Per domain, confidence-weighted per-class aggregates of the deep features over every pixel of every frame of
the clips; then intra-class alignment (1 - cos between a class's source and target aggregates) and inter-class
separation (InfoNCE over class aggregates, or a margin on their cosine) over the classes present in both
domains. Absent classes drop out; with too few classes a loss is 0, never NaN. ``mmd_loss`` is the authors'
released form (multi-kernel RBF MMD between class-mean matrices).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed.nn.functional
import torch.nn.functional as F


def all_ranks_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over DDP ranks that gradients flow through: each rank's pixels get the gradient of the loss of the
    global aggregates (with DDP's gradient averaging, exactly the single-process gradient of the global batch)."""
    return torch.distributed.nn.functional.all_reduce(tensor)


def class_aggregates(
    features: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    num_classes: int,
    min_pixels: int = 5,
    ignore_index: int = 255,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class weighted means of ``features`` [N, D, h, w] over all pixels of all N frames.

    ``labels`` [N, h, w] (at the feature resolution; ``ignore_index`` skipped), ``weights`` [N, h, w] (the
    pixels' confidences; None: 1). Returns ``means`` [C, D] and ``present`` [C] (at least ``min_pixels``
    pixels with positive weight); absent classes have zero means. ``reduce`` sums the per-class sums, weights
    and pixel counts over DDP ranks (``all_ranks_sum``), so that the means are those of every rank's clips.
    """
    d = features.shape[1]
    flat = features.permute(0, 2, 3, 1).reshape(-1, d)
    labels = labels.reshape(-1)
    w = torch.ones_like(labels, dtype=flat.dtype) if weights is None else weights.reshape(-1).to(flat.dtype)
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes) & (w > 0)
    flat, labels, w = flat[valid], labels[valid], w[valid]
    sums = flat.new_zeros(num_classes, d).index_add_(0, labels, flat * w[:, None])
    total = flat.new_zeros(num_classes).index_add_(0, labels, w)
    counts = torch.bincount(labels, minlength=num_classes).to(flat.dtype)
    if reduce is not None:
        sums, total, counts = reduce(sums), reduce(total), reduce(counts)
    present = counts >= min_pixels
    means = sums / total.clamp(min=1e-12)[:, None]
    return means * present[:, None], present


def intra_class_loss(source: torch.Tensor, target: torch.Tensor, both: torch.Tensor) -> torch.Tensor:
    """Mean over classes present in both domains of 1 - cos(mu_s^c, mu_t^c); 0 when none is."""
    if not both.any():
        return source.sum() * 0.0
    return (1.0 - F.cosine_similarity(source[both], target[both], dim=1)).mean()


def inter_class_loss(
    source: torch.Tensor,
    target: torch.Tensor,
    both: torch.Tensor,
    kind: str = "infonce",
    temperature: float = 0.1,
    margin: float = 0.0,
) -> torch.Tensor:
    """Separation of different classes' aggregates, over classes present in both domains (0 below two).

    ``infonce``: each source aggregate must pick its own class among the target aggregates (and vice versa),
    logits cos / temperature. ``margin``: mean of relu(cos - margin) over pairs of different classes, both
    domains' aggregates pooled.
    """
    if int(both.sum()) < 2:
        return source.sum() * 0.0
    s, t = F.normalize(source[both], dim=1), F.normalize(target[both], dim=1)
    if kind == "infonce":
        logits = s @ t.T / temperature
        labels = torch.arange(len(s), device=s.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    if kind == "margin":
        pooled = F.normalize(s + t, dim=1)
        cos = pooled @ pooled.T
        off = ~torch.eye(len(pooled), dtype=torch.bool, device=cos.device)
        return F.relu(cos[off] - margin).mean()
    raise ValueError(f"method.align.inter must be 'infonce' or 'margin', got {kind!r}")


def gaussian_kernel_sum(x: torch.Tensor, y: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5):
    """Sum of ``kernel_num`` RBF kernels over [x; y], bandwidths spaced by ``kernel_mul`` around the mean
    pairwise squared distance (the DAN/ADVENT formulation the authors' code uses)."""
    total = torch.cat((x, y), 0)
    n = total.shape[0]
    distances = (total[:, None, :] - total[None, :, :]).pow(2).sum(-1)
    bandwidth = distances.sum() / (n * n - n)
    bandwidth = bandwidth / kernel_mul ** (kernel_num // 2)
    return sum(torch.exp(-distances / (bandwidth * kernel_mul**i)) for i in range(kernel_num))


def mmd_loss(source: torch.Tensor, target: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5):
    """Multi-kernel MMD between two equally sized sets of rows (e.g. class-mean logit vectors)."""
    n = source.shape[0]
    if n == 0 or target.shape[0] != n:
        return source.sum() * 0.0
    k = gaussian_kernel_sum(source, target, kernel_mul, kernel_num)
    return (k[:n, :n] + k[n:, n:] - k[:n, n:] - k[n:, :n]).mean()
