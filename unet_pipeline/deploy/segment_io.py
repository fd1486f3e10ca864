"""What `segment` reads and writes: the images of a folder (recursively, a deterministic shard of them), their masks
where given, and the outputs (one PNG per image, mirrored, and/or one run-length CSV) written so that no work is lost.

Why this care: a folder of thousands of frames takes hours; a run killed at any point (kill -9 included) must leave
only whole files, and a re-run must do only what is missing. PNGs are written atomically (temp file, fsync,
rename); CSV rows are appended and flushed per batch, and a torn last line is cut off when the file is reopened.
Nothing is ever written into the input folder.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from unet_pipeline.core import PipelineError, write_atomic
from unet_pipeline.data import Sample
from unet_pipeline.data.rle import HEADER

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MASK_NAMES = ("{stem}_mask.gif", "{stem}_mask.png", "{stem}.gif", "{stem}.png")  # Carvana's first
FORMATS = ("png", "rle", "both")


def shard_suffix(shard: int, num_shards: int) -> str:
    """'' for an unsharded run, '.shard-2-of-4' for shard 2 of 4: per-shard files never collide."""
    return "" if num_shards == 1 else f".shard-{shard}-of-{num_shards}"


def list_images(root: Path, masks: Path | None, shard: int, num_shards: int) -> list[Sample]:
    """Every image under `root` (recursively, by relative path), this shard's share of them (every
    `num_shards`-th from `shard`), each with its mask from `masks` (Carvana's `<stem>_mask.gif` or a same-named
    file) when given; `id` is the relative path without suffix."""
    if not root.is_dir():
        raise PipelineError(f"input={root} is not a directory of images (*.jpg, *.jpeg, *.png, searched recursively)")
    if not 0 <= shard < num_shards:
        raise PipelineError(f"shard={shard} num_shards={num_shards}: need 0 <= shard < num_shards")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    ids = [str(p.relative_to(root).with_suffix("")) for p in found]
    if len(set(ids)) != len(ids):
        twin = next(i for i in ids if ids.count(i) > 1)
        raise PipelineError(f"two images under {root} would write the same mask ({twin}.*): rename one")
    mine = list(zip(ids, found, strict=True))[shard::num_shards]
    return [Sample(i, p, _mask_of(masks, i) if masks else None) for i, p in mine]


def _mask_of(masks: Path, image_id: str) -> Path:
    rel = Path(image_id)
    for pattern in MASK_NAMES:
        candidate = masks / rel.parent / pattern.format(stem=rel.name)
        if candidate.is_file():
            return candidate
    raise PipelineError(f"masks={masks} has no mask for {image_id} ({', '.join(MASK_NAMES)}); drop masks= or add it")


def check_output(input_dir: Path, output: Path, output_format: str) -> None:
    """Refuse, before any work, an output inside the input folder (nothing is written there) or a bad format."""
    if output_format not in FORMATS:
        raise PipelineError(f"output_format={output_format} is not one of {', '.join(FORMATS)}")
    inside = output.resolve() == input_dir.resolve() or input_dir.resolve() in output.resolve().parents
    if inside:
        raise PipelineError(f"output={output} is inside input={input_dir}: write the masks elsewhere")


@dataclass
class Outputs:
    """Where one run (one shard) writes, and which images are already done there."""

    root: Path
    output_format: str
    suffix: str  # shard_suffix
    rle_done: set[str] = field(default_factory=set)
    _csv: io.TextIOWrapper | None = None

    @property
    def pngs(self) -> bool:
        return self.output_format in ("png", "both")

    @property
    def rle(self) -> bool:
        return self.output_format in ("rle", "both")

    def png_path(self, sample: Sample) -> Path:
        return self.root / f"{sample.id}.png"

    def csv_path(self) -> Path:
        return self.root / f"rle{self.suffix}.csv"

    def open(self, overwrite: bool, samples: list[Sample]) -> None:
        """Create the output folder; remove the temporary files a killed run of this shard left (never a finished
        output, nor another shard's file in flight); reopen the CSV keeping its whole rows (a torn last line is cut
        off), or start it afresh with `overwrite`."""
        self.root.mkdir(parents=True, exist_ok=True)
        mine = {self.png_path(s) for s in samples} | {self.csv_path()}
        for stale in self.root.rglob(".*.tmp"):  # write_atomic's temporaries: `.<name>.<random>.tmp`
            if stale.parent / stale.name[1:].rsplit(".", 2)[0] in mine:
                stale.unlink(missing_ok=True)
        if not self.rle:
            return
        path = self.csv_path()
        text = "" if overwrite or not path.is_file() else path.read_text()
        whole = text[: text.rfind("\n") + 1] if text.startswith(HEADER + "\n") else HEADER + "\n"
        if whole != text:
            write_atomic(path, whole)
        self.rle_done = {row[0] for row in csv.reader(io.StringIO(whole)) if row and row[0] != "img"}
        self._csv = path.open("a", newline="")

    def done(self, sample: Sample, image_name: str) -> bool:
        """Whether every output this run writes for the image is already there."""
        return (not self.pngs or self.png_path(sample).is_file()) and (not self.rle or image_name in self.rle_done)

    def add_rows(self, rows: list[tuple[str, str]]) -> None:
        """Append CSV rows and make them durable before the next batch (a kill loses at most the rows in flight)."""
        if self._csv is None or not rows:
            return
        csv.writer(self._csv, lineterminator="\n").writerows(rows)
        self._csv.flush()
        os.fsync(self._csv.fileno())
        self.rle_done.update(name for name, _ in rows)

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
            self._csv = None
