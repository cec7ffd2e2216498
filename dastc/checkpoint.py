"""Finding, checking and loading checkpoints of dastc runs.

Writes are atomic already: Lightning saves into a temporary file and renames it into place (an fsspec
transaction), so a run killed while saving keeps its previous ``last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
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


def latest_run(log_dir: str | Path = "outputs", task: str = "train") -> Path:
    """The newest run directory under ``<log_dir>/<task>`` (single runs and sweep jobs) that holds a
    ``checkpoints/last.ckpt``, by that file's modification time."""
    root = Path(log_dir) / task
    found = list(root.glob("runs/*/checkpoints/last.ckpt")) + list(
        root.glob("multiruns/*/*/checkpoints/last.ckpt")
    )
    if not found:
        raise CheckpointError(
            f"no run with checkpoints/last.ckpt under {root}: train one with `python -m dastc.train`, or name a "
            "run directory"
        )
    return max(found, key=lambda p: p.stat().st_mtime).parent.parent


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


# Backbone keys that change neither the weights' shapes nor the results: a checkpoint fits whatever they are.
SPEED_AND_INIT_KEYS = ("pretrained", "num_classes", "activation_checkpointing")


def describe_model(cfg: DictConfig | dict) -> dict:
    """What must match for weights to fit: the backbone config (without its weights file), the multi-resolution
    wrapper around it and the classes."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    backbone = {k: v for k, v in cfg["backbone"].items() if k not in SPEED_AND_INIT_KEYS}
    backbone["multires"] = cfg.get("multires")  # the group itself: the backbone only refers to it
    return {"backbone": backbone, "classes": list(cfg["dataset"]["class_names"])}


def check_compatible(checkpoint: dict, cfg: DictConfig, path: str | Path) -> None:
    """Raise a CheckpointError naming what differs when a checkpoint's network or classes are not this run's."""
    theirs, ours = describe_model(checkpoint["dastc_config"]), describe_model(cfg)
    if theirs["classes"] != ours["classes"]:
        raise CheckpointError(
            f"checkpoint {path} was trained for {len(theirs['classes'])} classes {theirs['classes']}, "
            f"this run uses {len(ours['classes'])}: {ours['classes']}"
        )
    detail = backbone_difference(theirs["backbone"], ours["backbone"])
    if detail:
        raise CheckpointError(f"checkpoint {path} holds another network than backbone= asks for ({detail})")


def backbone_difference(theirs: dict, ours: dict, allowed: tuple[str, ...] = ()) -> str:
    """``"key: theirs vs ours, ..."`` for the backbone settings that differ (besides ``allowed``), or ''."""
    keys = sorted(k for k in set(theirs) | set(ours) if k not in allowed and theirs.get(k) != ours.get(k))
    return ", ".join(f"{k}: {theirs.get(k)} vs {ours.get(k)}" for k in keys)


def init_weights_from(method, path: str | Path, cfg: DictConfig) -> dict[str, list[str]]:
    """``model.init_from``: start a run's student (and teacher) from another run's weights, nothing else.

    The checkpoint must hold the same classes and the same network, except that the main head may differ
    (TPS's ASPP head -> DA-STC's 256-d feature head; the authors load TPS non-strictly: docs/method.md, DA-STC
    teacher and stage 2). Weights of the same name and shape load; this run's weights that the checkpoint
    lacks keep their initialisation. Returns ``{"loaded": [...], "kept": [...], "ignored": [...]}`` (student
    weight names).
    """
    path = resolve_ckpt_path(str(path), ".")
    checkpoint = load_run_checkpoint(path)
    theirs, ours = describe_model(checkpoint["dastc_config"]), describe_model(cfg)
    if theirs["classes"] != ours["classes"]:
        raise CheckpointError(
            f"model.init_from={path} was trained for {len(theirs['classes'])} classes, this run has "
            f"{len(ours['classes'])} ({theirs['classes']} vs {ours['classes']})"
        )
    detail = backbone_difference(theirs["backbone"], ours["backbone"], allowed=("head",))
    if detail:
        raise CheckpointError(f"model.init_from={path} holds another network than this run's ({detail})")
    stored = {
        k.removeprefix("student."): v for k, v in checkpoint["state_dict"].items() if k.startswith("student.")
    }
    own = method.student.state_dict()
    loaded = [k for k in own if k in stored and stored[k].shape == own[k].shape]
    if not loaded:
        raise CheckpointError(f"model.init_from={path} holds no weight of this run's network")
    method.student.load_state_dict({k: stored[k] for k in loaded}, strict=False)
    method.teacher.restart(method.student)  # the teacher starts from the same weights
    kept = [k for k in own if k not in loaded]
    if kept:
        # Some of this network starts untrained (DA-STC's 256-d head after TPS): the stored network itself,
        # with its own trained head, makes the pseudo-labels until the teacher has learnt (switch_step).
        network, config = stored_network(checkpoint["dastc_config"], stored)
        method.teacher.set_initial(network, config)
    return {
        "loaded": loaded,
        "kept": kept,
        "ignored": [k for k in stored if k not in own or stored[k].shape != own[k].shape],
    }


def stored_network(run_config: dict, weights: dict) -> tuple[torch.nn.Module, dict]:
    """The network a run trained (its ``backbone`` config, resolved, without ImageNet weights to fetch) with
    ``weights``; returns it and the config that rebuilds it."""
    backbone = OmegaConf.to_container(OmegaConf.create(run_config).backbone, resolve=True)
    backbone["pretrained"] = None  # the trained weights replace whatever it started from
    network = instantiate(backbone)
    network.load_state_dict(weights)
    return network, backbone
