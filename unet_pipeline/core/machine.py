"""The machine a figure was measured on (CPU model and the flags that decide speed) and the library versions a
record names: read here, once, for every record and cache key."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from unet_pipeline.core import isa

_LIBRARIES = ("torch", "openvino", "nncf", "numpy", "opencv-python-headless", "pillow", "hydra-core")


def package_version(name: str) -> str | None:
    """An installed distribution's version, None where it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Python's and the deciding libraries' versions (result.json -> versions)."""
    return {"python": platform.python_version(), **{name: package_version(name) for name in _LIBRARIES}}


_FLAGS = re.compile(r"^(avx2|avx512\w*|amx\w*|avx_vnni\w*|fma|f16c)$")


def machine_info() -> dict[str, Any]:
    """CPU model and the flags that decide speed, and the core count (a GPU, where one is used, is added by the job:
    asking for it needs torch, which reading records must not load)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": None,
        "cpu_flags": sorted(f for f in isa.cpu_flags() if _FLAGS.match(f)),
    }
    try:
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        info["cpu_model"] = model.group(1).strip() if model else platform.processor()
    except OSError:
        info["cpu_model"] = platform.processor()
    return info
