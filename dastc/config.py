"""Config helpers shared by the entry points: resolvers, composition for tests and notebooks."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def run_dir_of(ckpt_path: str) -> str:
    """The run directory a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` -> ``RUN``)."""
    path = Path(ckpt_path).expanduser().absolute()
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def run_stamp(pattern: str) -> str:
    """The name part of a new run directory: the time (``pattern`` as for ``${now:}``), or, when an outside
    launcher started several processes of one run, a name they all share, so that every rank writes to one
    directory: ``slurm-<job id>[_<array task>]`` for a multi-task SLURM job, ``torchrun-<rendezvous id>`` for
    torchrun. (Processes that Lightning starts itself are told rank 0's directory; see use_job_output_dir.)"""
    env = os.environ
    if env.get("SLURM_JOB_ID") and int(env.get("SLURM_NTASKS", "1")) > 1:
        array = env.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{env['SLURM_JOB_ID']}" + (f"_{array}" if array else "")
    if "TORCHELASTIC_RUN_ID" in env and int(env.get("WORLD_SIZE", "1")) > 1:
        run_id = env["TORCHELASTIC_RUN_ID"]
        if run_id in ("", "none"):
            from dastc.errors import ConfigError

            raise ConfigError(
                "torchrun started this run without a rendezvous id, so its processes cannot agree on a run "
                "directory: pass --rdzv-id=<name> (or --standalone on one node), or set paths.output_dir"
            )
        return f"torchrun-{run_id}"
    return datetime.now().strftime(pattern)


def register_resolvers() -> None:
    from dastc.checkpoint import run_dir_for

    for name, fn in (("run_dir_of", run_dir_of), ("run_dir_for", run_dir_for)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    if not OmegaConf.has_resolver("run_stamp"):  # cached: one run, one name, however often it is resolved
        OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True)


register_resolvers()


def use_job_output_dir(cfg) -> None:
    """Point ``paths.output_dir`` at Hydra's output directory of this process when it is another one: a sweep
    job's own directory, or, in the processes Lightning starts for DDP, rank 0's run directory (they are
    given ``hydra.run.dir``; their own ``paths.output_dir`` could name another second)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    if not HydraConfig.initialized():
        return
    job_dir = HydraConfig.get().runtime.output_dir
    if job_dir and Path(job_dir).absolute() != Path(cfg.paths.output_dir).absolute():
        with open_dict(cfg):
            cfg.paths.output_dir = job_dir


def compose_config(
    config_name: str = "train", overrides: list[str] | None = None, output_dir: str | None = None
):
    """Compose a config outside the command line (scripts, notebooks, tests) as ``python -m dastc.<task>`` would,
    with Hydra's runtime information set so that every interpolation resolves."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides or [], return_hydra_config=True)
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = cfg.paths.output_dir
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
