"""How long one measurement runs: a floor of calls and seconds, and a cap (engine-independent, so every Session and
the benchmark stage share it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CallLimits:
    """When a measurement stops: once it has `calls` calls and `min_seconds`, or before a call that would end past
    `max_seconds` (predicted from the mean so far); at least one call unless both minimums are 0.

    Why both: a count alone makes a slow model (the full UNet at 640x960 fp32 takes 13 s a call on an AVX2-only
    2-core CPU) time for minutes, and a floor alone lets a fast one rest on a handful of calls (trtexec and
    benchmark_app bound by time as well as count). A measurement that stopped at the cap says so (`capped`).
    """

    calls: int
    min_seconds: float
    max_seconds: float

    def more(self, count: int, elapsed: float, in_flight: int = 0) -> bool:
        """Whether to start another call after `count` finished in `elapsed` seconds, with `in_flight` more still
        running (asynchronous requests: they end before the measurement does, one mean call apart)."""
        if count >= self.calls and elapsed >= self.min_seconds:
            return False
        return count == 0 or elapsed + (1 + in_flight) * elapsed / count <= self.max_seconds

    def capped(self, count: int, elapsed: float) -> bool:
        """Stopped by the cap before both minimums were met."""
        return count < self.calls or elapsed < self.min_seconds

    def expected_calls(self, count: int, elapsed: float) -> int:
        """How many calls this measurement will make, from the mean so far (a progress bar's total, for its ETA)."""
        if count == 0:
            return self.calls
        mean = elapsed / count
        wanted = max(self.calls, math.ceil(self.min_seconds / mean) if mean else self.calls)
        return max(count, min(wanted, max(1, math.floor(self.max_seconds / mean)) if mean else wanted))

    def describe(self) -> dict[str, Any]:
        return {"min_calls": self.calls, "min_seconds": self.min_seconds, "max_seconds": round(self.max_seconds, 3)}
