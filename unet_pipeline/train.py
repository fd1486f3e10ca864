"""`python -m unet_pipeline.train [overrides]`: train the UNet on a Carvana-layout dataset.

milesial's recipe (cross-entropy + Dice loss, mixed precision, validation Dice every epoch, best
checkpoint kept) with AdamW + one-cycle LR. Cars are split three ways by the same stable hash the
pipeline uses: the pipeline's evaluation cars are never seen here, training-validation cars (for picking
the best epoch) are disjoint from training cars. Checkpoints are milesial format (state_dict +
`mask_values`); `last.pth` also carries optimizer and scheduler state for resuming.
"""

from __future__ import annotations

import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import augment, preflight
from .config import register_configs
from .data import Preprocessing, Sample, held_out_cars, list_samples, load_pair, select_eval, to_model_input
from .distill import cached_soft_targets, distill_loss
from .errors import PipelineError
from .metrics import dice_per_image, predict_labels
from .model import build_unet, input_hw, load_unet, read_checkpoint
from .records import write_atomic, write_json
from .synthetic import ensure_configured
from .widen import widen_into

log = logging.getLogger(__name__)
MASK_VALUES = [0, 1]


def train_val_samples(samples: list[Sample], cfg: DictConfig) -> tuple[list[Sample], list[Sample]]:
    """(train, validation) over the cars the pipeline does not evaluate on; the two share no car.

    train.val_fraction=0 is a refit: no validation cars, every non-evaluation car trains, and the last epoch is
    kept (its epoch count chosen beforehand by a validated run of the same recipe)."""
    eval_cars = {s.car for s in select_eval(samples, cfg.data)} if cfg.data.split == "val" else set()
    pool = [s for s in samples if s.car not in eval_cars]
    refit = cfg.train.val_fraction == 0
    val_cars = set() if refit else held_out_cars({s.car for s in pool}, cfg.train.val_fraction)
    train = [s for s in pool if s.car not in val_cars]
    val = [s for s in pool if s.car in val_cars]
    if cfg.train.max_images:
        train = train[: cfg.train.max_images]
        val = val[: max(1, cfg.train.max_images // 4)]
    if not train or not (val or refit):
        raise PipelineError(f"too few cars to train: {len(train)} training and {len(val)} validation images")
    return train, val


def load_arrays(samples: list[Sample], hw: tuple[int, int], prep: Preprocessing, progress: bool, desc: str):
    """Decode and resize once, exactly as inference does (the model's Preprocessing); epochs then read from
    memory. Kept as uint8 pixels (HxWx3) and uint8 labels: a quarter of float32's memory (6 GB at 640x959)."""
    if not samples:  # a refit's validation set
        return np.empty((0, *hw, 3), np.uint8), np.empty((0, *hw), np.uint8)
    pairs = [load_pair(s, hw, prep, uint8_nhwc=True) for s in tqdm(samples, desc=desc, disable=not progress)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]).astype(np.uint8)


def make_batch(
    pixels: np.ndarray,
    labels: np.ndarray,
    crop: tuple[int, int] | None,
    rng: np.random.Generator,
    soft: np.ndarray | None = None,
    photometric: DictConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A training batch as the engine is fed (float32 NCHW in [0, 1], `to_model_input`), its labels and, with
    teachers, their soft targets, each image cropped at its own random offset when `crop` (height, width) is set:
    the UNet is fully convolutional, so crops of the full-size input train it at a fraction of a frame's cost.
    `photometric` (train.photometric) jitters the photos' colours, never their labels or targets."""
    if crop is not None:
        height, width = labels.shape[1:]
        tops = rng.integers(0, height - crop[0] + 1, len(pixels))
        lefts = rng.integers(0, width - crop[1] + 1, len(pixels))
        windows = [np.s_[t : t + crop[0], left : left + crop[1]] for t, left in zip(tops, lefts, strict=True)]
        pixels = np.stack([p[w] for p, w in zip(pixels, windows, strict=True)])
        labels = np.stack([m[w] for m, w in zip(labels, windows, strict=True)])
        soft = None if soft is None else np.stack([t[w] for t, w in zip(soft, windows, strict=True)])
    if photometric is not None and augment.enabled(photometric):
        pixels = augment.jitter(pixels, photometric, rng)
    x = np.stack([to_model_input(p) for p in pixels])
    targets = None if soft is None else torch.from_numpy(np.ascontiguousarray(soft))
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64)), targets


def crop_size(tc: DictConfig, hw: tuple[int, int]) -> tuple[int, int] | None:
    """train.crop as (height, width), checked against the model input it is cut from."""
    if not tc.crop:
        return None
    crop = (int(tc.crop[0]), int(tc.crop[1]))
    if len(tc.crop) != 2 or not (0 < crop[0] <= hw[0] and 0 < crop[1] <= hw[1]):
        raise PipelineError(
            f"train.crop={list(tc.crop)} must be [height, width] within the model input {hw[0]}x{hw[1]}; "
            "use e.g. train.crop=[320,480], or train.crop=null for whole inputs"
        )
    return crop


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """milesial's multiclass Dice loss: 1 - mean over classes of the batch-reduced soft Dice."""
    probs = F.softmax(logits.float(), dim=1).flatten(0, 1)
    one_hot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float().flatten(0, 1)
    inter = 2 * (probs * one_hot).sum()
    sets = probs.sum() + one_hot.sum()
    return 1 - (inter + eps) / (sets + eps)


def use_bf16(mode: str) -> bool:
    """bf16 autocast where the CPU has native bf16 (AMX/AVX512-BF16); emulated bf16 is slower than fp32."""
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if mode == "bf16" and not native:
        raise PipelineError("train.amp=bf16 but this CPU has no native bf16; use train.amp=auto or off")
    return mode == "bf16" or (mode == "auto" and native)


@torch.no_grad()
def validation_scores(net: torch.nn.Module, images: np.ndarray, masks: np.ndarray, batch: int) -> np.ndarray:
    """Per-image Dice, computed as the pipeline computes it (the net is left in training mode)."""
    net.eval()
    scores = []
    for i in range(0, len(images), batch):
        x = np.stack([to_model_input(p) for p in images[i : i + batch]])
        logits = net(torch.from_numpy(x)).float().numpy()
        scores.append(dice_per_image(predict_labels(logits), masks[i : i + batch]))
    net.train()
    return np.concatenate(scores)


def validate(net: torch.nn.Module, images: np.ndarray, masks: np.ndarray, batch: int) -> float:
    """Mean per-image Dice: what picks the epoch."""
    return float(validation_scores(net, images, masks, batch).mean())


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """torch.save, written atomically: a run killed mid-write leaves the previous checkpoint intact."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def save_milesial(weights: torch.nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    """A net's (or a state_dict's) weights + mask_values: loadable by the pipeline and by milesial's predict.py."""
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    save_checkpoint({**{k: v.detach().clone() for k, v in state.items()}, "mask_values": MASK_VALUES}, path)


def moving_average(net: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """train.ema_decay: an exponential moving average of the weights (and BatchNorm statistics), updated after
    every step; validated and saved instead of the raw weights, which jump with each batch's gradient."""
    if decay is None:
        return None
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def require_checkpoints(tc: DictConfig) -> None:
    """Every checkpoint the run will read, checked before minutes of decoding: one line naming the key."""
    wanted = [("train.init_checkpoint", tc.init_checkpoint), ("train.resume", tc.resume)]
    wanted += [(f"train.teachers[{i}].checkpoint", t.checkpoint) for i, t in enumerate(tc.teachers or [])]
    for key, path in wanted:
        if path and not Path(path).is_file():
            raise PipelineError(f"{key}={path}: no such file (give the path of a .pth checkpoint, or null)")


def train(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    tc = cfg.train
    require_checkpoints(tc)
    augment.check_photometric(tc.photometric)
    if tc.ema_decay is not None and not 0.0 < tc.ema_decay < 1.0:
        raise PipelineError(f"train.ema_decay={tc.ema_decay} must be in (0, 1), e.g. 0.995, or null to turn it off")
    torch.manual_seed(tc.seed)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    hw = input_hw(cfg.model, cfg.data)
    crop = crop_size(tc, hw)
    ensure_configured(cfg.data)
    samples = list_samples(cfg.data.root, cfg.data)
    train_set, val_set = train_val_samples(samples, cfg)
    log.info(
        "training on %d images (%d cars), validating on %d images (%d cars), input %dx%d, crops %s",
        len(train_set),
        len({s.car for s in train_set}),
        len(val_set),
        len({s.car for s in val_set}),
        *hw,
        "off" if crop is None else f"{crop[0]}x{crop[1]}",
    )
    prep = Preprocessing.of(cfg.model, cfg.data)
    x_train, y_train = load_arrays(train_set, hw, prep, tc.progress, "loading train")
    x_val, y_val = load_arrays(val_set, hw, prep, tc.progress, "loading val")
    refit = not val_set  # train.val_fraction=0: nothing to validate, the last epoch is kept
    soft = cached_soft_targets(train_set, cfg, hw, out_dir, tc.progress)  # None without train.teachers

    net = build_unet(cfg.model)
    if tc.init_checkpoint and tc.init_widen:
        net = widen_into(net, read_checkpoint(tc.init_checkpoint)[0])  # narrower weights, same logits
        log.info("widened %s into base width %d", tc.init_checkpoint, cfg.model.base_width)
    elif tc.init_checkpoint:
        net, _ = load_unet(cfg.model, tc.init_checkpoint)
    net = net.to(memory_format=torch.channels_last).train()  # ~30% faster convolutions on CPU
    ema = moving_average(net, tc.ema_decay)
    steps_per_epoch = math.ceil(len(x_train) / tc.batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=tc.lr, total_steps=tc.epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    start_epoch, best = 0, -1.0
    if tc.resume:
        state = torch.load(tc.resume, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"], state["best_dice"], state["history"]
        if ema is not None:
            if "ema" not in state:
                raise PipelineError(f"train.resume={tc.resume} has no moving average: resume with train.ema_decay=null")
            ema.load_state_dict(state["ema"])
        if state["epochs"] != tc.epochs:
            raise PipelineError(
                f"train.resume continues a run of {state['epochs']} epochs (its one-cycle schedule), not "
                f"train.epochs={tc.epochs}; to train longer start anew from its weights: train.init_checkpoint=..."
            )
        log.info("resumed from %s after epoch %d (best Dice %.4f)", tc.resume, start_epoch, best)
    bf16 = use_bf16(tc.amp)
    rng = np.random.default_rng(tc.seed)
    if tc.resume:
        rng.bit_generator.state = state["rng"]  # the same shuffles and flips as an uninterrupted run

    for epoch in range(start_epoch, tc.epochs):
        t0, losses = time.perf_counter(), []
        order = rng.permutation(len(x_train))
        bar = tqdm(range(0, len(order), tc.batch_size), desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not tc.progress)
        for i in bar:
            idx = np.sort(order[i : i + tc.batch_size])
            t = None if soft is None else soft[idx]
            x, y, t = make_batch(x_train[idx], y_train[idx], crop, rng, t, tc.photometric)
            x = x.contiguous(memory_format=torch.channels_last)
            if tc.hflip and rng.random() < 0.5:
                x, y, t = x.flip(-1), y.flip(-1), None if t is None else t.flip(-1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y) + dice_loss(logits, y)
            if t is not None:
                loss = loss + tc.distill_weight * distill_loss(logits, t, tc.distill_temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(net)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", best_dice=f"{max(best, 0):.4f}")
        kept = net if ema is None else ema.module  # the weights validated, picked and saved
        val_dice = None if refit else validate(kept, x_val, y_val, tc.batch_size)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": val_dice})
        if ema is not None and val_dice is not None:
            history[-1]["val_dice_raw"] = validate(net, x_val, y_val, tc.batch_size)  # what EMA changed
        history[-1]["seconds"] = time.perf_counter() - t0
        if refit or val_dice > best:  # a refit keeps its last epoch
            best = -1.0 if refit else val_dice
            save_milesial(kept, out_dir / "best.pth")
        save_checkpoint(
            {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "epochs": tc.epochs,
                "best_dice": best,
                "history": history,
                "rng": rng.bit_generator.state,
                **({} if ema is None else {"ema": ema.state_dict()}),
            },
            out_dir / "last.pth",
        )
        raw = f", raw weights {history[-1]['val_dice_raw']:.5f}" if "val_dice_raw" in history[-1] else ""
        scored = f"validation Dice {val_dice:.5f}{raw} (best {best:.5f})" if val_dice is not None else "refit"
        log.info("epoch %d: loss %.4f, %s, %.0f s", epoch + 1, history[-1]["loss"], scored, history[-1]["seconds"])
    summary = {
        "best_val_dice": None if refit else best,
        "history": history,
        "bf16_autocast": bf16,
        "input_size": list(hw),
        "crop": None if crop is None else list(crop),
        "teachers": [OmegaConf.to_container(t, resolve=True) for t in tc.teachers],
        "train_images": len(train_set),
        "val_images": len(val_set),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out_dir / "train.json", summary)
    return summary


@hydra.main(version_base="1.3", config_path="pkg://unet_pipeline.conf", config_name="train")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = train(cfg, out_dir)
    except PipelineError as exc:
        raise SystemExit(f"error: {exc}") from None
    best = summary["best_val_dice"]
    picked = "last epoch (refit, no validation)" if best is None else f"best validation Dice {best:.4f}"
    print(f"{picked}; checkpoint: {out_dir / 'best.pth'}")


register_configs()

if __name__ == "__main__":
    preflight.exit_on_error("train")
    main()
