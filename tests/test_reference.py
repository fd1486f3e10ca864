"""The pipeline against the model's own framework: milesial/Pytorch-UNet's preprocessing and Dice, as
unet_pipeline/reference.py re-implements them (PIL, torch; independent of the pipeline's code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from unet_pipeline.data import Preprocessing, Sample, list_samples, load_input, load_pair, resize_mask, select_eval
from unet_pipeline.metrics import dice_of_batch, dice_per_image
from unet_pipeline.metrics.reference import milesial_dice, milesial_mask, milesial_photo

from .conftest import CARVANA, needs_carvana

FRAME = (1280, 1918)


def _carvana_samples(count: int) -> list[Sample]:
    data = OmegaConf.create({"images_dir": "imgs", "masks_dir": "masks", "mask_suffix": "_mask", "split": "val",
                             "val_fraction": 0.1, "num_images": None})  # fmt: skip
    return select_eval(list_samples(str(CARVANA), data), data)[:count]


@needs_carvana()
@pytest.mark.parametrize("scale", [0.5, 0.25])
def test_pil_bicubic_input_is_milesials_bit_for_bit(scale):
    hw = (int(scale * FRAME[0]), int(scale * FRAME[1]))
    for sample in _carvana_samples(2):
        ours = load_input(sample, hw, Preprocessing("pil_bicubic"))
        reference = milesial_photo(sample.image, scale)
        assert ours.dtype == reference.dtype == np.float32 and ours.shape == reference.shape
        assert np.array_equal(ours, reference)


@needs_carvana()
@pytest.mark.parametrize("resize", ["pil_bicubic", "cv2_cubic", "cv2_area"])
def test_ground_truth_is_pil_nearest_bit_for_bit_whatever_the_photo_resize(resize):
    for scale in (0.5, 0.25):
        hw = (int(scale * FRAME[0]), int(scale * FRAME[1]))
        for sample in _carvana_samples(2):
            _, mask = load_pair(sample, hw, Preprocessing(resize))
            assert np.array_equal(mask, milesial_mask(sample.mask, scale))


def test_centre_aligned_nearest_on_a_pattern():
    """A 1-pixel stripe pattern halves to the pixels PIL's NEAREST picks (the centre of each 2x2 block), where
    OpenCV's INTER_NEAREST would pick the top-left one."""
    stripes = np.tile(np.array([[0, 1], [0, 1]], np.uint8), (4, 4))  # columns 0, 1, 0, 1, ...
    half = resize_mask(stripes, (4, 4))
    reference = np.asarray(Image.fromarray(stripes).resize((4, 4), resample=Image.NEAREST))
    assert np.array_equal(half, reference) and half.all()  # centre of [0, 1] -> the 1 column


@pytest.mark.parametrize("case", ["random", "both_empty", "empty_prediction", "empty_mask", "perfect"])
def test_dice_is_milesials_to_1e6(case):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 2, 24, 36)).astype(np.float32)
    masks = (rng.random((3, 24, 36)) > 0.6).astype(np.int64)
    if case in ("both_empty", "empty_prediction"):
        logits[:, 1] = logits[:, 0] - 1  # everything background
    if case in ("both_empty", "empty_mask"):
        masks[:] = 0
    if case == "perfect":
        logits[:, 1] = np.where(masks == 1, 5.0, -5.0)
        logits[:, 0] = 0
    reference = milesial_dice(torch.from_numpy(logits), torch.from_numpy(masks))
    labels = (logits[:, 1] > logits[:, 0]).astype(np.uint8)
    assert dice_per_image(labels, masks.astype(np.uint8)) == pytest.approx(reference, abs=1e-6)
    as_bool = masks.astype(bool)
    fast = dice_of_batch(logits, as_bool, as_bool.reshape(3, -1).sum(axis=1))
    assert fast == pytest.approx(reference, abs=1e-6)


@needs_carvana()
def test_pipeline_dice_is_milesials_on_real_images(compose_cfg, tmp_path):
    """fp32 job of the bundled compact model under pil_bicubic (PyTorch engine: the same graph) against the
    reference's preprocessing and Dice on the same weights and held-out images: within 1e-6 per image
    (per_image.csv rounds to 6 decimals)."""
    from unet_pipeline.deploy import run_job
    from unet_pipeline.model import load_unet

    cfg = compose_cfg(
        ["model=unet_carvana_small", f"data.root={CARVANA}", "model.resize=pil_bicubic", "engine=torch",
         "data.num_images=6", "benchmark.enabled=false", "progress=false", f"cache.dir={tmp_path / 'cache'}"]
    )  # fmt: skip
    record = run_job(cfg, tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["job"]["resize"] == "pil_bicubic"
    import pandas as pd

    ours = pd.read_csv(tmp_path / "job" / "per_image.csv").set_index("image_id")["dice"]
    net, _ = load_unet(cfg.model, cfg.model.checkpoint)
    net.eval()
    scale = cfg.model.scale
    for sample in _carvana_samples(6):
        with torch.no_grad():
            logits = net(torch.from_numpy(milesial_photo(sample.image, scale))[None])
        (reference,) = milesial_dice(logits, torch.from_numpy(milesial_mask(sample.mask, scale))[None])
        assert ours[sample.id] == pytest.approx(reference, abs=1.5e-6), sample.id  # per_image.csv: 6 decimals
