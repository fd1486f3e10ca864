"""`python -m unet_pipeline.train [overrides]`: train the UNet on a Carvana-layout dataset.

milesial's recipe (cross-entropy + Dice loss, mixed precision, validation Dice every epoch, best
checkpoint kept) with AdamW + one-cycle LR. Cars are split three ways by the same stable hash the
pipeline uses: the pipeline's evaluation cars are never seen here, training-validation cars (for picking
the best epoch) are disjoint from training cars. Checkpoints are milesial format (state_dict +
`mask_values`); `last.pth` also carries optimizer and scheduler state for resuming."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from unet_pipeline.core import PipelineError, write_json
from unet_pipeline.data import Preprocessing, ensure_configured, input_hw, list_samples
from unet_pipeline.model import build_unet, load_unet, read_checkpoint, save_checkpoint, save_milesial
from unet_pipeline.training import augment
from unet_pipeline.training.batches import crop_size, load_arrays, make_batch, train_val_samples
from unet_pipeline.training.distill import cached_soft_targets, distill_loss
from unet_pipeline.training.validation import validate
from unet_pipeline.training.widen import widen_into

log = logging.getLogger(__name__)


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
