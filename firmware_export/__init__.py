"""Exporting policy bundles to dependency-free C99 for microcontrollers (and ONNX), with golden
input/output vectors to verify the generated code. Needs a policy bundle, never jax.

- ``write_c(bundle, out_dir, quantize="float32" | "int8", name="policy")``: ``policy.h`` /
  ``policy.c`` (``c_export``); ``act_int8`` is the numpy reference of the int8 path
  (``quantize``).
- ``CPolicy.build(bundle, work_dir)``: the C compiled on the host and loaded with ctypes;
  ``run_sanitized``: the same C under ASan/UBSan with a test harness (``build``).
- ``run_on_cortex_m4`` / ``footprint``: cross-compiled for an STM32F405 (Cortex-M4F), run under
  ``qemu-system-arm -M netduinoplus2``, flash/RAM from ``arm-none-eabi-size`` (``cortex_m4``;
  the toolchain comes from ``install_toolchain.sh``); ``fitting_footprint``: float32, or int8
  when float32 does not fit the flash.
- ``write_onnx(bundle, path)``: the same policy as an ONNX graph (``onnx_export``; needs the
  optional ``onnx`` package, imported when called).
"""

from firmware_export.build import BuildError, CPolicy, host_ns_per_step, run_sanitized
from firmware_export.c_export import CExportError, write_c
from firmware_export.cortex_m4 import (
    ToolchainMissing,
    check_toolchain,
    fitting_footprint,
    footprint,
    run_on_cortex_m4,
)
from firmware_export.onnx_export import write_onnx
from firmware_export.quantize import act_int8, quantize_weight

__all__ = [
    "BuildError",
    "CExportError",
    "CPolicy",
    "ToolchainMissing",
    "act_int8",
    "check_toolchain",
    "fitting_footprint",
    "footprint",
    "host_ns_per_step",
    "quantize_weight",
    "run_on_cortex_m4",
    "run_sanitized",
    "write_c",
    "write_onnx",
]
