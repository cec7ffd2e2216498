"""Procedural driving-like toy scenes in two visual domains, with exact labels and optical flow.

A scene is a side view of a street: sky, a row of buildings with trees and poles, a far sidewalk, a two-lane
road with lane markings, a near sidewalk, cars driving in both directions and people walking. The camera pans
at a constant integer speed and every object moves by a whole number of pixels per frame, so the flow the
generator reports is exact and warping frame t-1 by it reproduces frame t inside every object.

Two domains share the geometry generator and differ only in appearance:
- ``source`` ("synthetic"): one flat palette, sharp edges, no noise.
- ``target`` ("real"): another palette, textures (asphalt, tiles, windows, foliage), per-sequence lighting
  (gain, colour cast, a shading gradient), blur and sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

CLASS_NAMES = ("road", "sidewalk", "building", "sky", "vegetation", "pole", "car", "person")
ROAD, SIDEWALK, BUILDING, SKY, VEGETATION, POLE, CAR, PERSON = range(len(CLASS_NAMES))


@dataclass(frozen=True)
class Shape:
    """One painted primitive: a rectangle or an ellipse in its bounding box, moving ``vx`` px per frame."""

    cls: int
    role: str  # appearance role, see Style.palette
    kind: str  # "rect" or "ellipse"
    x: int  # left edge at frame 0
    y: int  # top edge
    w: int
    h: int
    vx: int
    variant: int = 0  # picks a colour variant / jitter for this object

    def mask(self) -> np.ndarray:
        """The shape's own pixels inside its bounding box (fixed: shapes only translate)."""
        if self.kind == "rect":
            return np.ones((self.h, self.w), dtype=bool)
        ry, rx = (self.h - 1) / 2.0, (self.w - 1) / 2.0
        yy, xx = np.mgrid[0 : self.h, 0 : self.w]
        return ((yy - ry) / max(ry, 0.5)) ** 2 + ((xx - rx) / max(rx, 0.5)) ** 2 <= 1.0


@dataclass
class Scene:
    shapes: list[Shape]  # back to front; the sky is the background behind all of them
    height: int
    width: int
    lighting_seed: int


@dataclass(frozen=True)
class Style:
    palette: dict[str, tuple[int, int, int]]
    car_bodies: tuple[tuple[int, int, int], ...]
    textured: bool
    noise_sigma: float = 0.0
    blur_sigma: float = 0.0
    gain_range: tuple[float, float] = (1.0, 1.0)
    cast: float = 0.0  # per-channel multiplicative colour cast amplitude
    jitter: int = 8
    extension: str = ".png"


SOURCE_STYLE = Style(
    palette={
        "sky": (90, 160, 240),
        "building": (160, 60, 50),
        "tree": (40, 170, 60),
        "pole": (240, 210, 40),
        "sidewalk": (175, 160, 120),
        "road": (70, 70, 80),
        "marking": (235, 235, 235),
        "glass": (40, 40, 90),
        "wheel": (20, 20, 20),
        "person": (250, 110, 190),
        "head": (230, 180, 150),
    },
    car_bodies=((210, 30, 30), (30, 70, 210), (235, 235, 235), (250, 140, 0)),
    textured=False,
)

TARGET_STYLE = Style(
    # Half way between the source colours and a dull "real" palette: the same things look different, but not
    # unrecognisably so, as between a game engine and a camera.
    palette={
        "sky": (132, 178, 230),
        "building": (155, 90, 78),
        "tree": (58, 142, 55),
        "pole": (168, 152, 72),
        "sidewalk": (162, 150, 128),
        "road": (85, 82, 88),
        "marking": (222, 220, 208),
        "glass": (55, 65, 95),
        "wheel": (28, 28, 28),
        "person": (160, 85, 140),
        "head": (215, 170, 140),
    },
    car_bodies=((40, 40, 45), (150, 150, 160), (115, 30, 35), (205, 205, 195), (60, 80, 60)),
    textured=True,
    noise_sigma=6.0,
    blur_sigma=0.8,
    gain_range=(0.55, 1.2),
    cast=0.1,
    extension=".jpg",
)

STYLES = {"source": SOURCE_STYLE, "target": TARGET_STYLE}


def make_scene(rng: np.random.Generator, height: int, width: int, num_frames: int) -> Scene:
    """Draw one street scene. Geometry scales with the canvas; the defaults are tuned for 64 x 128."""
    h, w = height, width
    horizon = int(rng.integers(int(0.36 * h), int(0.46 * h) + 1))
    far_sw = max(3, round(h / 16))
    near_sw = max(5, round(h / 9))
    road_top, road_bottom = horizon + far_sw, h - near_sw
    world_v = int(rng.choice([-2, -1, 0, 1, 2]))  # scene motion on screen from the camera's pan
    reach = 6 * num_frames  # fastest object speed x frames: the world must cover what comes into view
    x0, x1 = -reach, w + reach
    shapes: list[Shape] = []

    def add(cls, role, kind, x, y, sw, sh, vx, variant=0):
        if sw > 0 and sh > 0:
            shapes.append(Shape(cls, role, kind, int(x), int(y), int(sw), int(sh), int(vx), int(variant)))

    # Buildings along the horizon, trees in front of them, then poles on the far sidewalk.
    x = x0
    while x < x1:
        bw = int(rng.integers(w // 12, w // 4))
        top = int(rng.integers(2, max(3, horizon - h // 8)))
        add(BUILDING, "building", "rect", x, top, bw, horizon - top, world_v, rng.integers(1 << 30))
        x += bw + int(rng.integers(0, w // 16 + 1))
    for _ in range(int((x1 - x0) / w * 4)):
        r = int(rng.integers(h // 14, h // 7 + 1))
        cx = int(rng.integers(x0, x1))
        add(VEGETATION, "tree", "rect", cx - max(1, r // 4) // 2, horizon - r, max(1, r // 4), r, world_v)
        add(
            VEGETATION,
            "tree",
            "ellipse",
            cx - r,
            horizon - r - int(1.6 * r),
            2 * r,
            int(1.8 * r),
            world_v,
            rng.integers(1 << 30),
        )
    add(SIDEWALK, "sidewalk", "rect", x0, horizon, x1 - x0, far_sw, world_v)
    x = x0 + int(rng.integers(0, w // 4))
    while x < x1:
        ph = int(rng.integers(h // 4, h // 2))
        pw = 1 if rng.random() < 0.6 else 2
        add(POLE, "pole", "rect", x, horizon + far_sw - 1 - ph, pw, ph, world_v)
        if rng.random() < 0.4:  # a lamp arm or sign plate, still labelled pole
            add(POLE, "pole", "rect", x - 2, horizon + far_sw - 1 - ph, 5, 2, world_v)
        x += int(rng.integers(w // 6, w // 2))

    # Road with dashed lane markings, then the near sidewalk.
    add(ROAD, "road", "rect", x0, road_top, x1 - x0, road_bottom - road_top, world_v)
    lane_mid = (road_top + road_bottom) // 2
    for mx in range(x0, x1, 12):
        add(ROAD, "marking", "rect", mx, lane_mid, 6, 1, world_v)
    add(SIDEWALK, "sidewalk", "rect", x0, road_bottom, x1 - x0, near_sw, world_v)

    # People on the far sidewalk (small, behind the cars).
    for _ in range(int(rng.integers(2, 6))):
        _add_person(add, rng, int(rng.integers(x0, x1)), horizon + far_sw - 1, max(6, h // 9), world_v)

    # Cars: the far lane drives one way, the near lane the other; nearer cars are drawn later and bigger.
    for lane, (bottom, scale) in enumerate(((lane_mid - 1, 0.8), (road_bottom - 1, 1.0))):
        direction = -1 if lane == 0 else 1
        speed = int(rng.integers(1, 4))
        x = x0 + int(rng.integers(0, w // 2))
        while x < x1:
            cw = int(round(rng.integers(w // 8, w // 5) * scale))
            ch = max(3, int(round(cw * 0.32)))
            variant = int(rng.integers(1 << 30))
            vx = world_v + direction * speed
            body_top = bottom - ch + 1
            add(CAR, "car", "rect", x, body_top, cw, ch - 1, vx, variant)
            add(CAR, "glass", "rect", x + cw // 5, body_top - ch // 2 - 1, (3 * cw) // 5, ch // 2 + 1, vx)
            wr = max(2, ch // 2)
            for wx in (x + cw // 6, x + cw - cw // 6 - wr):
                add(CAR, "wheel", "ellipse", wx, bottom - wr + 1, wr, wr, vx)
            x += cw + int(rng.integers(w // 6, w // 2))

    # People on the near sidewalk and occasional near poles, in front of everything.
    for _ in range(int(rng.integers(1, 4))):
        _add_person(add, rng, int(rng.integers(x0, x1)), h - 2, max(10, h // 5), world_v)
    for _ in range(int(rng.integers(0, 3))):
        add(POLE, "pole", "rect", int(rng.integers(x0, x1)), int(rng.integers(2, horizon)), 2, h, world_v)

    return Scene(shapes=shapes, height=h, width=w, lighting_seed=int(rng.integers(1 << 30)))


def _add_person(add, rng: np.random.Generator, x: int, feet: int, height: int, world_v: int) -> None:
    vx = world_v + int(rng.choice([-1, 0, 1]))
    head = max(2, height // 4)
    body_w = max(2, height // 3)
    add(PERSON, "person", "rect", x, feet - height + head + 1, body_w, height - head, vx)
    add(PERSON, "head", "ellipse", x + (body_w - head) // 2, feet - height + 1, head, head, vx)


@dataclass
class RenderedFrame:
    image: np.ndarray  # H x W x 3 uint8, RGB
    label: np.ndarray  # H x W uint8 class ids
    flow: np.ndarray = field(repr=False)  # H x W x 2 float32, onto frame t-1 (zeros for frame 0)


def render(scene: Scene, t: int, style: Style, noise_rng: np.random.Generator) -> RenderedFrame:
    """Render frame ``t`` of ``scene`` in ``style``."""
    h, w = scene.height, scene.width
    label = np.full((h, w), SKY, dtype=np.uint8)
    motion = np.zeros((h, w), dtype=np.float32)  # the owning object's x displacement from t-1 to t
    image = np.empty((h, w, 3), dtype=np.float32)
    image[:] = style.palette["sky"]
    if style.textured:  # overcast sky: brighter towards the horizon
        image += np.linspace(-20, 15, h, dtype=np.float32)[:, None, None]

    for shape in scene.shapes:
        left = shape.x + shape.vx * t
        c0, c1 = max(left, 0), min(left + shape.w, w)
        r0, r1 = max(shape.y, 0), min(shape.y + shape.h, h)
        if c0 >= c1 or r0 >= r1:
            continue
        local = shape.mask()[r0 - shape.y : r1 - shape.y, c0 - left : c1 - left]
        region = (slice(r0, r1), slice(c0, c1))
        label[region][local] = shape.cls
        motion[region][local] = shape.vx
        ly, lx = np.mgrid[r0 - shape.y : r1 - shape.y, c0 - left : c1 - left]
        colour = _shape_colour(shape, style, ly, lx)
        image[region][local] = colour[local]

    if style.textured:
        image = _light(image, style, np.random.default_rng(scene.lighting_seed))
        if style.blur_sigma > 0:
            image = cv2.GaussianBlur(image, (0, 0), style.blur_sigma)
        image += noise_rng.normal(0.0, style.noise_sigma, image.shape).astype(np.float32)
    flow = np.zeros((h, w, 2), dtype=np.float32)
    if t > 0:
        flow[..., 0] = -motion  # pixel x at t came from x - vx at t-1
    return RenderedFrame(np.clip(np.round(image), 0, 255).astype(np.uint8), label, flow)


def _shape_colour(shape: Shape, style: Style, ly: np.ndarray, lx: np.ndarray) -> np.ndarray:
    """Colour of a shape's pixels in its own coordinates (so textures move with the object)."""
    jitter_rng = np.random.default_rng(shape.variant)
    if shape.role == "car":
        base = np.array(style.car_bodies[shape.variant % len(style.car_bodies)], dtype=np.float32)
    else:
        base = np.array(style.palette[shape.role], dtype=np.float32)
    base = base + jitter_rng.integers(-style.jitter, style.jitter + 1, 3)
    colour = np.broadcast_to(base, ly.shape + (3,)).copy()
    if not style.textured:
        return colour
    if shape.role == "building":  # rows of dark windows
        window = (lx % 6 >= 2) & (lx % 6 <= 3) & (ly % 7 >= 2) & (ly % 7 <= 4)
        colour[window] -= 60
    elif shape.role == "road":  # asphalt grain
        colour += 14 * _hash_noise(ly, lx, 1)[..., None]
    elif shape.role == "sidewalk":  # paving joints
        colour[(lx % 7 == 0) | (ly % 3 == 0)] -= 30
    elif shape.role == "tree":  # foliage
        colour += 30 * _hash_noise(ly // 2, lx // 2, 2)[..., None]
    elif shape.role == "car":  # a darker sill
        colour[ly >= ly.max(initial=0) - 1] *= 0.6
    return colour


def _hash_noise(ly: np.ndarray, lx: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic value noise in [-1, 1] from integer coordinates."""
    v = (ly.astype(np.int64) * 73856093) ^ (lx.astype(np.int64) * 19349663) ^ (salt * 83492791)
    v = (v ^ (v >> 13)) * 1274126177
    return ((v >> 7) % 1024).astype(np.float32) / 511.5 - 1.0


def _light(image: np.ndarray, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Per-sequence lighting: overall gain, a colour cast and a left-right shading gradient."""
    gain = rng.uniform(*style.gain_range)
    cast = 1.0 + rng.uniform(-style.cast, style.cast, 3).astype(np.float32)
    shade = np.linspace(*rng.uniform(0.8, 1.15, 2), image.shape[1], dtype=np.float32)[None, :, None]
    return image * (gain * cast) * shade
