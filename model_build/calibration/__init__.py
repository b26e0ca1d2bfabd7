"""INT8 post-training quantization of a model bundle and the accuracy gate that refuses a bad one
(docs/calibration.md).

- :mod:`model_build.calibration.select`: representative calibration frames from the training cohort;
- :mod:`model_build.calibration.quantize`: explicit Q/DQ INT8 for TensorRT (NVIDIA Model Optimizer), ONNX
  Runtime static INT8 for CPUs, with a sensitivity loop that leaves damaging layers in float;
- :mod:`model_build.calibration.trt_cache`: legacy TensorRT 8.x calibration cache (needs a GPU; unverified);
- :mod:`model_build.calibration.verify`: float vs INT8 on every cohort, accepted or rejected.

Only constants and the error type live here, so that the CLI starts without loading ONNX tools.
"""

from sarco_core.errors import SarcoError

TARGETS = ("tensorrt", "cpu", "tensorrt-cache")
GRAPH_TARGETS = TARGETS[:2]  # the targets whose INT8 graph quantize_graph makes (tensorrt-cache: a TensorRT cache)
METHODS = ("entropy", "minmax", "percentile")
HIGH_PRECISION = ("fp32", "fp16")
# The quality gate's verdicts on a stored still or recording (sarco_core.quality.MESSAGES but
# ``no_signal``, which only a live feed gives); kept here, not derived, so that the CLI starts
# without loading OpenCV. tests/model_build/calibration/test_units.py checks that the two agree.
FRAME_STATES = ("ok", "no_region", "no_tissue", "frozen", "transition")


class CalibrationError(SarcoError, ValueError):
    """Input that calibration cannot use; the message names the file or value and the fix."""
