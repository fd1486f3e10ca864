"""The training loop behind `python -m unet_pipeline.train`.

milesial's recipe (cross-entropy + Dice loss, mixed precision, validation Dice every epoch, best
checkpoint kept) with AdamW + one-cycle LR. Cars are split three ways by the same stable hash the
pipeline uses: the pipeline's evaluation cars are never seen here, training-validation cars (for picking
the best epoch) are disjoint from training cars. Checkpoints are milesial format (state_dict +
`mask_values`); `last.pth` also carries optimizer and scheduler state for resuming.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
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
from unet_pipeline.training.validation import mean_validation_dice
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


@dataclass
class TrainingData:
    """The decoded training and validation sets, and the teachers' soft targets (None without teachers)."""

    train_set: list
    val_set: list
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    soft: np.ndarray | None
    hw: tuple[int, int]
    crop: tuple[int, int] | None

    @property
    def refit(self) -> bool:
        """train.val_fraction=0: nothing to validate, the last epoch is kept."""
        return not self.val_set


@dataclass
class RunState:
    """What an epoch changes and `last.pth` keeps, so that a resumed run continues exactly."""

    net: torch.nn.Module
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    history: list[dict[str, float]]
    start_epoch: int = 0
    best: float = -1.0

    @property
    def kept(self) -> torch.nn.Module:
        """The weights validated, picked and saved: the moving average where there is one."""
        return self.net if self.ema is None else self.ema.module


def train(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Train `cfg.model` on the training cars; best.pth, last.pth (resumable) and train.json into `out_dir`."""
    tc = cfg.train
    check_settings(tc)
    torch.manual_seed(tc.seed)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    data = load_training_data(cfg, out_dir)
    run = start_run(cfg, len(data.x_train))
    if tc.resume:
        resume(run, tc)
    bf16 = use_bf16(str(tc.amp.value))
    for epoch in range(run.start_epoch, tc.epochs):
        started = time.perf_counter()
        losses = train_epoch(run, data, tc, bf16, epoch)
        end_epoch(run, data, tc, epoch, losses, started, out_dir)
    return write_summary(cfg, data, run, bf16, out_dir)


def check_settings(tc: DictConfig) -> None:
    """Checkpoint paths, jitter and the moving average, refused in one line before any decoding."""
    require_checkpoints(tc)
    augment.check_photometric(tc.photometric)
    if tc.ema_decay is not None and not 0.0 < tc.ema_decay < 1.0:
        raise PipelineError(f"train.ema_decay={tc.ema_decay} must be in (0, 1), e.g. 0.995, or null to turn it off")


def load_training_data(cfg: DictConfig, out_dir: Path) -> TrainingData:
    """The split (evaluation cars never seen), decoded under the model's preprocessing, and the soft targets."""
    tc = cfg.train
    hw = input_hw(cfg.model, cfg.data)
    crop = crop_size(tc, hw)
    ensure_configured(cfg.data)
    train_set, val_set = train_val_samples(list_samples(cfg.data.root, cfg.data), cfg)
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
    soft = cached_soft_targets(train_set, cfg, hw, out_dir, tc.progress)  # None without train.teachers
    return TrainingData(train_set, val_set, x_train, y_train, x_val, y_val, soft, hw, crop)


def start_run(cfg: DictConfig, num_train: int) -> RunState:
    """The net (from scratch, from weights, or widened from narrower ones), its moving average, AdamW with a
    one-cycle schedule over every step of every epoch, and the shuffling generator."""
    tc = cfg.train
    net = build_unet(cfg.model)
    if tc.init_checkpoint and tc.init_widen:
        net = widen_into(net, read_checkpoint(tc.init_checkpoint)[0])  # narrower weights, same logits
        log.info("widened %s into base width %d", tc.init_checkpoint, cfg.model.base_width)
    elif tc.init_checkpoint:
        net, _ = load_unet(cfg.model, tc.init_checkpoint)
    net = net.to(memory_format=torch.channels_last).train()  # ~30% faster convolutions on CPU
    ema = moving_average(net, tc.ema_decay)
    steps = tc.epochs * math.ceil(num_train / tc.batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=tc.lr, total_steps=steps)
    return RunState(net, ema, optimizer, scheduler, np.random.default_rng(tc.seed), [])


def resume(run: RunState, tc: DictConfig) -> None:
    """Continue from `train.resume`'s last.pth: weights, optimizer, schedule, history and the generator's state
    (the same shuffles and flips as an uninterrupted run)."""
    state = torch.load(tc.resume, map_location="cpu", weights_only=True)
    run.net.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.start_epoch, run.best, run.history = state["epoch"], state["best_dice"], state["history"]
    if run.ema is not None:
        if "ema" not in state:
            raise PipelineError(f"train.resume={tc.resume} has no moving average: resume with train.ema_decay=null")
        run.ema.load_state_dict(state["ema"])
    if state["epochs"] != tc.epochs:
        raise PipelineError(
            f"train.resume continues a run of {state['epochs']} epochs (its one-cycle schedule), not "
            f"train.epochs={tc.epochs}; to train longer start anew from its weights: train.init_checkpoint=..."
        )
    log.info("resumed from %s after epoch %d (best Dice %.4f)", tc.resume, run.start_epoch, run.best)
    run.rng.bit_generator.state = state["rng"]


def train_epoch(run: RunState, data: TrainingData, tc: DictConfig, bf16: bool, epoch: int) -> list[float]:
    """One pass over the training images in a shuffled order: cross-entropy + Dice (+ distillation); the losses."""
    losses: list[float] = []
    order = run.rng.permutation(len(data.x_train))
    bar = tqdm(range(0, len(order), tc.batch_size), desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not tc.progress)
    for i in bar:
        idx = np.sort(order[i : i + tc.batch_size])
        t = None if data.soft is None else data.soft[idx]
        x, y, t = make_batch(data.x_train[idx], data.y_train[idx], data.crop, run.rng, t, tc.photometric)
        x = x.contiguous(memory_format=torch.channels_last)
        if tc.hflip and run.rng.random() < 0.5:
            x, y, t = x.flip(-1), y.flip(-1), None if t is None else t.flip(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = run.net(x)
        loss = F.cross_entropy(logits.float(), y) + dice_loss(logits, y)
        if t is not None:
            loss = loss + tc.distill_weight * distill_loss(logits, t, tc.distill_temperature)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(run.net)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", best_dice=f"{max(run.best, 0):.4f}")
    return losses


def end_epoch(
    run: RunState, data: TrainingData, tc: DictConfig, epoch: int, losses: list[float], started: float, out_dir: Path
) -> None:
    """Validate, keep best.pth when it improved (a refit: always), write last.pth, log the epoch."""
    val_dice = None if data.refit else mean_validation_dice(run.kept, data.x_val, data.y_val, tc.batch_size)
    entry: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": val_dice}
    if run.ema is not None and val_dice is not None:
        entry["val_dice_raw"] = mean_validation_dice(run.net, data.x_val, data.y_val, tc.batch_size)  # what EMA changed
    entry["seconds"] = time.perf_counter() - started  # the epoch's training and validation
    run.history.append(entry)
    if data.refit or val_dice > run.best:  # a refit keeps its last epoch
        run.best = -1.0 if data.refit else val_dice
        save_milesial(run.kept, out_dir / "best.pth")
    save_checkpoint(
        {
            "model": run.net.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "epoch": epoch + 1,
            "epochs": tc.epochs,
            "best_dice": run.best,
            "history": run.history,
            "rng": run.rng.bit_generator.state,
            **({} if run.ema is None else {"ema": run.ema.state_dict()}),
        },
        out_dir / "last.pth",
    )
    raw = f", raw weights {entry['val_dice_raw']:.5f}" if "val_dice_raw" in entry else ""
    scored = f"validation Dice {val_dice:.5f}{raw} (best {run.best:.5f})" if val_dice is not None else "refit"
    log.info("epoch %d: loss %.4f, %s, %.0f s", epoch + 1, entry["loss"], scored, entry["seconds"])


def write_summary(cfg: DictConfig, data: TrainingData, run: RunState, bf16: bool, out_dir: Path) -> dict[str, Any]:
    """train.json: every epoch's loss and validation Dice, what the run trained on and its config."""
    summary = {
        "best_val_dice": None if data.refit else run.best,
        "history": run.history,
        "bf16_autocast": bf16,
        "input_size": list(data.hw),
        "crop": None if data.crop is None else list(data.crop),
        "teachers": [OmegaConf.to_container(t, resolve=True) for t in cfg.train.teachers],
        "train_images": len(data.train_set),
        "val_images": len(data.val_set),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out_dir / "train.json", summary)
    return summary
