"""Dataset listing, the car-disjoint split, the calibration draw and decoding."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from unet_pipeline.core import PipelineError
from unet_pipeline.data import (
    car_id,
    held_out_cars,
    list_samples,
    load_pair,
    read_mask,
    select_calibration,
    select_eval,
)

from .conftest import CARVANA, needs_carvana, write_dataset


def data_cfg(**kw):
    base = dict(
        split="val", val_fraction=0.5, num_images=None, images_dir="imgs", masks_dir="masks", mask_suffix="_mask"
    )
    return OmegaConf.create({**base, **kw})


def test_car_id():
    assert car_id("0cdf5b5d0ce1_01") == "0cdf5b5d0ce1"
    assert car_id("a_b_16") == "a_b"
    assert car_id("plain") == "plain"


def test_split_is_car_disjoint_deterministic_and_capped(tiny_dataset):
    samples = list_samples(str(tiny_dataset), data_cfg())
    assert len(samples) == 12
    evaluation = select_eval(samples, data_cfg())
    eval_cars = {s.car for s in evaluation}
    assert len(eval_cars) == 2  # half of 4 cars
    assert all(s.car in eval_cars for s in samples if s in evaluation)
    assert [s.id for s in select_eval(samples, data_cfg())] == [s.id for s in evaluation]
    capped = select_eval(samples, data_cfg(num_images=4))
    assert len(capped) == 4 and set(capped) <= set(evaluation)
    assert len(select_eval(samples, data_cfg(split="all"))) == 12


def test_held_out_share():
    cars = {f"c{i}" for i in range(63)}
    held = held_out_cars(cars, 0.1)
    assert len(held) == 6 and held == held_out_cars(set(sorted(cars)), 0.1)
    with pytest.raises(PipelineError):
        held_out_cars(cars, 1.0)


def test_calibration_is_disjoint_and_seeded(tiny_dataset):
    samples = list_samples(str(tiny_dataset), data_cfg())
    evaluation = select_eval(samples, data_cfg())
    picked, overlaps = select_calibration(samples, evaluation, 4, seed=0)
    assert not overlaps and len(picked) == 4
    assert not {s.car for s in picked} & {s.car for s in evaluation}
    assert select_calibration(samples, evaluation, 4, seed=0)[0] == picked
    assert select_calibration(samples, evaluation, 4, seed=1)[0] != picked


def test_calibration_overlap_is_flagged_not_hidden(tiny_dataset):
    samples = list_samples(str(tiny_dataset), data_cfg())
    everything = select_eval(samples, data_cfg(split="all"))
    picked, overlaps = select_calibration(samples, everything, 5, seed=0)
    assert overlaps and len(picked) == 5
    with pytest.raises(PipelineError, match="num_samples=99"):
        select_calibration(samples, everything, 99, seed=0)


@pytest.mark.parametrize(("root", "message"), [(None, "data.root is not set"), ("/nonexistent", "not a directory")])
def test_missing_root(root, message):
    with pytest.raises(PipelineError, match=message):
        list_samples(root, data_cfg())


def test_image_without_mask_and_mask_without_image(tmp_path):
    root = write_dataset(tmp_path / "a", cars=1, views=2)
    first = sorted(p.stem for p in (root / "imgs").iterdir())[0]
    (root / "masks" / f"{first}_mask.gif").unlink()
    with pytest.raises(PipelineError, match=rf"have no mask, e\.g\. {first}"):
        list_samples(str(root), data_cfg())
    root = write_dataset(tmp_path / "b", cars=1, views=2)
    (root / "imgs" / f"{first}.jpg").unlink()
    with pytest.raises(PipelineError, match=rf"have no image, e\.g\. {first}"):
        list_samples(str(root), data_cfg())


def test_mask_values(tmp_path):
    for values, ok in (([0, 1], True), ([0, 255], True), ([0, 7], False)):
        path = tmp_path / f"m{values[1]}.png"  # PNG keeps raw values; GIF would re-index them
        Image.fromarray(np.array([[values[0], values[1]]], np.uint8), mode="L").save(path)
        if ok:
            assert read_mask(path).tolist() == [[0, 1]]
        else:
            with pytest.raises(PipelineError, match="must be binary"):
                read_mask(path)


def test_broken_image_and_size_mismatch(tiny_dataset):
    samples = list_samples(str(tiny_dataset), data_cfg())
    samples[0].image.write_bytes(b"not a jpeg")
    with pytest.raises(PipelineError, match="cannot decode image"):
        load_pair(samples[0], (32, 48))
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="P").save(samples[1].mask)
    with pytest.raises(PipelineError, match="masks must match their images"):
        load_pair(samples[1], (32, 48))


def test_preprocessing_range_and_layout(tiny_dataset):
    sample = list_samples(str(tiny_dataset), data_cfg())[0]
    image, mask = load_pair(sample, (32, 48))
    assert image.shape == (3, 32, 48) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert mask.shape == (32, 48) and set(np.unique(mask)) <= {0, 1}


@needs_carvana()
def test_real_carvana_layout():
    samples = list_samples(str(CARVANA), data_cfg())
    assert len(samples) == 1000
    evaluation = select_eval(samples, data_cfg(val_fraction=0.1))
    cars = {s.car for s in samples}
    assert len({s.car for s in evaluation}) == round(len(cars) * 0.1)
    image, mask = load_pair(evaluation[0], (640, 959))
    assert image.shape == (3, 640, 959) and 0.05 < mask.mean() < 0.6


def test_demo_generation_never_touches_a_users_dataset(tiny_dataset):
    from unet_pipeline.data import ensure_configured, is_generated

    before = sorted(p.name for p in (tiny_dataset / "imgs").iterdir())
    cfg = OmegaConf.create(
        dict(root=str(tiny_dataset), synthetic=dict(cars=2, views=1, seed=0), frame_width=96, frame_height=64)
    )
    assert ensure_configured(cfg) is False
    assert sorted(p.name for p in (tiny_dataset / "imgs").iterdir()) == before and not is_generated(tiny_dataset)


def test_demo_generation_is_deterministic_and_cached(tmp_path):
    from unet_pipeline.data import ensure_configured

    demo = str(tmp_path / "demo")
    cfg = OmegaConf.create(
        dict(root=demo, synthetic=dict(root=demo, cars=2, views=2, seed=3), frame_width=96, frame_height=64)
    )
    assert ensure_configured(cfg) is True
    first = {p.name: p.read_bytes() for p in (tmp_path / "demo" / "masks").iterdir()}
    stamp = (tmp_path / "demo" / "imgs").stat().st_mtime_ns
    ensure_configured(cfg)
    assert (tmp_path / "demo" / "imgs").stat().st_mtime_ns == stamp  # reused, not regenerated
    again = str(tmp_path / "again")
    ensure_configured(OmegaConf.merge(cfg, {"root": again, "synthetic": {"root": again}}))
    assert {p.name: p.read_bytes() for p in (tmp_path / "again" / "masks").iterdir()} == first
    assert len(first) == 4 and all(len(list_samples(str(tmp_path / d), data_cfg())) == 4 for d in ("demo", "again"))


@pytest.mark.parametrize(("kind", "what"), [("missing", "does not exist"), ("empty", "is empty"), ("other", "layout")])
def test_demo_data_is_never_generated_into_a_users_data_root(tmp_path, kind, what):
    """data.root pointing elsewhere than the demo's own directory: one line naming the fix, nothing written."""
    from unet_pipeline.core import PipelineError
    from unet_pipeline.data import ensure_configured

    root = tmp_path / "users"
    if kind != "missing":
        root.mkdir()
    if kind == "other":
        (root / "notes.txt").write_text("not images")
    before = sorted(p.name for p in root.iterdir()) if root.exists() else None
    cfg = OmegaConf.create(
        dict(root=str(root), synthetic=dict(root=str(tmp_path / "demo"), cars=2, views=1, seed=0), frame_width=96,
             frame_height=64)
    )  # fmt: skip
    with pytest.raises(PipelineError, match=what) as info:
        ensure_configured(cfg)
    assert "model=unet_carvana_small" in str(info.value) and "\n" not in str(info.value)
    assert (sorted(p.name for p in root.iterdir()) if root.exists() else None) == before
    assert not (tmp_path / "demo").exists()
