"""result.json -> benchmark: the speed figures of a job, typed, each saying how it was measured.

Why typed: the benchmark stage writes them and the notes, the tables and the comparisons read them; one dataclass
per figure says which keys exist and when (`to_dict` keeps result.json's layout: a key a figure does not have is
absent, not null).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


def _present(values: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    """`values` without the `optional` keys that are None (a figure written only when measured)."""
    return {key: value for key, value in values.items() if key not in optional or value is not None}


@dataclass
class EngineTiming:
    """benchmark.engine (one request at a time) or benchmark.engine_async (`requests` in flight): the artifact alone
    on one in-memory batch, bounded by count and time."""

    mode: str  # sync | async
    requests: int
    batch: int | None = None
    warmup: dict[str, float] | None = None  # {"iterations", "seconds"}
    iterations: int | None = None  # timed calls
    seconds: float | None = None
    budget: dict[str, float] | None = None  # the floor and cap it ran under (core.timing)
    capped: bool | None = None  # stopped by the cap before both floors were met
    latency_ms: dict[str, float] | None = None  # sync: min, mean, p50, p90, p99, max, std
    throughput_ips: float | None = None
    rounds_ips: list[float] | None = None  # sync with benchmark.repeats: every round's figure (this is the median)
    skipped: str | None = None  # async not timed, and why

    def to_dict(self) -> dict[str, Any]:
        """Only the figures this measurement has (a skipped async one: mode, requests, skipped)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass
class EndToEnd:
    """benchmark.end_to_end: the inference stage's pass over every evaluation image, decode to Dice, and where its
    host time went per image."""

    throughput_ips: float
    preprocess_ms_per_image: float  # the feed's threads: decode, resize, normalize (CPU time)
    feed_wait_ms_per_image: float  # the engine idle, waiting for a prepared batch
    postprocess_ms_per_image: float  # argmax and Dice between engine calls
    fullres_ms_per_image: float | None  # of which the full-resolution Dice; None when metrics.full_resolution=false
    engine_share: float  # time inside the engine / the whole pass
    images: int
    seconds: float
    passes_ips: list[float] | None = None  # with the benchmark: every pass's figure (this is the median)
    vs_engine: float | None = None  # end to end / engine-only, taken pass by round (the median ratio)
    input_cache: dict[str, int] | None = None  # data.cache_inputs: hits and misses (None: not used)

    def to_dict(self) -> dict[str, Any]:
        return _present(asdict(self), ("passes_ips", "vs_engine"))


@dataclass
class VendorRun:
    """benchmark.vendor: the engine vendor's own tool (benchmark_app, mm_run) on the same artifact."""

    command: list[str]
    returncode: int | None = None  # None: it did not run (not found, timed out)
    figures: dict[str, Any] = field(default_factory=dict)  # what its output said: throughput_ips, latency_ms_p50, ...
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        values = {"command": self.command, "returncode": self.returncode, **self.figures, "error": self.error}
        return _present(values, ("returncode", "error"))


@dataclass
class BenchmarkFigures:
    """benchmark: what the benchmark stage measured (each None until measured) and the wait for the device lock."""

    engine: EngineTiming | None = None
    engine_async: EngineTiming | None = None
    end_to_end: EndToEnd | None = None
    vendor: VendorRun | None = None
    lock_wait_seconds: float | None = None  # waiting for the device lock (not timed)

    def to_dict(self) -> dict[str, Any]:
        figures = {
            "engine": self.engine,
            "engine_async": self.engine_async,
            "end_to_end": self.end_to_end,
            "vendor": self.vendor,
        }
        out: dict[str, Any] = {key: None if f is None else f.to_dict() for key, f in figures.items()}
        if self.lock_wait_seconds is not None:
            out["lock_wait_seconds"] = self.lock_wait_seconds
        return out
