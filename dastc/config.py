"""Config helpers shared by the entry points: resolvers, composition for tests and notebooks."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def run_dir_of(ckpt_path: str) -> str:
    """The run directory a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` -> ``RUN``)."""
    path = Path(ckpt_path).expanduser().absolute()
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def register_resolvers() -> None:
    from dastc.checkpoint import run_dir_for

    for name, fn in (("run_dir_of", run_dir_of), ("run_dir_for", run_dir_for)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


def use_job_output_dir(cfg) -> None:
    """In a sweep, point ``paths.output_dir`` at the job's own directory (a single run already writes to it)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.paths.output_dir = HydraConfig.get().runtime.output_dir


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
