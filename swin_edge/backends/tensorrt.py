"""TensorRT backend: engines from (Q/DQ) ONNX, a pycuda runner, manifests and trtexec lines.

One module per concern, all re-exported here (Polygraphy's ``backend/trt`` layout):

* :mod:`.tensorrt_compat`: import, version parsing, capability detection (10.x and 11.x);
* :mod:`.tensorrt_build`: :class:`TrtBuildConfig`, :func:`onnx_to_engine`, trtexec lines;
* :mod:`.tensorrt_manifest`: engine manifests (hash, TensorRT release, GPU);
* :mod:`.tensorrt_layers`: engine-inspector layer facts (DLA vs GPU, per-layer precision);
* :mod:`.tensorrt_runner`: :class:`TrtRunner`.

``tensorrt`` and ``pycuda`` are imported lazily (optional extra).
"""

from __future__ import annotations

from ..quantize.fp16 import FP32_OPS
from .tensorrt_build import (
    DLA_DYNAMIC_REFUSED,
    DLA_INT8_REFUSED,
    PRECISIONS,
    TrtBuildConfig,
    builder_flag_names,
    check_dla_request,
    cleared_builder_flag_names,
    network_flag_names,
    onnx_to_engine,
    onnx_to_fp16,
    profile_shapes,
    strongly_typed,
    trtexec_bench_command,
    trtexec_command,
)
from .tensorrt_compat import (
    INSTALL_HINT,
    TrtCaps,
    import_cuda,
    import_tensorrt,
    release,
    same_release,
    tensorrt_available,
)
from .tensorrt_layers import LayerSummary, format_dtype, parse_engine_info, summarize_layers
from .tensorrt_manifest import check_manifest, gpu_info, make_manifest, manifest_path, read_manifest
from .tensorrt_runner import TrtRunner

__all__ = [
    "DLA_DYNAMIC_REFUSED",
    "DLA_INT8_REFUSED",
    "FP32_OPS",
    "INSTALL_HINT",
    "PRECISIONS",
    "LayerSummary",
    "TrtBuildConfig",
    "TrtCaps",
    "TrtRunner",
    "builder_flag_names",
    "check_dla_request",
    "check_manifest",
    "cleared_builder_flag_names",
    "format_dtype",
    "gpu_info",
    "import_cuda",
    "import_tensorrt",
    "make_manifest",
    "manifest_path",
    "network_flag_names",
    "onnx_to_engine",
    "onnx_to_fp16",
    "parse_engine_info",
    "profile_shapes",
    "read_manifest",
    "release",
    "same_release",
    "strongly_typed",
    "summarize_layers",
    "tensorrt_available",
    "trtexec_bench_command",
    "trtexec_command",
]
