"""Typed schemas of the key config values, checked before anything is built, so that a bad value reads as one
sentence (``error: dataset.batch_size=-1 is not allowed: ...``) instead of a traceback from deep inside.

Each schema is a dataclass in the style of Hydra's structured configs: a field's type says what the key
holds (``Literal`` lists the allowed values) and its metadata the range. Only keys a schema names are
checked, and only where the composed config has them: the groups differ between benchmarks, backbones and
methods, and extra keys stay allowed. What the values mean: conf/ (each key's comment) and docs/method.md.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, Union

from omegaconf import DictConfig, ListConfig, OmegaConf

from dastc.errors import ConfigError, DastcError
from dastc.methods.feature_distance import thing_class_ids


def check(
    low: float | None = None, high: float | None = None, above: float | None = None, also: tuple = ()
) -> Any:
    """A schema field with a range: ``low <= v <= high``, ``v > above``; ``also``: values allowed besides."""
    return field(default=None, metadata={"low": low, "high": high, "above": above, "also": also})


def probability() -> Any:
    return check(low=0, high=1)


@dataclass
class RecipeSchema:
    continue_unfinished: bool = True


@dataclass
class ModelSchema:
    init_from: str | None = None
    init_required: bool = False
    channels_last: bool = False
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "default"
    )


@dataclass
class TopSchema:
    task_name: str = "train"
    seed: int = check(low=0, high=2**32 - 1)  # the range NumPy's and Lightning's seeding accept
    ckpt_path: str | None = None
    recipe: RecipeSchema = field(default_factory=RecipeSchema)
    model: ModelSchema = field(default_factory=ModelSchema)


@dataclass
class MethodLambdaSchema:
    lambda_target: float = check(low=0)
    strong_target_aug: bool = False


@dataclass
class ScheduleSchema:
    max_steps: int = check(low=1)
    val_every: int | None = check(low=1)
    ckpt_every: int | None = check(low=1)
    panel_every: int | None = check(low=0)
    lr: float = check(above=0)
    poly_horizon: int | None = check(low=1)
    warmup_steps: int = check(low=0)
    ema_momentum: float = probability()
    hist_match: bool = False
    two_stage: bool = False
    tps: MethodLambdaSchema = field(default_factory=MethodLambdaSchema)
    dastc: MethodLambdaSchema = field(default_factory=MethodLambdaSchema)
    rare_classes: int = check(low=0)
    feature_fusion_start: int = check(low=0)
    mic_patch_size: int = check(low=1)


@dataclass
class RareClassSamplingSchema:
    """dataset.rcs (DAFormer, Hoyer et al. CVPR 2022; docs/method.md, Rare class sampling (option))."""

    enabled: bool = False
    temperature: float = check(above=0)
    min_pixels: int = check(low=0)


@dataclass
class DatasetSchema:
    name: str = ""
    num_classes: int = check(low=1)
    ignore_index: int = check()
    batch_size: int = check(low=1)
    val_batch_size: int = check(low=1)
    num_workers: int = check(low=0)
    pin_memory: bool = False
    on_bad_clip: Literal["raise", "skip"] = "raise"
    rcs: RareClassSamplingSchema = field(default_factory=RareClassSamplingSchema)
    schedule: ScheduleSchema = field(default_factory=ScheduleSchema)


@dataclass
class BackboneSchema:
    """Keys every backbone shares."""

    num_classes: int = check(low=1)
    pretrained: str | None = None


@dataclass
class AccelSchema(BackboneSchema):
    """conf/backbone/accel.yaml: DeepLab-v2 on a dilated ResNet (docs/method.md, Model)."""

    depth: Literal[18, 34, 50, 101] = 101
    head: Literal["deeplabv2", "aspp"] = "deeplabv2"
    shallow_split: Literal["stem", "layer1", "layer2"] = "layer1"
    dropout: float = probability()
    activation_checkpointing: bool = False
    weights_format: Literal["auto", "torchvision", "caffe"] = "auto"


@dataclass
class SmpSchema(BackboneSchema):
    """conf/backbone/{smp_unet,segformer,deeplabv3plus}.yaml: segmentation_models_pytorch networks."""

    temporal: Literal["current_frame", "flow_fusion"] = "current_frame"
    arch: str = "Unet"
    encoder_name: str = "resnet18"
    encoder_depth: int = check(low=1, high=5)


@dataclass
class MultiresSchema:
    """conf/multires/hrda.yaml: HRDA's multi-resolution wrapper (docs/method.md, Multi-resolution training and
    inference)."""

    context_scale: float = check(above=0, high=1)
    detail_fraction: float = check(above=0, high=1)
    detail_loss_weight: float = probability()
    sliding_stride: float = check(above=0, high=1)
    attention_classwise: bool = True
    attention_channels: int = check(low=1)
    context_multiple: int = check(low=1)
    detail_multiple: int = check(low=1)


@dataclass
class OptimSchema:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = check(above=0)
    momentum: float = probability()
    weight_decay: float = check(low=0)
    head_lr_mult: float = check(above=0)
    poly_power: float = check(low=0)
    poly_horizon: int | None = check(low=1)
    lr_warmup_steps: int = check(low=0)


@dataclass
class TeacherSchema:
    mode: Literal["ema", "frozen_then_self"] = "ema"
    momentum: float = probability()
    switch_step: int = check(low=0)


@dataclass
class StrongAugSchema:
    blur_p: float = probability()
    jitter_p: float = probability()
    gray_p: float = probability()


@dataclass
class FusionSchema:
    image: bool = True
    feature: bool = True
    feature_start: int = check(low=0)
    alpha: float = probability()
    source_classes: int = check(low=0)
    target_classes: int = check(low=0)
    target_threshold: float = probability()
    rare_class_paste: bool = True
    rare_classes: int = check(low=0)
    rare_min_pixels: int = check(low=0)


@dataclass
class AlignSchema:
    enabled: bool = True
    weight: float = check(low=0)
    loss: Literal["cosine", "mmd"] = "cosine"
    inter: Literal["infonce", "margin"] = "infonce"
    temperature: float = check(above=0)
    margin: float = check(low=0)
    min_pixels: int = check(low=0)
    second_pass: bool = True
    sync_ranks: bool = True


@dataclass
class MICSchema:
    enabled: bool = False
    patch_size: int = check(low=1)
    mask_ratio: float = probability()
    weight: float = check(low=0)
    quality_threshold: float = probability()


@dataclass
class FdistSchema:
    """method.fdist: DAFormer's ImageNet feature distance (docs/method.md, ImageNet feature distance)."""

    enabled: bool = False
    weight: float = check(low=0)
    scale_min_ratio: float = probability()
    thing_classes: list = check()


@dataclass
class MethodSchema:
    """conf/method/*.yaml: source_only's keys, TPS's and DA-STC's on top (docs/method.md)."""

    optim: OptimSchema = field(default_factory=OptimSchema)
    teacher: TeacherSchema = field(default_factory=TeacherSchema)
    aux_weight: float = check(low=0)
    eval_model: Literal["student", "teacher"] = "student"
    hist_match: bool = False
    max_bad_steps: int = check(low=1)
    lambda_target: float = check(low=0)
    flip_prob: float = probability()
    pseudo_labels: Literal["temporal", "per_frame"] = "temporal"
    strong_aug: bool = False
    strong_aug_params: StrongAugSchema = field(default_factory=StrongAugSchema)
    rescale_multiple: int = check(low=1)
    warmup_steps: int = check(low=0)
    fusion: FusionSchema = field(default_factory=FusionSchema)
    align: AlignSchema = field(default_factory=AlignSchema)
    mic: MICSchema = field(default_factory=MICSchema)
    fdist: FdistSchema = field(default_factory=FdistSchema)


# Lightning's accepted precision values (lightning.pytorch.Trainer, argument precision).
Precision = Literal[
    64, 32, 16, "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
    "transformer-engine", "transformer-engine-float16",
]  # fmt: skip


@dataclass
class TrainerSchema:
    """conf/trainer/*.yaml: the Lightning Trainer's arguments that configs commonly change."""

    accelerator: str = "auto"
    devices: int | str | list = check(low=1, also=(-1,))  # a count, "auto", or device ids
    num_nodes: int = check(low=1)
    precision: Precision = "32-true"
    max_steps: int = check(low=1, also=(-1,))  # -1: no limit (Lightning)
    log_every_n_steps: int = check(low=1)
    accumulate_grad_batches: int = check(low=1)
    gradient_clip_val: float | None = check(low=0)
    num_sanity_val_steps: int = check(low=-1)


BACKBONES = {"accel_deeplabv2": AccelSchema, "smp_video": SmpSchema}


def validate_config(cfg: DictConfig) -> None:
    """Check the composed config's key values against the schemas above before anything is built; the first
    bad value raises ConfigError naming the key, the value and what is allowed."""
    check_node(cfg, TopSchema, "")
    for group, schema in (
        ("dataset", DatasetSchema),
        ("method", MethodSchema),
        ("trainer", TrainerSchema),
        ("multires", MultiresSchema),
    ):
        check_node(cfg.get(group), schema, group)
    fdist = cfg.get("method", {}).get("fdist")
    if isinstance(fdist, DictConfig) and fdist.get("enabled") and "class_names" in cfg.get("dataset", {}):
        thing_class_ids(fdist.thing_classes, cfg.dataset.class_names)  # a name no class has: one sentence
    backbone = cfg.get("backbone")
    if isinstance(backbone, DictConfig):
        target = str(backbone.get("_target_", "")).rsplit(".", 1)[-1]
        check_node(backbone, BACKBONES.get(target, BackboneSchema), "backbone")


def check_node(node: Any, schema: type, prefix: str) -> None:
    """Check each of ``schema``'s keys that ``node`` holds; groups a config lacks are skipped."""
    if not isinstance(node, DictConfig):
        return
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        if f.name not in node or OmegaConf.is_missing(node, f.name):  # ??? is reported where it is used
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = resolved(node, f.name, key)
        if is_dataclass(hints[f.name]):
            check_node(node[f.name], hints[f.name], key)
            continue
        allowed = problem(value, hints[f.name], f.metadata)
        if allowed:
            raise ConfigError(f"{key}={shown(value)} is not allowed: {key} must be {allowed}")


def resolved(node: DictConfig, name: str, key: str) -> Any:
    """The value with its interpolations resolved (the config itself is left as it is)."""
    try:
        return node[name]
    except DastcError:
        raise
    except Exception as err:  # an interpolation to a missing key, or a resolver that failed
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key} cannot be resolved: {first}") from err


def problem(value: Any, kind: Any, meta: Any) -> str | None:
    """None when ``value`` fits type ``kind`` and the range in ``meta``; else what is allowed, in words."""
    options = typing.get_args(kind)
    if typing.get_origin(kind) in (Union, types.UnionType):
        if value is None and type(None) in options:
            return None
        options = [o for o in options if o is not type(None)]
        fits = any(problem(value, o, meta) is None for o in options)
        return None if fits else " or ".join(describe(o, meta) for o in options) + nullable(kind)
    if value in meta.get("also", ()) and not isinstance(value, bool):
        return None
    if not fits_type(value, kind) or not in_range(value, meta):
        return describe(kind, meta)
    return None


def fits_type(value: Any, kind: Any) -> bool:
    if typing.get_origin(kind) is Literal:  # True == 1: a bool only where the choices list one
        return any(
            value == c and isinstance(value, bool) == isinstance(c, bool) for c in typing.get_args(kind)
        )
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, (list, ListConfig))
    return isinstance(value, kind)


def in_range(value: Any, meta: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True
    low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
    return not (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and value <= above)
    )


def describe(kind: Any, meta: Any) -> str:
    """What ``kind`` with the range in ``meta`` allows, in words: ``an integer >= 1 (or -1)``."""
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(
            dict.fromkeys(shown(c) for c in typing.get_args(kind))
        )  # 32 and "32": once
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}
    text = names.get(kind, getattr(kind, "__name__", str(kind)))
    if kind in (int, float):
        low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
        if low is not None and high is not None:
            text += f" from {shown(low)} to {shown(high)}"
        else:  # e.g. "> 0 and <= 1"
            bounds = [
                f"{op} {shown(v)}" for op, v in ((">=", low), (">", above), ("<=", high)) if v is not None
            ]
            text += "".join(f" {b}" if i == 0 else f" and {b}" for i, b in enumerate(bounds))
        if meta.get("also"):
            text += " (or " + ", ".join(shown(v) for v in meta["also"]) + ")"
    return text


def nullable(kind: Any) -> str:
    return " or null" if type(None) in typing.get_args(kind) else ""


def shown(value: Any) -> str:
    """A value as one would write it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (DictConfig, ListConfig)):
        return str(OmegaConf.to_container(value, resolve=False))
    return str(value)
