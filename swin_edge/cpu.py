"""What CPU this is, in the terms that decide INT8 vs FP32 speed: vendor and GEMM ISA tier.

ONNX Runtime's MLAS (and OpenVINO) pick their u8s8 GEMM kernel by ISA: AMX tiles, AVX-512
VNNI, AVX-VNNI, plain AVX-512 or AVX2. The INT8/FP32 latency ratio of a model therefore
depends on that tier far more than on clock speed, so latency baselines are keyed by
:func:`cpu_class` and never compared across classes.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import SwinEdgeError

# Names a /proc/cpuinfo text that CPU detection reads instead of this machine's, so that a run
# (and the processes it starts) sees a consistent view of another CPU kind.
CPUINFO_ENV = "SWIN_EDGE_CPUINFO"

# ISA flags (Linux /proc/cpuinfo names) that CPU inference kernels dispatch on.
KERNEL_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimddp",
    "i8mm",
    "bf16",
)
VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}


@dataclass(frozen=True)
class CpuInfo:
    """Model name, vendor, architecture and the kernel-relevant ISA flags of this CPU."""

    model: str
    vendor: str
    arch: str
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def int8_tier(self) -> str:
        """The fastest u8s8 GEMM kernel family this CPU offers."""
        f = set(self.flags)
        if self.arch in ("x86_64", "amd64"):
            for tier, needs in (
                ("amx", {"amx_tile", "amx_int8"}),
                ("avx512vnni", {"avx512_vnni"}),
                ("avxvnni", {"avx_vnni"}),
                ("avx512", {"avx512bw"}),
                ("avx2", {"avx2"}),
            ):
                if needs <= f:
                    return tier
            return "sse"
        for tier, flag in (("i8mm", "i8mm"), ("dotprod", "asimddp")):
            if flag in f:
                return tier
        return "baseline"

    @property
    def u8s8_saturates(self) -> bool:
        """Whether ONNX Runtime's fast u8s8 GEMM kernels lose precision here: x86 without VNNI
        or AMX sums each pair of u8 x s8 products in saturating 16-bit (``vpmaddubsw``), so a
        pair above 32767 is clamped. ``session.x64quantprecision`` (u8u8 kernels) is exact."""
        return self.arch in ("x86_64", "amd64") and self.int8_tier in ("avx512", "avx2", "sse")

    @property
    def has_bf16(self) -> bool:
        """Hardware BF16 dot products (AMX-BF16 or AVX512-BF16)."""
        return bool({"amx_bf16", "avx512_bf16"} & set(self.flags))

    @property
    def cpu_class(self) -> str:
        """``<vendor>-<int8 tier>``, e.g. ``intel-amx``, ``amd-avx512vnni``, ``amd-avx2``."""
        arch = "" if self.arch in ("x86_64", "amd64") else f"{self.arch}-"
        return f"{arch}{self.vendor}-{self.int8_tier}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flags"] = list(self.flags)
        d["class"] = self.cpu_class
        d["u8s8_saturates"] = self.u8s8_saturates
        return d


def parse_cpuinfo(text: str, arch: str) -> CpuInfo:
    """A :class:`CpuInfo` from the text of ``/proc/cpuinfo`` (first processor)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    vendor_id = fields.get("vendor_id", "")
    vendor = VENDORS.get(vendor_id, vendor_id.lower() or "unknown")
    if vendor == "unknown" and "CPU implementer" in fields:
        vendor = f"arm{fields['CPU implementer']}"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    model = fields.get("model name") or fields.get("Model") or platform.processor() or arch
    return CpuInfo(model, vendor, arch, tuple(f for f in KERNEL_FLAGS if f in flags))


def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (Linux; elsewhere the class is only vendor-less), or the
    one described by the cpuinfo text that :data:`CPUINFO_ENV` names (a view of this CPU as
    another kind: ``scripts/avx2_view.sh`` sets it)."""
    arch = platform.machine().lower()
    override = os.environ.get(CPUINFO_ENV)
    if override:
        try:
            return parse_cpuinfo(Path(override).read_text(), arch)
        except (OSError, UnicodeDecodeError) as e:
            raise SwinEdgeError(
                f"{CPUINFO_ENV}='{override}' is unreadable ({type(e).__name__}); point it at a "
                "/proc/cpuinfo text or unset it"
            ) from None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return parse_cpuinfo(text, arch)


def num_cores() -> int:
    """Cores this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
