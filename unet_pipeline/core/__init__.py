"""Core: what every room may use, importing nothing else of ours: errors, atomic files, content hashes,
the machine and its CPU, and how long a measurement runs."""

from unet_pipeline.core import isa
from unet_pipeline.core.errors import BadSampleError, BudgetNotMet, PipelineError, one_line
from unet_pipeline.core.files import write_atomic, write_json
from unet_pipeline.core.hashing import array_checksum, content_key, file_sha256
from unet_pipeline.core.isa import Int8Isa, cpu_flags, slow_float16
from unet_pipeline.core.machine import library_versions, machine_info, package_version
from unet_pipeline.core.timing import CallLimits

__all__ = [
    "BadSampleError",
    "BudgetNotMet",
    "CallLimits",
    "Int8Isa",
    "PipelineError",
    "array_checksum",
    "content_key",
    "cpu_flags",
    "file_sha256",
    "isa",
    "library_versions",
    "machine_info",
    "one_line",
    "package_version",
    "slow_float16",
    "write_atomic",
    "write_json",
]
