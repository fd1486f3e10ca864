"""Comparing weights without training: `soup` averages checkpoints, `validate` scores any weights on the
training-validation cars exactly as `train` picks its epoch."""

from __future__ import annotations

import pytest
import torch

from unet_pipeline.core import PipelineError
from unet_pipeline.model import load_unet, read_checkpoint
from unet_pipeline.soup import main as soup_main
from unet_pipeline.training import train, validation_dice

from .conftest import write_checkpoint
from .test_train import TINY_TRAIN


def test_the_soup_is_the_mean_of_its_checkpoints_and_loads_as_a_unet(compose_cfg, tmp_path):
    a, b = write_checkpoint(tmp_path / "a.pth", seed=0), write_checkpoint(tmp_path / "b.pth", seed=1)
    state_a, state_b = read_checkpoint(a)[0], read_checkpoint(b)[0]
    state_b["inc.double_conv.1.num_batches_tracked"] = torch.tensor(7)
    torch.save({**state_b, "mask_values": [0, 1]}, b)
    assert soup_main([str(a), str(b), "-o", str(tmp_path / "soup.pth")]) == 0
    soup, mask_values = read_checkpoint(tmp_path / "soup.pth")
    key = "inc.double_conv.0.weight"
    assert not torch.equal(state_a[key], state_b[key])
    torch.testing.assert_close(soup[key], (state_a[key] + state_b[key]) / 2)
    assert int(soup["inc.double_conv.1.num_batches_tracked"]) == 7 and mask_values == [0, 1]
    cfg = compose_cfg(["model=unet_demo", "model.base_width=4"])
    load_unet(cfg.model, tmp_path / "soup.pth")  # one UNet of the same shape, milesial format


@pytest.mark.parametrize("case", ["other_width", "output_is_input", "one_checkpoint"])
def test_the_soup_refuses_in_one_line_and_leaves_its_inputs_alone(tmp_path, capsys, case):
    a = write_checkpoint(tmp_path / "a.pth")
    b = write_checkpoint(tmp_path / "b.pth", base_width=8)
    before = a.read_bytes()
    args = {
        "other_width": [str(a), str(b), "-o", str(tmp_path / "soup.pth")],
        "output_is_input": [str(a), str(b), "-o", str(a)],
        "one_checkpoint": [str(a), "-o", str(tmp_path / "soup.pth")],
    }[case]
    assert soup_main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert a.read_bytes() == before and not (tmp_path / "soup.pth").exists()


def test_validate_scores_weights_as_training_picked_them(compose_cfg, train_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    overrides = [*TINY_TRAIN, f"data.root={train_data}"]
    summary = train(compose_cfg([*overrides, "train.epochs=1"], config_name="train"), out)
    record = validation_dice(compose_cfg([*overrides, f"model.checkpoint={out / 'best.pth'}"], config_name="train"))
    assert record["val_dice"] == pytest.approx(summary["best_val_dice"], abs=1e-6)
    assert record["val_images"] == summary["val_images"] == len(record["per_image"])


def test_validate_needs_weights(compose_cfg, train_data):
    cfg = compose_cfg([*TINY_TRAIN, f"data.root={train_data}"], config_name="train")
    with pytest.raises(PipelineError, match=r"model\.checkpoint="):
        validation_dice(cfg)
