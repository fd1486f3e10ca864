"""Saved masks, overlays of the worst images, and where two precisions disagree (save.masks, save.overlays)."""

from __future__ import annotations

import json

import cv2
import pandas as pd

from .conftest import TINY_FRAME, run_cli, tiny_overrides


def test_two_precision_sweep_saves_masks_galleries_and_flip_pictures(tmp_path, tiny_dataset, tiny_checkpoint):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "precision=force_float32,qint8_mixed_float32",
        "save.masks=true",
        "save.overlays=2",
        f"hydra.sweep.dir={sweep}",
        *tiny_overrides(tiny_dataset, tiny_checkpoint),
        "model.scale=0.5",  # the model sees 48x32; masks are written at the 96x64 frame size
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        record = json.loads((sweep / job / "result.json").read_text())
        n = record["metrics"]["num_images"]
        masks = sorted((sweep / job / "masks").glob("*.png"))
        assert len(masks) == n == record["saved"]["masks"] == record["saved"]["predictions"]
        mask = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == TINY_FRAME[::-1] and set(mask.ravel().tolist()) <= {0, 255}
        prediction = cv2.imread(str(next((sweep / job / "predictions").glob("*.png"))), cv2.IMREAD_GRAYSCALE)
        assert prediction.shape == (32, 48)
        overlays = record["saved"]["overlays"]
        assert len(overlays) == 2 and overlays[0]["dice"] <= overlays[1]["dice"]  # worst first
        per_image = pd.read_csv(sweep / job / "per_image.csv")
        assert abs(overlays[0]["dice"] - per_image["dice"].min()) < 1e-6  # per_image.csv keeps 6 decimals
        assert cv2.imread(str(sweep / job / overlays[0]["path"])).shape == (*TINY_FRAME[::-1], 3)
        assert "save" in record["timings"] and record["benchmark"]["engine"]["throughput_ips"] > 0
    markdown = (sweep / "results.md").read_text()
    assert "## Lowest-Dice images" in markdown and '<img src="0/overlays/' in markdown
    assert "## Where precisions disagree" in markdown and "worst image Δ" in markdown
    deltas = pd.read_csv(sweep / "per_image_vs_fp32.csv")
    assert set(deltas["precision"]) == {"qint8_mixed_float32"} and len(deltas) == n
    table = pd.read_csv(sweep / "results.csv")
    assert table["worst_image_delta_vs_fp32"][1] == deltas["delta"].min()
    flips = sorted((sweep / "flips").glob("*.png"))
    assert 1 <= len(flips) <= 3 and cv2.imread(str(flips[0])).shape == (32, 48, 3)
    assert f'<img src="flips/{flips[0].name}"' in markdown


def test_nothing_is_saved_by_default(tiny_job_cfg, tmp_path):
    from unet_pipeline.deploy import run_job

    record = run_job(tiny_job_cfg(), tmp_path / "job")
    assert "saved" not in record and "save" not in record["timings"]
    assert not any((tmp_path / "job" / d).exists() for d in ("masks", "overlays", "predictions"))
