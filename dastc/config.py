"""Config helpers shared by the entry points: resolvers, composition for tests and notebooks."""

from __future__ import annotations

import os
from datetime import datetime
from itertools import count
from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def run_dir_of(ckpt_path: str) -> str:
    """The run directory a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` -> ``RUN``)."""
    path = Path(ckpt_path).expanduser().absolute()
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def shared_stamp() -> str | None:
    """The run name every process of one launch shares, when an outside launcher started several:
    ``slurm-<job id>[_<array task>]`` for a multi-task SLURM job, ``torchrun-<rendezvous id>`` for torchrun;
    None for a run of one process."""
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
    return None


def run_stamp(pattern: str) -> str:
    """The name part of a new run directory: the time (``pattern`` as for ``${now:}``), or, when an outside
    launcher started several processes of one run, a name they all share (shared_stamp), so that every rank
    writes to one directory. (Processes that Lightning starts itself are told rank 0's directory; see
    use_job_output_dir.)"""
    return shared_stamp() or datetime.now().strftime(pattern)


def claim_run_dir(runs_dir: str, stamp: str) -> str:
    """``<runs_dir>/<stamp>``, or ``<stamp>_2``, ``_3``... when a run started in the same second took it:
    created here with an atomic mkdir, so two processes racing for a name cannot both get it. A name all
    ranks of one launch share (torchrun, SLURM) is used as it is, and a rank Lightning started (LOCAL_RANK
    1..) claims nothing: it writes into rank 0's directory."""
    if stamp == shared_stamp() or os.environ.get("LOCAL_RANK", "0") != "0":
        return str(Path(runs_dir) / stamp)
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    for n in count(1):
        run_dir = Path(runs_dir) / (stamp if n == 1 else f"{stamp}_{n}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return str(run_dir)


def run_output_dir(ckpt_path: str | None, runs_dir: str, pattern: str) -> str:
    """The default ``paths.output_dir``: the continued run's directory (``ckpt_path=RUN``), else a new run
    directory of its own under ``runs_dir`` (claim_run_dir). Resolved once per config (cached), so every
    reference to it names the same directory."""
    from dastc.checkpoint import run_dir_for

    if ckpt_path in (None, "", "last"):  # `last`: checkpoints/last.ckpt of this new directory, as before
        return claim_run_dir(runs_dir, run_stamp(pattern))
    return run_dir_for(ckpt_path, runs_dir)


def register_resolvers() -> None:
    from dastc.checkpoint import run_dir_for

    for name, fn in (("run_dir_of", run_dir_of), ("run_dir_for", run_dir_for)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    if not OmegaConf.has_resolver("run_stamp"):  # cached: one run, one name, however often it is resolved
        OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True)
    if not OmegaConf.has_resolver("run_output_dir"):  # cached: a config names one new directory, not several
        OmegaConf.register_new_resolver("run_output_dir", run_output_dir, use_cache=True)


register_resolvers()


def use_job_output_dir(cfg) -> None:
    """Point ``paths.output_dir`` at Hydra's output directory of this process when it is another one: a sweep
    job's own directory, or, in the processes Lightning starts for DDP, rank 0's run directory (they are
    given ``hydra.run.dir``; their own ``paths.output_dir`` could name another second)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    if not HydraConfig.initialized():
        return
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    job_dir = hydra_cfg.runtime.output_dir
    if not job_dir:
        return
    # A sweep job's directory is always another one: resolving this job's own default would claim a new,
    # empty run directory (claim_run_dir).
    if (
        hydra_cfg.mode == RunMode.MULTIRUN
        or Path(job_dir).absolute() != Path(cfg.paths.output_dir).absolute()
    ):
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
        # by reference: a run directory is claimed (created) only when something reads it (claim_run_dir)
        cfg.hydra.runtime.output_dir = "${paths.output_dir}"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
