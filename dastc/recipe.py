"""The paper's two-stage recipe in one run: ``python -m dastc.train dataset=synthia backbone=accel`` trains TPS
(stage 1, into ``<run>/stage1_tps/``), then DA-STC started from it (stage 2, ``<run>/stage2_dastc/``, whose
pseudo-labels come from the stage-1 network until the teacher has learnt: docs/method.md, "DA-STC teacher and
stage 2"), and prints both beside the paper's rows.

A run remembers its stages in ``<run>/recipe.json``. Continuing one (``ckpt_path=RUN``, or the same command
again while the newest run with this config is unfinished) skips a finished stage 1 and resumes the
interrupted stage from its ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from dastc.compare import results_table, rows_of
from dastc.config import CONFIG_DIR
from dastc.files import write_json_atomic

STAGES = ("stage1_tps", "stage2_dastc")
RECIPE_FILE = "recipe.json"


def is_two_stage(cfg: DictConfig) -> bool:
    """DA-STC on a benchmark whose recipe has a TPS stage first (``dataset.schedule.two_stage``), not started
    from another run's weights (``model.init_from``: then this run is stage 2 alone)."""
    return (
        str(cfg.method.get("_target_", "")).endswith(".DASTC")
        and bool(cfg.dataset.get("schedule", {}).get("two_stage", False))
        and not cfg.get("model", {}).get("init_from")
    )


def method_group(name: str) -> dict:
    """``conf/method/<name>.yaml`` with the configs it extends merged in, as ``method=<name>`` composes it."""
    node = OmegaConf.load(CONFIG_DIR / "method" / f"{name}.yaml")
    merged = OmegaConf.create()
    for entry in node.get("defaults", []):
        merged = OmegaConf.merge(merged, method_group(entry)) if entry != "_self_" else merged
    own = OmegaConf.masked_copy(node, [k for k in node if k != "defaults"])
    return OmegaConf.to_container(OmegaConf.merge(merged, own), resolve=False)


def stage_configs(cfg: DictConfig, run_dir: Path) -> dict[str, DictConfig]:
    """Each stage's config: stage 1 is ``method=tps`` with TPS's plain ASPP classifier (``backbone.head=aspp``
    where the backbone has one); stage 2 is this config's DA-STC, started from stage 1's weights. The
    ``method.*`` overrides of the command apply to stage 2."""
    stages = {}
    for name in STAGES:
        stage = copy.deepcopy(cfg)
        with open_dict(stage):
            stage.paths.output_dir = str(run_dir / name)
            stage.ckpt_path = None
            if name == "stage1_tps":
                stage.method = method_group("tps")
                if "head" in stage.backbone:
                    stage.backbone.head = "aspp"
            else:
                stage.model.init_from = str(run_dir / "stage1_tps")
                stage.model.init_required = True
                # Stage 1's weights replace ImageNet's in the student: none to fetch, unless the ImageNet
                # feature distance (method.fdist) needs them for its frozen encoder.
                if not stage.method.get("fdist", {}).get("enabled"):
                    stage.backbone.pretrained = None
        stages[name] = stage
    return stages


def fingerprint(cfg: DictConfig) -> str:
    """What makes two commands the same run: the config without where it writes and what it continues."""
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("ckpt_path", None)
    container.get("paths", {}).pop("output_dir", None)
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def unfinished_run(cfg: DictConfig) -> Path | None:
    """The newest run directory of this config (same fingerprint) that did not finish both stages."""
    runs = Path(cfg.paths.log_dir) / str(cfg.get("task_name", "train")) / "runs"
    mine = fingerprint(cfg)
    for recipe in sorted(runs.glob(f"*/{RECIPE_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True):
        state = json.loads(recipe.read_text())
        if state.get("fingerprint") == mine and not state.get("finished"):
            return recipe.parent
    return None


def run_dir_to_continue(cfg: DictConfig) -> Path | None:
    """``ckpt_path=RUN`` names a two-stage run to continue; else, with ``recipe.continue_unfinished``, the
    newest unfinished run of the same config."""
    ckpt = cfg.get("ckpt_path")
    if ckpt:
        path = Path(str(ckpt)).expanduser()
        if (path / RECIPE_FILE).is_file():
            return path
        from dastc.errors import CheckpointError

        raise CheckpointError(
            f"ckpt_path={ckpt} is not a two-stage run directory (no {RECIPE_FILE}): pass the run directory that "
            f"holds {STAGES[0]}/ and {STAGES[1]}/"
        )
    # Several processes (DDP) must agree on one directory before they can talk: they continue only what
    # ckpt_path names.
    trainer = cfg.get("trainer", {})
    one_process = str(trainer.get("devices", 1)) == "1" and int(trainer.get("num_nodes", 1)) == 1
    one_process = (
        one_process and int(os.environ.get("WORLD_SIZE", "1")) == 1 and "LOCAL_RANK" not in os.environ
    )
    if cfg.get("recipe", {}).get("continue_unfinished", True) and one_process:
        return unfinished_run(cfg)
    return None


def train_two_stages(cfg: DictConfig, console: Console | None = None) -> dict:
    """Run (or continue) both stages; returns stage 2's metrics, as ``dastc.train.train`` does."""
    from dastc.train import fit  # the single-stage trainer (dastc.train imports this module)

    console = console or Console()
    run_dir = run_dir_to_continue(cfg)
    if run_dir is not None:
        console.print(f"Continuing the two-stage run in {run_dir}", highlight=False)
    else:
        run_dir = Path(cfg.paths.output_dir)
    state_file = run_dir / RECIPE_FILE
    state = {"fingerprint": fingerprint(cfg), "stages": list(STAGES), "finished": False}
    if state_file.is_file():
        state = {**json.loads(state_file.read_text()), "finished": False}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_file, state, indent=2)
    metrics = {}
    for k, (name, stage) in enumerate(stage_configs(cfg, run_dir).items(), start=1):
        stage_dir = run_dir / name
        if (stage_dir / "metrics.json").is_file():
            console.print(f"Stage {k}/2 ({name}) finished earlier: {stage_dir}", highlight=False)
            continue
        last = stage_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            with open_dict(stage):
                stage.ckpt_path = str(last)
        console.rule(f"Stage {k}/2: {'TPS' if k == 1 else 'DA-STC from stage 1'} -> {stage_dir}")
        metrics = fit(stage, console, stage=f"stage {k}/2")
    state["finished"] = True
    write_json_atomic(state_file, state, indent=2)
    print_comparison(run_dir, console)
    if not metrics:  # stage 2 had finished before: its stored scores
        metrics = json.loads((run_dir / STAGES[1] / "metrics.json").read_text())["metrics"]
    return metrics


def print_comparison(run_dir: Path, console: Console) -> None:
    """Both stages' target scores beside the paper's rows for the benchmark (where it has some)."""
    results = []
    for name in STAGES:
        result = json.loads((run_dir / name / "metrics.json").read_text())
        if "target" in result.get("metrics", {}):
            results.append({**result, "source_path": str(run_dir / name)})
    if not results:
        return
    classes, rows = rows_of(results, paper=True)
    table = results_table(classes, rows, f"Target val IoU per class (%), {run_dir}")
    Console(width=max(console.width, 12 * len(classes) + 80)).print(table)  # wide: one row per line
