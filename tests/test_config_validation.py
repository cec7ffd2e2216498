"""Bad config values end in one ``error:`` sentence naming the key, the value and what is allowed (dastc.schema)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dastc.config import CONFIG_DIR, compose_config
from dastc.errors import ConfigError
from dastc.schema import validate_config

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def compose(tmp_path, *overrides: str):
    return compose_config("train", [*overrides], output_dir=tmp_path / "run")


@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_the_default_config_and_every_preset_validate(tmp_path, preset):
    validate_config(compose(tmp_path, *([f"experiment={preset}"] if preset else [])))


@pytest.mark.parametrize("backbone", sorted(p.stem for p in (CONFIG_DIR / "backbone").glob("*.yaml")))
@pytest.mark.parametrize("method", sorted(p.stem for p in (CONFIG_DIR / "method").glob("*.yaml")))
def test_every_backbone_and_method_validate(tmp_path, backbone, method):
    validate_config(compose(tmp_path, f"backbone={backbone}", f"method={method}", "dataset=synthia"))


def test_eval_config_validates(tmp_path):
    validate_config(compose_config("eval", [f"ckpt_path={tmp_path}/run/checkpoints/last.ckpt"]))


@pytest.mark.parametrize(
    "overrides, key, value",
    [
        (["seed=xyz"], "seed", "xyz"),
        (["dataset.batch_size=-1"], "dataset.batch_size", "-1"),
        (["trainer.max_steps=abc"], "trainer.max_steps", "abc"),
        (["backbone=accel", "backbone.depth=7"], "backbone.depth", "7"),
        # one wrong type per group
        (["dataset.num_workers=many"], "dataset.num_workers", "many"),
        (["backbone=accel", "backbone.dropout=high"], "backbone.dropout", "high"),
        (["method.aux_weight=heavy"], "method.aux_weight", "heavy"),
        (["trainer.precision=17"], "trainer.precision", "17"),
        # ranges and choices
        (["method.flip_prob=1.5"], "method.flip_prob", "1.5"),
        (["method.optim.momentum=2"], "method.optim.momentum", "2"),
        (["method.align.weight=-0.1"], "method.align.weight", "-0.1"),
        (["method.lambda_target=-1"], "method.lambda_target", "-1"),
        (["dataset.schedule.lr=0"], "dataset.schedule.lr", "0"),
        (["backbone=accel", "backbone.head=fcn"], "backbone.head", "fcn"),
        (["trainer.devices=0"], "trainer.devices", "0"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_key_value_and_what_is_allowed(tmp_path, overrides, key, value):
    with pytest.raises(ConfigError) as err:
        validate_config(compose(tmp_path, *overrides))
    message = str(err.value)
    assert message.startswith(f"{key}={value} is not allowed: {key} must be ")
    assert "\n" not in message


def test_interpolated_values_are_checked_where_they_are_set(tmp_path):
    # trainer.max_steps is ${dataset.schedule.max_steps}: the error names the key the user set
    with pytest.raises(ConfigError, match=r"^dataset\.schedule\.max_steps=abc is not allowed"):
        validate_config(compose(tmp_path, "dataset.schedule.max_steps=abc"))


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.max_steps=-1"],
        ["trainer.devices=auto"],
        ["trainer.devices=[0,1]"],
        ["trainer.precision=bf16-mixed"],
        ["dataset.num_workers=0"],
        ["dataset.schedule.poly_horizon=null"],
        ["+dataset.my_own_key=anything", "+method.another=1"],  # extra keys stay allowed
    ],
)
def test_good_values_and_extra_keys_pass(tmp_path, overrides):
    validate_config(compose(tmp_path, *overrides))


def train_cli(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "dastc.train", f"paths.output_dir={tmp_path / 'run'}", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "override, key", [("seed=xyz", "seed"), ("trainer.max_steps=abc", "trainer.max_steps")]
)
def test_the_cli_reports_a_bad_value_in_one_line_with_exit_status_2(tmp_path, override, key):
    proc = train_cli(tmp_path, override)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: {override} is not allowed: {key} must be")
    assert "Traceback" not in proc.stdout + proc.stderr
