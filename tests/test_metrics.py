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
