"""A deterministic synthetic dataset in Carvana layout: the embedded demo and the data of offline tests.

Why: a fresh machine has neither the Kaggle data nor weights, yet `python -m unet_pipeline` must run the
whole chain. Each car is a seeded silhouette (body, cabin, windows, wheels) seen from a few views, with
what makes segmentation non-trivial: a soft floor shadow (not car), reflections and dark windows
(car), studio backgrounds with gradients, a floor line and noise. Masks mark body, windows and wheels,
as Carvana's do."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from filelock import FileLock
from PIL import Image

from unet_pipeline.core import PipelineError

log = logging.getLogger(__name__)

FRAME = (1918, 1280)  # Carvana width, height
VERSION = 1  # bump when drawing changes, so cached demo data is regenerated


@dataclass(frozen=True)
class CarStyle:
    """What stays the same across one car's views."""

    color: tuple[int, int, int]
    length: float  # body length as a share of the frame width (side view)
    height: float  # body height as a share of the frame height
    cabin: float  # cabin length as a share of the body length
    roof: float  # cabin height relative to body height
    wheel: float  # wheel radius relative to body height


def _car_style(rng: np.random.Generator) -> CarStyle:
    palette = [
        (200, 30, 30),
        (30, 60, 170),
        (235, 235, 235),
        (25, 25, 25),
        (150, 150, 155),
        (40, 120, 60),
        (230, 180, 40),
        (120, 20, 60),
        (90, 60, 40),
        (180, 200, 220),
    ]
    base = np.array(palette[rng.integers(len(palette))]) + rng.integers(-20, 21, 3)
    return CarStyle(
        color=tuple(int(c) for c in np.clip(base, 0, 255)),
        length=float(rng.uniform(0.55, 0.72)),
        height=float(rng.uniform(0.17, 0.23)),
        cabin=float(rng.uniform(0.42, 0.6)),
        roof=float(rng.uniform(0.65, 0.9)),
        wheel=float(rng.uniform(0.38, 0.5)),
    )


def _background(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int]:
    """Studio backdrop: a vertical gradient, a floor of another tone, low-frequency blotches."""
    tint = rng.uniform(-12, 12, 3)  # studios are near-grey, with a slight colour cast
    top, bottom = rng.uniform(150, 245) + tint, rng.uniform(110, 230) + tint
    floor_y = int(h * rng.uniform(0.62, 0.78))
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    column = (top * (1 - ramp) + bottom * ramp).astype(np.float32)
    column[floor_y:] *= np.float32(rng.uniform(0.75, 1.1))
    blotches = cv2.resize(rng.normal(0, 9, (9, 14)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = column + blotches[..., None]
    return np.clip(img, 0, 255).astype(np.uint8), floor_y


def _car_polygons(style: CarStyle, view: int, w: int, h: int, floor_y: int, rng: np.random.Generator):
    """Body, cabin, windows and wheels for one view: 0 side left, 1 side right, 2 front/back, 3 three-quarter."""
    stretch = (1.0, 1.0, 0.45, 0.78)[view % 4]
    length, body_h = style.length * w * stretch, style.height * h
    cx = w / 2 + rng.uniform(-0.04, 0.04) * w
    bottom = floor_y - style.wheel * body_h * 0.6
    left, right, top = cx - length / 2, cx + length / 2, bottom - body_h
    bevel = body_h * 0.35
    body = np.array(
        [
            [left, bottom],
            [left, top + bevel],
            [left + bevel, top],
            [right - bevel, top],
            [right, top + bevel * 0.6],
            [right, bottom],
        ]
    )
    cabin_len, roof_h = length * style.cabin, body_h * style.roof
    c_left = cx - cabin_len / 2 + (0.0 if view % 4 >= 2 else (-1) ** view * length * 0.05)
    cabin = np.array(
        [
            [c_left, top + 2],
            [c_left + cabin_len * 0.22, top - roof_h],
            [c_left + cabin_len * 0.8, top - roof_h],
            [c_left + cabin_len, top + 2],
        ]
    )
    inset = roof_h * 0.18
    window = np.array(
        [
            [c_left + inset * 1.6, top - 2],
            [c_left + cabin_len * 0.22 + inset * 0.6, top - roof_h + inset],
            [c_left + cabin_len * 0.8 - inset * 0.6, top - roof_h + inset],
            [c_left + cabin_len - inset * 1.6, top - 2],
        ]
    )
    radius = style.wheel * body_h
    if view % 4 == 2:
        wheels = [(left + radius * 0.9, bottom, radius * 0.55), (right - radius * 0.9, bottom, radius * 0.55)]
    else:
        wheels = [(left + length * 0.2, bottom, radius), (right - length * 0.2, bottom, radius)]
    return body, cabin, window, wheels


def render(car_seed: int, view: int, frame: tuple[int, int] = FRAME) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image and its {0,1} mask; the same (car_seed, view) always gives the same pixels."""
    w, h = frame
    car_rng = np.random.default_rng(car_seed)
    style = _car_style(car_rng)
    rng = np.random.default_rng([car_seed, view])
    img, floor_y = _background(rng, w, h)
    body, cabin, window, wheels = _car_polygons(style, view, w, h, floor_y, rng)
    # Shadow on the floor: dark, blurred, not part of the car.
    shadow = np.zeros((h, w), np.float32)
    cx = float(body[:, 0].mean())
    axes = (int((body[:, 0].max() - body[:, 0].min()) * 0.6), max(2, int(h * 0.03)))
    cv2.ellipse(shadow, (int(cx), int(floor_y)), axes, 0, 0, 360, 1.0, -1)
    shadow = cv2.GaussianBlur(shadow, (0, 0), sigmaX=max(1.0, w / 120))  # float32 throughout: ~4x faster
    img = (img * (1 - np.float32(0.55) * shadow[..., None])).astype(np.uint8)

    mask = np.zeros((h, w), np.uint8)
    shade = np.array(style.color, float)
    polys = [np.round(p).astype(np.int32) for p in (body, cabin)]
    for poly, factor in zip(polys, (1.0, 0.92), strict=True):
        cv2.fillPoly(img, [poly], tuple(int(c) for c in np.clip(shade * factor, 0, 255)), lineType=cv2.LINE_AA)
        cv2.fillPoly(mask, [poly], 1)
    cv2.fillPoly(img, [np.round(window).astype(np.int32)], (35, 45, 60), lineType=cv2.LINE_AA)
    for x, y, r in wheels:
        cv2.circle(img, (int(x), int(y)), int(r), (20, 20, 20), -1, lineType=cv2.LINE_AA)
        cv2.circle(img, (int(x), int(y)), int(r * 0.55), (160, 160, 165), -1, lineType=cv2.LINE_AA)
        cv2.circle(mask, (int(x), int(y)), int(r), 1, -1)
    # Reflections: light streaks across the body (inside the mask).
    streak = np.zeros((h, w), np.float32)
    top = int(body[:, 1].min())
    for _ in range(2):
        y0 = int(rng.uniform(top, body[:, 1].max()))
        cv2.line(
            streak, (int(body[:, 0].min()), y0), (int(body[:, 0].max()), y0 - int(h * 0.02)), 1.0, max(1, h // 150)
        )
    streak = cv2.GaussianBlur(streak, (0, 0), sigmaX=max(1.0, w / 400)) * mask
    noise = rng.normal(0, 4, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST)
    img = np.clip(img + np.float32(70) * streak[..., None] + noise, 0, 255).astype(np.uint8)
    return img, mask


def car_name(seed: int, car: int) -> str:
    """A Carvana-like 12-hex-digit car id."""
    return hashlib.sha1(f"synthetic-{seed}-{car}".encode()).hexdigest()[:12]


def write_dataset(root: Path, cars: int, views: int, frame: tuple[int, int] = FRAME, seed: int = 0) -> Path:
    """Write <root>/imgs/<car>_<NN>.jpg and <root>/masks/<car>_<NN>_mask.gif (palette values {0,1})."""
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for car in range(cars):
        name = car_name(seed, car)
        for view in range(views):
            img, mask = render(seed * 100_003 + car, view, frame)
            sample = f"{name}_{view + 1:02d}"
            cv2.imwrite(
                str(root / "imgs" / f"{sample}.jpg"),
                cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 92],
            )
            Image.fromarray(mask, mode="P").save(root / "masks" / f"{sample}_mask.gif")
    return root


def is_generated(root: Path) -> bool:
    return any(root.glob(".complete-v*"))


def ensure_dataset(root: Path, cars: int, views: int, frame: tuple[int, int] = FRAME, seed: int = 0) -> Path:
    """Generate the dataset once: into a temp dir, then renamed, so an interrupted run leaves nothing half-made.

    Only a directory this module generated is ever replaced (when its version or size differs).
    """
    marker = root / f".complete-v{VERSION}-{cars}x{views}-{frame[0]}x{frame[1]}-{seed}"
    if marker.is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):  # parallel jobs: one generates, the others wait
        if marker.is_file():
            return root
        if root.exists():
            shutil.rmtree(root)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
        try:
            write_dataset(tmp, cars, views, frame, seed)
            (tmp / marker.name).touch()
            os.replace(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root


def plan_data(data_cfg) -> str:
    """What the data config asks for, read-only: `real` (a dataset of its own at data.root), `generated` (generated
    before, used as it is) or `generate` (into data.synthetic.root, which the pipeline owns).

    Data is generated only into `data.synthetic.root` (data.root follows it by default). A data.root that holds a
    Carvana-layout dataset of its own (e.g. `data.root=<carvana dir>` with the default data group) is used as it
    is; one that is missing, empty or not in Carvana layout is refused in one line: nothing is ever written into
    it. The command-line check (preflight.py) calls this before any work, the job again where no check ran.
    """
    spec = data_cfg.get("synthetic")
    if not spec or not data_cfg.root:
        return "real"
    root = Path(data_cfg.root)
    owned = spec.get("root")
    ours = owned is not None and root.resolve() == Path(owned).resolve()
    if is_generated(root) and not ours:
        return "generated"  # generated before into a directory named then: used as it is, never regenerated
    if root.exists() and any(root.iterdir()) and not is_generated(root):
        if not ours and not (root / data_cfg.get("images_dir", "imgs")).is_dir():
            raise PipelineError(_not_carvana(root, "is not in Carvana layout (no imgs/ and masks/)", owned))
        return "real"
    if not ours:
        raise PipelineError(_not_carvana(root, "is empty" if root.exists() else "does not exist", owned))
    return "generate"


def ensure_configured(data_cfg) -> bool:
    """Generate the dataset where the data config asks for a synthetic one (plan_data); whether data.root holds
    generated data."""
    planned = plan_data(data_cfg)
    if planned == "real":
        if data_cfg.get("synthetic") and data_cfg.root:
            log.info(
                "data.root=%s holds a dataset of its own: evaluating it as it is (nothing generated)", data_cfg.root
            )
        return False
    if planned == "generate":
        spec = data_cfg.synthetic
        ensure_dataset(
            Path(data_cfg.root), spec.cars, spec.views, (data_cfg.frame_width, data_cfg.frame_height), spec.seed
        )
    return True


def _not_carvana(root: Path, what: str, owned: str | None) -> str:
    return (
        f"data.root={root} {what}: data.root is for real Carvana data (imgs/<car>_<NN>.jpg, masks/...): pick "
        "model=unet_carvana_small (or model=unet_carvana) with it; the demo model generates its own images into "
        f"data.synthetic.root={owned} (set that to generate them elsewhere)"
    )
