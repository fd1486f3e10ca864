"""Full-resolution Dice by cells: the same label map as upsampling every frame, bit for bit, and the same Dice."""

from __future__ import annotations

import numpy as np
import pytest

from unet_pipeline.metrics import (
    BlockCounts,
    FullTruth,
    dice_full,
    dice_full_exact,
    fast_upsampled_labels,
    upsampled_labels,
)
from unet_pipeline.metrics.frame_grid import frame_grid

from .conftest import CARVANA, needs_carvana

# (model h, w) -> (frame h, w): Carvana's 4x rows with 4.004x columns, 2x both ways, a 3x row factor (frame
# pixels exactly on model pixels: the wide window), odd factors with no exact band, and a downsampling one
GEOMETRIES = [
    ((8, 12), (32, 48)),
    ((20, 30), (40, 60)),
    ((16, 24), (48, 72)),
    ((21, 31), (64, 91)),
    ((10, 12), (80, 100)),
    ((40, 60), (20, 30)),
]


def hard_logits(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(2, h, w) logits made to be hard: a smooth field crossing zero often, exact zeros and ties, values
    barely above zero beside large ones, and a few cells of identical values."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    field = np.sin(yy / 2.3 + rng.uniform(0, 6)) * np.cos(xx / 3.1) * 4 + rng.normal(0, 0.5, shape)
    field[rng.random(shape) < 0.1] = 0.0  # ties: background, as argmax over equal logits
    field[rng.random(shape) < 0.05] = 1e-7  # barely positive
    field[rng.random(shape) < 0.05] = np.round(field[rng.random(shape) < 0.05].mean(), 1) if h * w > 40 else 1.0
    background = rng.normal(0, 3, shape).astype(np.float32)
    return np.stack([background, background + field.astype(np.float32)])


@pytest.mark.parametrize(("model_hw", "frame_hw"), GEOMETRIES)
def test_label_maps_and_dice_equal_upsampling_every_frame(model_hw, frame_hw):
    rng = np.random.default_rng(sum(model_hw) + sum(frame_hw))
    for _ in range(12):
        logits = hard_logits(rng, model_hw)
        reference = upsampled_labels(logits, *frame_hw)
        assert np.array_equal(fast_upsampled_labels(logits, *frame_hw), reference)
        mask = (rng.random(frame_hw) < 0.5).astype(np.uint8) if rng.random() < 0.5 else reference ^ 1
        truth = FullTruth.of(mask, model_hw)
        assert dice_full_exact(logits[None], [truth]).tolist() == dice_full(logits[None], [mask]).tolist()


def test_wide_windows_where_frame_pixels_sit_on_model_pixels():
    assert frame_grid((16, 24), (48, 72)).rows.wide  # 3x: every third frame row lies on a model row
    assert not frame_grid((320, 479), (1280, 1918)).cols.wide
    assert frame_grid((320, 479), (1280, 1918)).band == 4 and frame_grid((21, 31), (64, 91)).band == 0


def test_what_the_cells_cannot_decide_is_upsampled_as_before():
    rng = np.random.default_rng(3)
    three = rng.normal(size=(3, 8, 12)).astype(np.float32)  # more than two classes
    assert np.array_equal(fast_upsampled_labels(three, 32, 48), upsampled_labels(three, 32, 48))
    for bad in (np.nan, np.inf, -np.inf):
        logits = rng.normal(size=(2, 8, 12)).astype(np.float32)
        logits[1, 3, 4] = bad
        mask = (rng.random((32, 48)) < 0.5).astype(np.uint8)
        assert np.array_equal(fast_upsampled_labels(logits, 32, 48), upsampled_labels(logits, 32, 48))
        assert dice_full_exact(logits[None], [FullTruth.of(mask, (8, 12))]) == pytest.approx(
            dice_full(logits[None], [mask]), abs=0
        )


def test_block_counts_sum_the_mask_per_cell():
    rng = np.random.default_rng(5)
    mask = (rng.random((64, 91)) < 0.3).astype(np.uint8)
    grid = frame_grid((21, 31), (64, 91))
    blocks = BlockCounts((21, 31))(mask)
    assert blocks.shape == grid.areas.shape and int(blocks.sum()) == int(mask.sum())
    r, c = 7, 11
    rows = slice(grid.rows.starts[r], grid.rows.starts[r] + grid.rows.counts[r])
    cols = slice(grid.cols.starts[c], grid.cols.starts[c] + grid.cols.counts[c])
    assert blocks[r, c] == mask[rows, cols].sum() and (blocks <= grid.areas).all()
    truth = FullTruth.of(mask, (21, 31))
    assert np.array_equal(truth.unpacked(), mask) and truth.pixels == int(mask.sum())


def held_out_logits(compose, model: str, count: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """fp32 logits of the bundled model on the held-out cars' images, and their source-size masks."""
    import torch

    from unet_pipeline.data import DEFAULT_PREP, input_hw, list_samples, load_pair_full, select_eval, to_model_input
    from unet_pipeline.model import load_unet

    cfg = compose([f"model={model}", f"data.root={CARVANA}"])
    samples = select_eval(list_samples(cfg.data.root, cfg.data), cfg.data)[:count]
    net, _ = load_unet(cfg.model, cfg.model.checkpoint)
    size = input_hw(cfg.model, cfg.data)
    logits, masks = [], []
    for sample in samples:
        pixels, _, mask = load_pair_full(sample, size, DEFAULT_PREP)
        with torch.no_grad():
            logits.append(net.eval()(torch.from_numpy(to_model_input(pixels, False))[None])[0].numpy())
        masks.append(mask)
    return np.stack(logits), masks


def _check_held_out(compose, model: str, count: int | None) -> None:
    logits, masks = held_out_logits(compose, model, count)
    for one, mask in zip(logits, masks, strict=True):
        assert np.array_equal(fast_upsampled_labels(one, *mask.shape), upsampled_labels(one, *mask.shape))
    truths = [FullTruth.of(m, logits.shape[2:]) for m in masks]
    assert dice_full_exact(logits, truths).tolist() == dice_full(logits, masks).tolist()


@needs_carvana()
@pytest.mark.parametrize("model", ["unet_carvana_small", "unet_carvana_medium_640"])
def test_held_out_cars_a_few_images(compose_cfg, model):
    _check_held_out(compose_cfg, model, 6)


@needs_carvana()
@pytest.mark.slow
@pytest.mark.parametrize("model", ["unet_carvana_small", "unet_carvana_medium_640"])
def test_held_out_cars_every_image(compose_cfg, model):
    _check_held_out(compose_cfg, model, None)
