"""Exporting policy bundles to dependency-free C99 for microcontrollers (and ONNX), with golden
input/output vectors to verify the generated code. Needs a policy bundle, never jax."""
