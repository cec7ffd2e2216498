"""The class spaces of the video benchmarks and of the image extension (docs/benchmarks.md, Class maps).

``dataset=synthia`` trains 12 classes and reports 11 (fence dropped); ``dataset=viper`` trains and reports 15
(Cityscapes rider merged into person). Each space carries the lookup tables that decode raw label ids into its
train ids: Cityscapes label ids (the target) and the source dataset's own ids. A lookup table is a uint8 array
of 256 entries holding 255 (ignore) everywhere except the mapped ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

IGNORE_ID = 255

# Cityscapes train-id colours (cityscapesscripts/helpers/labels.py), by class name.
CITYSCAPES_COLOURS: dict[str, tuple[int, int, int]] = {
    "road": (128, 64, 128),
    "sidewalk": (244, 35, 232),
    "building": (70, 70, 70),
    "wall": (102, 102, 156),
    "fence": (190, 153, 153),
    "pole": (153, 153, 153),
    "traffic light": (250, 170, 30),
    "traffic sign": (220, 220, 0),
    "vegetation": (107, 142, 35),
    "terrain": (152, 251, 152),
    "sky": (70, 130, 180),
    "person": (220, 20, 60),
    "rider": (255, 0, 0),
    "car": (0, 0, 142),
    "truck": (0, 0, 70),
    "bus": (0, 60, 100),
    "train": (0, 80, 100),
    "motorcycle": (0, 0, 230),
    "bicycle": (119, 11, 32),
}


def lookup_table(pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A read-only uint8[256] table: ``table[raw_id] = train_id`` for each pair, 255 elsewhere."""
    table = np.full(256, IGNORE_ID, dtype=np.uint8)
    for raw_id, train_id in pairs:
        table[raw_id] = train_id
    table.setflags(write=False)
    return table


def apply_lookup(table: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Decode a raw id map of any integer dtype with ``table``; ids outside 0..255 become ignore (255)."""
    raw = np.asarray(raw)
    if raw.dtype == np.uint8:
        return table[raw]
    inside = (raw >= 0) & (raw < table.size)
    out = np.full(raw.shape, IGNORE_ID, dtype=np.uint8)
    out[inside] = table[raw[inside]]
    return out


@dataclass(frozen=True)
class ClassSpace:
    """One benchmark's train-id space: names, colours, the reported classes and the decoding tables.

    ``cityscapes_ids`` and ``source_ids`` are ``(raw id, train id)`` pairs (kept as tuples so the space stays
    hashable); ``cityscapes_lut`` / ``source_lut`` are the matching 256-entry lookup tables.
    """

    name: str
    source_name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    eval_classes: tuple[int, ...]
    long_tail_classes: tuple[int, ...]
    cityscapes_ids: tuple[tuple[int, int], ...]
    source_ids: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        n = len(self.class_names)
        if len(self.palette) != n:
            raise ValueError(f"class space {self.name}: {len(self.palette)} colours for {n} classes")
        for what, ids in (("cityscapes_ids", self.cityscapes_ids), ("source_ids", self.source_ids)):
            if any(not 0 <= raw < 256 or not 0 <= train < n for raw, train in ids):
                raise ValueError(f"class space {self.name}: {what} holds ids outside 0..255 -> 0..{n - 1}")
        if any(not 0 <= c < n for c in self.eval_classes + self.long_tail_classes):
            raise ValueError(f"class space {self.name}: eval/long-tail class ids outside 0..{n - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def eval_class_names(self) -> tuple[str, ...]:
        return tuple(self.class_names[c] for c in self.eval_classes)

    @cached_property
    def cityscapes_lut(self) -> np.ndarray:
        """Cityscapes label id (``*_gtFine_labelIds.png``) -> train id of this space."""
        return lookup_table(self.cityscapes_ids)

    @cached_property
    def source_lut(self) -> np.ndarray:
        """Source dataset's raw class id (SYNTHIA or VIPER) -> train id of this space."""
        return lookup_table(self.source_ids)


def _palette(names: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    return tuple(CITYSCAPES_COLOURS[n] for n in names)


_SYNTHIA_NAMES = (
    "road", "sidewalk", "building", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "sky", "person", "rider", "car",
)  # fmt: skip

SYNTHIA = ClassSpace(
    name="synthia",
    source_name="SYNTHIA-Seq",
    class_names=_SYNTHIA_NAMES,
    palette=_palette(_SYNTHIA_NAMES),
    # Fence (3) is trained but not reported (docs/benchmarks.md, Evaluation protocol).
    eval_classes=(0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11),
    long_tail_classes=(3, 4, 5, 6, 10),  # fence, pole, light, sign, rider (docs/benchmarks.md, Class maps)
    cityscapes_ids=(
        (7, 0), (8, 1), (11, 2), (13, 3), (17, 4), (19, 5), (20, 6), (21, 7), (23, 8), (24, 9), (25, 10),
        (26, 11),
    ),
    source_ids=(
        (3, 0), (4, 1), (2, 2), (5, 3), (7, 4), (15, 5), (9, 6), (6, 7), (1, 8), (10, 9), (11, 10), (8, 11),
    ),
)  # fmt: skip

_VIPER_NAMES = (
    "road", "sidewalk", "building", "fence", "traffic light", "traffic sign", "vegetation", "terrain",
    "sky", "person", "car", "truck", "bus", "motorcycle", "bicycle",
)  # fmt: skip

VIPER = ClassSpace(
    name="viper",
    source_name="VIPER",
    class_names=_VIPER_NAMES,
    palette=_palette(_VIPER_NAMES),
    eval_classes=tuple(range(15)),
    # Long-tail: fence, light, sign, terrain, motorcycle, bicycle (docs/benchmarks.md, Class maps).
    long_tail_classes=(3, 4, 5, 7, 13, 14),
    cityscapes_ids=(
        # Cityscapes rider (25) is merged into person (9): VIPER has no rider class.
        (7, 0), (8, 1), (11, 2), (13, 3), (19, 4), (20, 5), (21, 6), (22, 7), (23, 8), (24, 9), (25, 9),
        (26, 10), (27, 11), (28, 12), (32, 13), (33, 14),
    ),
    source_ids=(
        # VIPER tree (7) and vegetation (8) are both vegetation.
        (3, 0), (4, 1), (9, 2), (11, 3), (13, 4), (14, 5), (7, 6), (8, 6), (6, 7), (2, 8), (20, 9), (24, 10),
        (27, 11), (26, 12), (23, 13), (22, 14),
    ),
)  # fmt: skip

# --- the image extension (docs/benchmarks.md, Image benchmarks) ---------------------------------------------
_CITYSCAPES_19 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
# Cityscapes label id -> 19-class train id (cityscapesscripts/helpers/labels.py).
_CITYSCAPES_19_IDS = (
    (7, 0), (8, 1), (11, 2), (12, 3), (13, 4), (17, 5), (19, 6), (20, 7), (21, 8), (22, 9), (23, 10), (24, 11),
    (25, 12), (26, 13), (27, 14), (28, 15), (31, 16), (32, 17), (33, 18),
)  # fmt: skip

GTA5 = ClassSpace(
    name="gta5",
    source_name="GTA5",
    class_names=_CITYSCAPES_19,
    palette=_palette(_CITYSCAPES_19),
    eval_classes=tuple(range(19)),
    # The paper names none for images: the rarest classes of GTA5, as the video spaces pick theirs (our choice).
    long_tail_classes=(
        3,
        4,
        5,
        6,
        7,
        12,
        16,
        17,
        18,
    ),  # wall, fence, pole, light, sign, rider, train, moto, bike
    cityscapes_ids=_CITYSCAPES_19_IDS,
    source_ids=_CITYSCAPES_19_IDS,  # Cityscapes label ids (docs/benchmarks.md, Image benchmarks)
)

_SYNTHIA_16 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "sky", "person", "rider", "car", "bus", "motorcycle", "bicycle",
)  # fmt: skip

SYNTHIA_IMAGE = ClassSpace(
    name="synthia_image",
    source_name="SYNTHIA-RAND-CITYSCAPES",
    class_names=_SYNTHIA_16,
    palette=_palette(_SYNTHIA_16),
    eval_classes=tuple(range(16)),  # the 16-class mIoU; dataset.report_subsets adds the 13-class one
    long_tail_classes=(3, 4, 5, 6, 7, 11, 14, 15),  # wall, fence, pole, light, sign, rider, motorcycle, bicycle
    cityscapes_ids=(
        (7, 0), (8, 1), (11, 2), (12, 3), (13, 4), (17, 5), (19, 6), (20, 7), (21, 8), (23, 9), (24, 10),
        (25, 11), (26, 12), (28, 13), (32, 14), (33, 15),
    ),
    # SYNTHIA-RAND-CITYSCAPES class ids (the R channel of GT/LABELS) as the image-DA code maps them.
    source_ids=(
        (3, 0), (4, 1), (2, 2), (21, 3), (5, 4), (7, 5), (15, 6), (9, 7), (6, 8), (1, 9), (10, 10), (17, 11),
        (8, 12), (19, 13), (12, 14), (11, 15),
    ),
)  # fmt: skip
# The 13-class mIoU of the SYNTHIA image benchmark leaves out wall, fence and pole (docs/benchmarks.md, Class
# maps).
SYNTHIA_IMAGE_13 = tuple(c for c in range(16) if _SYNTHIA_16[c] not in ("wall", "fence", "pole"))

SPACES: dict[str, ClassSpace] = {s.name: s for s in (SYNTHIA, VIPER, GTA5, SYNTHIA_IMAGE)}


def space(name: str | ClassSpace) -> ClassSpace:
    """The class space called ``name`` ('synthia', 'viper', 'gta5', 'synthia_image'); a ClassSpace is returned
    as it is."""
    if isinstance(name, ClassSpace):
        return name
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown class space {name!r}; known: {', '.join(sorted(SPACES))}") from None
