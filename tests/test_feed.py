"""The feeder: batches prepared by worker threads into reused buffers hold exactly what one-by-one loading gives,
in order, whatever the number of workers and batches ahead; bad samples fail or are left out as before."""

from __future__ import annotations

import time

import numpy as np
import pytest

from unet_pipeline.core import BadSampleError, PipelineError
from unet_pipeline.data import DEFAULT_PREP, list_samples, load_pair, read_mask
from unet_pipeline.data.input_cache import HEADER, InputCache
from unet_pipeline.deploy.stages.feed import Feeder
from unet_pipeline.engines import BuildSpec, Precision
from unet_pipeline.metrics import BlockCounts, dice_of_batch, dice_per_image, predict_labels

from .test_data import data_cfg

HW = (32, 48)


def spec(batch: int, input_format: str = "float_nchw", batch_range: tuple[int, int] | None = None) -> BuildSpec:
    return BuildSpec(
        precision=Precision("force_float32"),
        shape="dynamic" if batch_range else "static",
        batch=batch,
        batch_range=batch_range,
        input_hw=HW,
        channels=3,
        device="cpu",
        input_format=input_format,
    )


def consume(feeder: Feeder) -> list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]:
    """Each batch copied when it is handed over, after a pause that lets the workers run ahead: a worker writing
    into the buffers of the batch in hand would show up as a difference from one-by-one loading."""
    out = []
    for batch in feeder:
        time.sleep(0.02)
        out.append(([s.id for s in batch.samples], batch.inputs.copy(), batch.masks.copy(), batch.mask_pixels.copy()))
    return out


@pytest.fixture
def samples(tiny_dataset):
    return list_samples(str(tiny_dataset), data_cfg())[:7]


@pytest.mark.parametrize(("workers", "ahead"), [(0, 0), (1, 0), (1, 2), (3, 1), (2, 5)])
@pytest.mark.parametrize("input_format", ["float_nchw", "uint8_nhwc"])
def test_batches_equal_one_by_one_loading_in_order(samples, workers, ahead, input_format):
    s = spec(3, input_format)
    batches = consume(Feeder(samples, s, workers, ahead, skip_bad=False))
    assert [ids for ids, *_ in batches] == [[x.id for x in samples[i : i + 3]] for i in (0, 3, 6)]
    for ids, inputs, masks, pixels in batches:
        assert len(inputs) == 3  # static shape: the short last batch is padded with zero rows
        for row, sample_id in enumerate(ids):
            image, mask = load_pair(next(x for x in samples if x.id == sample_id), HW, uint8_nhwc=s.uint8_nhwc)
            assert np.array_equal(inputs[row], image) and np.array_equal(masks[row], mask.astype(bool))
            assert pixels[row] == np.count_nonzero(mask)
        assert not inputs[len(ids) :].any()


@pytest.mark.parametrize("input_format", ["float_nchw", "uint8_nhwc"])
def test_input_cache_feeds_the_same_batches(samples, tmp_path, input_format):
    s = spec(2, input_format)
    plain = consume(Feeder(samples, s, 2, 2, skip_bad=False))
    for filled in (False, True):  # filling the cache, then reading from it
        cache = InputCache(tmp_path, HW, DEFAULT_PREP)
        cached = consume(Feeder(samples, s, 2, 2, skip_bad=False, input_cache=cache))
        assert cache.record() == ({"hits": 7, "misses": 0} if filled else {"hits": 0, "misses": 7})
        for a, b in zip(plain, cached, strict=True):
            assert a[0] == b[0] and all(np.array_equal(x, y) for x, y in zip(a[1:], b[1:], strict=True))


@pytest.mark.parametrize("cached", [False, True])
def test_source_size_masks_are_the_decoded_ones_cached_or_not(samples, tmp_path, cached):
    """Full-resolution Dice's ground truth: the mask as decoded, also when a warm input cache feeds the batch
    (its entry holds the mask bit-packed at the source size, so no GIF is decoded again)."""
    cache = InputCache(tmp_path, HW, DEFAULT_PREP, BlockCounts(HW)) if cached else None
    for _ in range(2 if cached else 1):  # cold, then warm
        batches = list(Feeder(samples, spec(3), 2, 1, skip_bad=False, input_cache=cache, full_masks=True))
        got = [mask for batch in batches for mask in batch.full_masks]
        assert len(got) == len(samples)
        for sample, mask in zip(samples, got, strict=True):
            decoded = read_mask(sample.mask)
            assert np.array_equal(mask.unpacked(), decoded) and mask.pixels == np.count_nonzero(decoded)
            assert np.array_equal(mask.blocks, BlockCounts(HW)(decoded))  # what full-res Dice sums by cell
    assert cache is None or cache.record() == {"hits": len(samples), "misses": len(samples)}


DAMAGES = ["flip a pixel", "flip a source mask bit", "flip a block count", "truncate", "other size", "not an entry"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_input_cache_entry_is_recomputed_never_trusted(samples, tmp_path, damage):
    first = InputCache(tmp_path, HW, DEFAULT_PREP, BlockCounts(HW))
    pixels, mask = np.empty((*HW, 3), np.uint8), np.empty(HW, np.uint8)
    full = first.read_into(samples[0], pixels, mask, full_mask=True)
    decoded = read_mask(samples[0].mask)
    assert np.array_equal(np.unpackbits(full.packed)[: decoded.size].reshape(decoded.shape), decoded)
    (entry,) = (tmp_path / "inputs").glob("*.bin")
    data = bytearray(entry.read_bytes())
    if damage == "flip a pixel":
        data[HEADER.size + 5] ^= 1  # same size, valid header: only the checksum can tell
    elif damage == "flip a source mask bit":
        data[HEADER.size + pixels.nbytes + mask.nbytes + 2] ^= 4  # the packed source-size mask
    elif damage == "flip a block count":
        data[-3] ^= 4  # the mask's counts per model cell, last in the entry
    elif damage == "truncate":
        del data[-10:]
    elif damage == "other size":  # a well-formed entry of another model size, as many bytes, under this key
        hw = (HW[0] // 2, HW[1] * 2)
        InputCache(tmp_path / "other", hw, DEFAULT_PREP, BlockCounts(hw)).read_into(
            samples[0], np.empty((*hw, 3), np.uint8), np.empty(hw, np.uint8)
        )
        data = bytearray(next((tmp_path / "other" / "inputs").glob("*.bin")).read_bytes())
    else:
        data[:8] = b"PK\x03\x04junk"[:8]
    entry.write_bytes(bytes(data))
    again = InputCache(tmp_path, HW, DEFAULT_PREP, BlockCounts(HW))
    got_pixels, got_mask = np.full_like(pixels, 7), np.full_like(mask, 7)
    got_full = again.read_into(samples[0], got_pixels, got_mask, full_mask=True)
    assert again.record() == {"hits": 0, "misses": 1}
    assert np.array_equal(got_pixels, pixels) and np.array_equal(got_mask, mask)
    assert np.array_equal(got_full.packed, full.packed) and np.array_equal(got_full.summary, full.summary)
    assert entry.read_bytes() != bytes(data)  # rewritten whole
    again.read_into(samples[0], got_pixels, got_mask)
    assert again.record() == {"hits": 1, "misses": 1}


def test_dynamic_shape_pads_only_to_the_smallest_batch(samples):
    last = list(Feeder(samples[:5], spec(4, batch_range=(2, 8)), 2, 1, skip_bad=False))[-1]
    assert len(last.samples) == 1 and last.inputs.shape[0] == 2 and not last.inputs[1].any()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_sample_fails_naming_it_or_is_left_out(samples, workers):
    bad = samples[4].image
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(BadSampleError, match=str(bad)):
        list(Feeder(samples, spec(3), workers, 1, skip_bad=False))
    batches = consume(Feeder(samples, spec(3), workers, 1, skip_bad=True))
    ids = [i for b in batches for i in b[0]]
    assert ids == [s.id for s in samples if s.image != bad]
    _, inputs, masks, _ = batches[1]  # the batch that held it: the good rows moved up, the freed row zeroed
    for row, sample in enumerate([samples[3], samples[5]]):
        image, mask = load_pair(sample, HW)
        assert np.array_equal(inputs[row], image) and np.array_equal(masks[row], mask.astype(bool))
    assert not inputs[2].any()


def test_every_sample_of_a_batch_bad_yields_an_empty_batch(samples):
    for sample in samples[:2]:
        sample.mask.write_bytes(b"not a gif")
    first, *rest = Feeder(samples, spec(2), 2, 1, skip_bad=True)
    assert first.samples == [] and len(first.skipped) == 2 and len(rest) == 3


def test_mask_of_another_size_is_refused(samples, tmp_path):
    from PIL import Image

    with Image.open(samples[0].mask) as mask:
        mask.resize((mask.width + 2, mask.height)).save(samples[0].mask)
    with pytest.raises(BadSampleError, match="masks must match their images"):
        list(Feeder(samples, spec(2), 2, 1, skip_bad=False))


def test_dice_of_batch_is_the_reference_dice():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 2, 16, 24)).astype(np.float32)
    logits[3, 1] = -9  # predicts nothing
    masks = rng.random((5, 16, 24)) > 0.6
    masks[3] = masks[4] = False  # an empty mask, predicted empty (1.0) and not (~0)
    reference = dice_per_image(predict_labels(logits), masks.astype(np.uint8))
    fast = dice_of_batch(logits, masks, np.count_nonzero(masks.reshape(5, -1), axis=1))
    assert np.array_equal(fast, reference) and fast[3] == 1.0
    three = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    mask3 = rng.random((2, 8, 8)) > 0.5
    assert np.array_equal(
        dice_of_batch(three, mask3, mask3.sum((1, 2))), dice_per_image(predict_labels(three), mask3.astype(np.uint8))
    )


def test_negative_feed_settings_are_refused_in_one_line(samples):
    with pytest.raises(PipelineError, match=r"data\.workers=-1 .* must be 0 or more"):
        Feeder(samples, spec(2), -1, 2, skip_bad=False)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_held_batch_stays_intact_while_the_next_ones_are_prepared(samples, workers):
    """hold=1: the inference loop scores batch k while k+1 runs in the engine, so k's arrays must survive the
    preparation of the batches after it."""
    expected = [b.masks.copy() for b in Feeder(samples, spec(2), workers, 1, skip_bad=False)]
    held = None
    for index, batch in enumerate(Feeder(samples, spec(2), workers, 1, skip_bad=False, hold=1)):
        if held is not None:
            assert np.array_equal(held.masks, expected[index - 1])  # still batch k-1's, with batch k prepared
        held = batch
