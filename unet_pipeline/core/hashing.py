"""Content hashes: of files (weights, images, artifacts), of key parts (cache keys, identities) and of arrays
(integrity checks of cached inputs and teacher targets).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

# bump when the meaning of a key's parts changes: old entries are then never hit
KEY_SCHEMA = 3  # 3: /255 as a division in the uint8 graph, calibration preprocessing keyed


def content_key(parts: dict[str, Any]) -> str:
    """A stable hash of JSON-able key parts (dict order does not matter)."""
    canonical = json.dumps({"key_schema": KEY_SCHEMA, **parts}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def file_sha256(path: str | Path) -> str:
    """Content hash: identifies the weights in result.json (and, later, in artifact cache keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def array_checksum(*arrays: np.ndarray) -> int:
    """xxh3-64 of the arrays' bytes, in order: an integrity check at tens of GB/s, for data read back on a hot path
    (cached inputs) or after minutes of work (teacher targets). Its hex form is `f"{value:016x}"`."""
    digest = xxhash.xxh3_64()
    for array in arrays:
        digest.update(np.ascontiguousarray(array))
    return digest.intdigest()
