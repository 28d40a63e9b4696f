import pytest

from swin_edge.cpu import cpu_info, parse_cpuinfo

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_bf16 \
amx_tile amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
flags\t\t: fpu
"""
EPYC_AVX2 = "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: sse2 avx avx2 fma\n"
EPYC_ZEN4 = (
    "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
    "flags\t\t: avx2 fma avx512f avx512bw avx512_vnni avx512_bf16\n"
)
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize(
    "text,arch,cls,bf16",
    [
        (SAPPHIRE_RAPIDS, "x86_64", "intel-amx", True),
        (EPYC_AVX2, "x86_64", "amd-avx2", False),
        (EPYC_ZEN4, "x86_64", "amd-avx512vnni", True),
        ("vendor_id\t: GenuineIntel\nflags\t: sse2\n", "x86_64", "intel-sse", False),
        (ARM, "aarch64", "aarch64-arm0x41-dotprod", False),
        ("", "x86_64", "unknown-sse", False),
    ],
)
def test_cpu_class_names_vendor_and_int8_kernel_tier(text, arch, cls, bf16):
    info = parse_cpuinfo(text, arch)
    assert info.cpu_class == cls
    assert info.has_bf16 is bf16
    assert info.to_dict()["class"] == cls


SKYLAKE_SP = "vendor_id\t: GenuineIntel\nflags\t\t: avx2 fma avx512f avx512bw\n"
ALDER_LAKE = "vendor_id\t: GenuineIntel\nflags\t\t: avx2 fma avx_vnni\n"


@pytest.mark.parametrize(
    "text,arch,saturates",
    [
        (EPYC_AVX2, "x86_64", True),  # vpmaddubsw: pairs summed in saturating int16
        (SKYLAKE_SP, "x86_64", True),  # AVX-512 without VNNI: the same instruction
        ("vendor_id\t: GenuineIntel\nflags\t: sse2\n", "x86_64", True),
        (EPYC_ZEN4, "x86_64", False),  # vpdpbusd sums in int32
        (ALDER_LAKE, "x86_64", False),
        (SAPPHIRE_RAPIDS, "x86_64", False),
        (ARM, "aarch64", False),
    ],
)
def test_u8s8_saturation_is_x86_without_vnni_or_amx(text, arch, saturates):
    info = parse_cpuinfo(text, arch)
    assert info.u8s8_saturates is saturates
    assert info.to_dict()["u8s8_saturates"] is saturates


def test_only_the_first_processor_is_read():
    info = parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64")
    assert info.model == "Intel(R) Xeon(R) Processor"
    assert "amx_int8" in info.flags and "sse2" not in info.flags  # only kernel-relevant flags


def test_this_machine_has_a_class():
    info = cpu_info()
    assert info.cpu_class and info.cpu_class == info.to_dict()["class"]


def test_a_cpuinfo_text_named_by_the_environment_replaces_this_machines(tmp_path, monkeypatch):
    from swin_edge.cpu import CPUINFO_ENV
    from swin_edge.errors import SwinEdgeError

    text = tmp_path / "cpuinfo"
    text.write_text("vendor_id\t: AuthenticAMD\nmodel name\t: AVX2 view\nflags\t\t: avx2 fma\n")
    monkeypatch.setenv(CPUINFO_ENV, str(text))
    info = cpu_info()
    assert info.model == "AVX2 view" and info.u8s8_saturates and not info.has_bf16
    monkeypatch.setenv(CPUINFO_ENV, str(tmp_path / "missing"))
    with pytest.raises(SwinEdgeError, match="SWIN_EDGE_CPUINFO=.*missing.* unset it") as e:
        cpu_info()
    assert "\n" not in str(e.value)
