"""Soft targets from teacher weights, for `train.teachers` (knowledge distillation).

Why: at 640x959 the UNet's receptive field (fixed in pixels) sees half the car it sees at 320x479, and the
640x959 weights make twice the errors far from the car's outline that the 320x479 weights make there (measured
on the held-out cars: 487 against 234 pixels per image), while being better at the outline itself (1624 against
1707). A teacher that averages both scales (0.9927 there, against 0.9916) gives the student, at every pixel, the
better of the two opinions to learn from, instead of the hard labels alone.

Each teacher is the student's architecture and preprocessing at its own `scale` with its own weights; it sees
the same photo at its own input size, and its logits are upsampled bilinearly to the student's input size (as
full-resolution Dice upsamples). The teachers' logit differences (foreground minus background) are averaged and
kept as float16 at the student's size, cropped and flipped with the student's batch. They cost ~2 s per image
on 2 cores (27 min for 808), so a run keeps them in its dir, keyed by the teachers' weights and scales, the
photos' content, the size and the preprocessing, and a resumed run reads them back (checked by an xxh3 sum)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xxhash
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from unet_pipeline.core import PipelineError, array_checksum, content_key, file_sha256, write_atomic
from unet_pipeline.data import Preprocessing, Sample, input_hw, load_input
from unet_pipeline.model import load_unet


def teacher_models(cfg: DictConfig) -> list[DictConfig]:
    """The student's model config with each teacher's `scale` and `checkpoint` (2 classes only)."""
    tc = cfg.train
    if not tc.teachers:
        return []
    if cfg.model.n_classes != 2:
        raise PipelineError(f"train.teachers needs model.n_classes=2 (a foreground logit), not {cfg.model.n_classes}")
    if tc.distill_temperature <= 0 or tc.distill_weight < 0:
        raise PipelineError(
            f"train.distill_temperature={tc.distill_temperature} must be > 0 and train.distill_weight="
            f"{tc.distill_weight} >= 0 (e.g. 1.0 and 1.0)"
        )
    bad = [t.scale for t in tc.teachers if not 0 < t.scale <= 1]
    if bad:
        raise PipelineError(f"train.teachers scale {bad[0]} must be in (0, 1] (0.25 -> 320x479, 0.5 -> 640x959)")
    return [
        OmegaConf.merge(
            cfg.model,
            {"scale": t.scale, "checkpoint": t.checkpoint, "base_width": t.base_width or cfg.model.base_width},
        )
        for t in tc.teachers
    ]


@torch.no_grad()
def soft_targets(samples: list[Sample], cfg: DictConfig, hw: tuple[int, int], progress: bool) -> np.ndarray | None:
    """(n, H, W) float16: the teachers' mean foreground-minus-background logit at the student's input size
    `hw`, one per training sample; None without teachers."""
    models = teacher_models(cfg)
    if not models:
        return None
    nets = [load_unet(m, m.checkpoint)[0] for m in models]
    sizes = [input_hw(m, cfg.data) for m in models]
    prep = Preprocessing.of(cfg.model, cfg.data)
    out = np.empty((len(samples), *hw), np.float16)
    for i, sample in enumerate(tqdm(samples, desc="teacher targets", disable=not progress)):
        total = torch.zeros(hw)
        for net, size in zip(nets, sizes, strict=True):
            logits = net(torch.from_numpy(load_input(sample, size, prep)[None]))  # the photo alone, no mask
            logits = F.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
            total += logits[0, 1] - logits[0, 0]
        out[i] = (total / len(nets)).numpy()
    return out


def cached_soft_targets(
    samples: list[Sample], cfg: DictConfig, hw: tuple[int, int], out_dir: Path, progress: bool
) -> np.ndarray | None:
    """`soft_targets`, read from `out_dir` where a run with the same key wrote them intact, else computed and
    written there (atomically, beside a sidecar with their key and checksum)."""
    models = teacher_models(cfg)
    if not models:
        return None
    parts = {
        "teachers": [
            {"sha256": file_sha256(m.checkpoint), "scale": m.scale, "base_width": m.base_width} for m in models
        ],
        "architecture": {k: cfg.model[k] for k in ("bilinear", "n_classes")},
        "photos": [xxhash.xxh3_64_hexdigest(s.image.read_bytes()) for s in samples],
        "hw": list(hw),
        "preprocessing": Preprocessing.of(cfg.model, cfg.data).key(),
    }
    key = content_key(parts)
    path, sidecar = out_dir / "teacher_targets.npy", out_dir / "teacher_targets.json"
    try:
        meta = json.loads(sidecar.read_text())
        targets = np.load(path)
        if meta["key"] == key and targets.shape == (len(samples), *hw) and meta["xxh3"] == _checksum(targets):
            return targets
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent, another key or damaged: computed again
    targets = soft_targets(samples, cfg, hw, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, targets)
    os.replace(tmp, path)
    write_atomic(sidecar, json.dumps({"key": key, "xxh3": _checksum(targets)}))
    return targets


def _checksum(array: np.ndarray) -> str:
    """The targets' checksum as the sidecar keeps it (hex)."""
    return f"{array_checksum(array):016x}"


def distill_loss(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Binary cross-entropy of the student's foreground probability against the teachers' (two classes: the
    softmax cross-entropy with soft targets), both softened by `temperature`, scaled by its square (Hinton et al.)
    so the gradient's size does not depend on it."""
    student = (logits[:, 1] - logits[:, 0]).float() / temperature
    teacher = torch.sigmoid(target.float() / temperature)
    return F.binary_cross_entropy_with_logits(student, teacher) * temperature**2
