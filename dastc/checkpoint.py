"""Finding, checking and loading checkpoints of dastc runs.

Writes are atomic already: Lightning saves into a temporary file and renames it into place (an fsspec
transaction), so a run killed while saving keeps its previous ``last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from dastc.errors import CheckpointError


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint file that ``ckpt_path`` names: a file, a run directory (its ``checkpoints/last.ckpt``)
    or ``last`` (``paths.output_dir``'s ``checkpoints/last.ckpt``)."""
    if ckpt_path in (None, ""):
        return None
    if str(ckpt_path) == "last":
        path = Path(output_dir) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(
                f"ckpt_path=last found no {path}; pass the run to continue, ckpt_path=RUN_DIR, "
                "or its directory as paths.output_dir"
            )
        return path
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def run_dir_for(ckpt_path: str | None, default: str) -> str:
    """The run directory a run writes to: the resumed run's own when continuing one, else ``default``."""
    if ckpt_path in (None, "", "last"):
        return default
    path = Path(ckpt_path).expanduser().absolute()
    if path.is_dir():
        return str(path)
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def load_run_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by ``dastc.train`` (weights, trainer state and the run's config)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or not a torch file
        raise CheckpointError(f"checkpoint {path} could not be read ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or "dastc_config" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} was not written by dastc.train (it holds no run config)")
    return checkpoint


def describe_model(cfg: DictConfig | dict) -> dict:
    """What must match for weights to fit: the backbone config (without its weights file) and the classes."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    backbone = {k: v for k, v in cfg["backbone"].items() if k not in ("pretrained", "num_classes")}
    return {"backbone": backbone, "classes": list(cfg["dataset"]["class_names"])}


def check_compatible(checkpoint: dict, cfg: DictConfig, path: str | Path) -> None:
    """Raise a CheckpointError naming what differs when a checkpoint's network or classes are not this run's."""
    theirs, ours = describe_model(checkpoint["dastc_config"]), describe_model(cfg)
    if theirs["classes"] != ours["classes"]:
        raise CheckpointError(
            f"checkpoint {path} was trained for {len(theirs['classes'])} classes {theirs['classes']}, "
            f"this run uses {len(ours['classes'])}: {ours['classes']}"
        )
    if theirs["backbone"] != ours["backbone"]:
        diff = sorted(
            k
            for k in set(theirs["backbone"]) | set(ours["backbone"])
            if theirs["backbone"].get(k) != ours["backbone"].get(k)
        )
        detail = ", ".join(f"{k}: {theirs['backbone'].get(k)} vs {ours['backbone'].get(k)}" for k in diff)
        raise CheckpointError(f"checkpoint {path} holds another network than backbone= asks for ({detail})")
