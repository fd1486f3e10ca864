"""Dice as the MagicMind sample computes it, against hand-computed cases."""

import numpy as np
import pytest

from unet_pipeline.metrics import dice_per_image, predict_labels


def test_hand_computed_cases():
    true = np.array([[[1, 1, 0, 0]], [[1, 1, 0, 0]], [[0, 0, 0, 0]], [[1, 0, 0, 0]], [[0, 0, 0, 0]]], np.uint8)
    pred = np.array([[[1, 1, 0, 0]], [[1, 0, 1, 0]], [[0, 0, 0, 0]], [[0, 0, 0, 0]], [[0, 1, 1, 0]]], np.uint8)
    # perfect; 2*1/(2+2); both empty -> 1; missed everything -> 0; false positives only -> 0
    expected = [1.0, 0.5, 1.0, 0.0, 0.0]
    assert dice_per_image(pred, true) == pytest.approx(expected, abs=1e-5)


def test_eps_matches_milesial_formula():
    true = np.array([[[1, 1, 1, 0]]], np.uint8)
    pred = np.array([[[1, 0, 0, 1]]], np.uint8)
    eps = 1e-6
    assert dice_per_image(pred, true)[0] == pytest.approx((2 * 1 + eps) / (2 + 3 + eps), rel=1e-12)


def test_argmax_foreground_and_ties_go_to_background():
    logits = np.zeros((1, 2, 1, 3), np.float32)
    logits[0, 1, 0, 0] = 1.0  # foreground wins
    logits[0, 0, 0, 1] = 1.0  # background wins
    # pixel 2: tie -> background (np.argmax picks the first class)
    assert predict_labels(logits).tolist() == [[[1, 0, 0]]]
    three = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    assert (predict_labels(three) == three.argmax(1)).all()


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        dice_per_image(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))


def test_full_resolution_dice_upsamples_the_logits_not_the_mask():
    import torch
    import torch.nn.functional as F

    from unet_pipeline.metrics import dice_full, upsampled_labels

    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 2, 8, 12)).astype(np.float32)
    up = F.interpolate(torch.from_numpy(logits), size=(32, 48), mode="bilinear", align_corners=False).numpy()
    reference = (up[:, 1] > up[:, 0]).astype(np.uint8)  # torch's bilinear before the argmax, as milesial's predict
    ours = np.stack([upsampled_labels(one, 32, 48) for one in logits])
    assert np.count_nonzero(ours != reference) <= 2  # float rounding at exact ties only
    assert dice_full(logits, list(ours)) == pytest.approx([1.0, 1.0])  # its own upsampled labels: perfect
    shifted = [np.roll(m, 3, axis=1) for m in ours]
    scores = dice_full(logits, shifted)
    assert (scores < 1).all() and scores == pytest.approx(dice_per_image(ours, np.stack(shifted)), abs=1e-9)
    three = rng.normal(size=(3, 8, 12)).astype(np.float32)
    assert upsampled_labels(three, 32, 48).max() <= 2  # more than two classes: per-class planes, then argmax
