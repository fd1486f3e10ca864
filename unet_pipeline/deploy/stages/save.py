"""Pictures of what the model predicted: mask PNGs, overlays of the worst images, predictions for comparison.

Runs after the timed stages, in a pass of its own over the images it needs, so writing images never
changes a timed figure (the price: one more inference pass over those images, only when asked for)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from unet_pipeline.core import write_atomic
from unet_pipeline.data import DEFAULT_PREP, Preprocessing, Sample, load_input, read_image, read_mask
from unet_pipeline.deploy.stages.evaluate import pad_batch
from unet_pipeline.engines import BuildSpec, Session
from unet_pipeline.metrics import fast_upsampled_labels, predict_labels

MASKS_DIR, OVERLAYS_DIR, PREDICTIONS_DIR = "masks", "overlays", "predictions"
PREDICTED, TRUTH = (0, 0, 255), (0, 255, 0)  # BGR: predicted outline red, ground truth green


@dataclass
class Saved:
    masks: int = 0
    overlays: list[dict[str, object]] = field(default_factory=list)  # {"id", "dice", "path"} worst first
    predictions: int = 0


def write_mask_png(path: Path, labels: np.ndarray) -> None:
    """A label map as a PNG of 0 (background) and 255 (car), written atomically."""
    ok, encoded = cv2.imencode(".png", (labels > 0).astype(np.uint8) * 255)
    assert ok, "PNG encoding of a uint8 image cannot fail"
    write_atomic(path, encoded.tobytes())


def overlay(photo_rgb: np.ndarray, predicted: np.ndarray, truth: np.ndarray, dice: float) -> np.ndarray:
    """BGR photo with the predicted outline (red) and the ground-truth outline (green), Dice top left."""
    canvas = cv2.cvtColor(photo_rgb, cv2.COLOR_RGB2BGR)
    thickness = max(2, photo_rgb.shape[1] // 480)
    for labels, colour in ((truth, TRUTH), (predicted, PREDICTED)):
        contours, _ = cv2.findContours((labels > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, colour, thickness)
    scale = photo_rgb.shape[1] / 960
    text = f"Dice {dice:.4f}  red: predicted  green: truth"
    cv2.rectangle(canvas, (0, 0), (int(720 * scale), int(44 * scale)), (0, 0, 0), -1)
    cv2.putText(canvas, text, (int(8 * scale), int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255),
                max(1, int(2 * scale)), cv2.LINE_AA)  # fmt: skip
    return canvas


def save_outputs(
    session: Session,
    samples: list[Sample],
    dice: dict[str, float],
    spec: BuildSpec,
    out_dir: Path,
    masks: bool,
    overlays: int,
    prep: Preprocessing = DEFAULT_PREP,
) -> Saved:
    """Masks of every image (`masks`), overlays of the `overlays` lowest-Dice images, and with overlays the
    model-resolution predictions of every image (for the sweep's comparison against fp32)."""
    saved = Saved()
    worst = set(sorted(dice, key=dice.get)[:overlays])
    wanted = [s for s in samples if s.id in dice]
    for start in range(0, len(wanted), spec.batch):
        chunk = wanted[start : start + spec.batch]
        inputs = [load_input(s, spec.input_hw, prep, spec.uint8_nhwc) for s in chunk]  # no mask needed
        logits = session.infer(pad_batch(np.stack(inputs), spec))[: len(chunk)]
        for sample, one in zip(chunk, logits, strict=True):
            if overlays:
                write_mask_png(out_dir / PREDICTIONS_DIR / f"{sample.id}.png", predict_labels(one[None])[0])
                saved.predictions += 1
            if not masks and sample.id not in worst:
                continue
            photo = read_image(sample.image)
            labels = fast_upsampled_labels(one, *photo.shape[:2])  # as full-resolution Dice
            if masks:
                write_mask_png(out_dir / MASKS_DIR / f"{sample.id}.png", labels)
                saved.masks += 1
            if sample.id in worst:
                path = out_dir / OVERLAYS_DIR / f"{sample.id}.jpg"
                image = overlay(photo, labels, read_mask(sample.mask), dice[sample.id])
                write_atomic(path, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
                relative = str(path.relative_to(out_dir))
                saved.overlays.append({"id": sample.id, "dice": dice[sample.id], "path": relative})
    saved.overlays.sort(key=lambda o: o["dice"])
    return saved
