"""Which int8 dot-product instructions this CPU has, and whether u8 x s8 products saturate on it.

Why it matters: x86 CPUs without VNNI multiply int8 activations (u8) by int8 weights (s8) with
`vpmaddubsw`, which adds each pair of products into a signed 16-bit lane. Two products of 255 x 127
overflow it (64,770 > 32,767) and the sum saturates, silently. ONNX Runtime's U8S8 kernels and
OpenVINO's (oneDNN's) int8 convolutions both take this path on AVX2 and on AVX-512 without VNNI;
VNNI (`vpdpbusd`, AVX512-VNNI or AVX-VNNI) and AMX accumulate in 32 bits and never saturate. The
documented fix is 7-bit weights (ONNX Runtime `reduce_range`, NNCF `OverflowFix`): 2 x 255 x 64 = 32,640
fits. Measured on an AVX2-only AMD EPYC: ONNX Runtime int8 of the bundled weights lost 0.215 Dice
without it, 0.00004 with it."""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}
_VNNI = ("avx512_vnni", "avx_vnni", "avx_vnni_int8")  # /proc/cpuinfo names of vpdpbusd's extensions
_AMX = ("amx_int8",)


@dataclass(frozen=True)
class Int8Isa:
    """The int8 kernel class of a CPU: what decides whether an int8 model must avoid saturation."""

    kind: str  # amx | vnni | avx512 (no VNNI) | avx2 (no VNNI) | x86 (older) | non_x86
    saturates: bool  # u8 x s8 pairs are summed in 16 bits and can saturate
    flags: tuple[str, ...]  # the flags that decided it, as /proc/cpuinfo names them

    def describe(self) -> str:
        """One phrase for tables and notes, e.g. 'avx2, no VNNI: u8 x s8 sums saturate at 16 bits'."""
        if self.saturates:
            return f"{self.kind}, no VNNI: u8 x s8 sums saturate at 16 bits"
        if self.kind == "non_x86":
            return "non_x86: no 16-bit int8 pair sums"
        return f"{self.kind}: int8 products accumulate in 32 bits"


def classify(flags: Iterable[str], machine: str | None = None) -> Int8Isa:
    """The int8 kernel class for a set of CPU flags (as in /proc/cpuinfo) on `machine` (platform.machine())."""
    found = set(flags)
    arch = (machine or platform.machine()).lower()
    if arch not in _X86:
        return Int8Isa("non_x86", False, ())
    for kind, names, saturates in (
        ("amx", _AMX, False),
        ("vnni", _VNNI, False),
        ("avx512", ("avx512bw",), True),  # AVX-512 int8 (vpmaddubsw on zmm) needs BW
        ("avx2", ("avx2",), True),
    ):
        present = tuple(n for n in names if n in found)
        if present:
            return Int8Isa(kind, saturates, present)
    return Int8Isa("x86", True, ())  # SSE4/AVX: the same 16-bit pmaddubsw


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """This CPU's feature flags, or [] where /proc/cpuinfo is not there (then classify() sees no VNNI)."""
    try:
        match = re.search(r"^flags\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
    except OSError:
        return []
    return match.group(1).split() if match else []


def slow_float16(flags: Iterable[str], machine: str | None = None) -> bool:
    """An x86 CPU whose float16 convolutions are AVX512-FP16 without AMX-FP16: oneDNN runs them natively but far
    slower than float32 (an int8 model's float16 remainder ran it at 0.2x float32 on an AMX Xeon). x86 CPUs
    without AVX512-FP16 have no native float16 at all; non-x86 ones (ARM's FP16) are not judged here."""
    found = set(flags)
    arch = (machine or platform.machine()).lower()
    return arch in _X86 and "avx512_fp16" in found and "amx_fp16" not in found


def fast_aligned_bfloat16(flags: Iterable[str]) -> bool:
    """A CPU whose bf16 convolutions are AMX tiles (amx_bf16): padded to a multiple of 32 they ran 1.46-1.58x
    faster on an AMX Xeon; without AMX (AVX512-BF16 EPYCs) 0.85-1.08x, no gain."""
    return "amx_bf16" in set(flags)


def host() -> Int8Isa:
    """The int8 kernel class of the CPU this process runs on."""
    return classify(cpu_flags())
