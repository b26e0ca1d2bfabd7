"""Runs NVIDIA Model Optimizer's ONNX INT8 PTQ in a process of its own:
``python -m model_build.calibration.modelopt_worker REQUEST.json``.

Model Optimizer patches ONNX Runtime's calibrators and reconfigures logging for the whole
process it runs in; a child process keeps that away from the caller (whose own ONNX Runtime
calibration, for the cpu target, must stay stock). The request names files only, and the
calibration inputs are read with ``allow_pickle=False``. Model Optimizer calibrates on random
data when it gets none: this worker refuses to run without real inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    inputs = np.load(request["calibration_data"], allow_pickle=False)
    if inputs.ndim != 4 or len(inputs) == 0:
        print(f"calibration data {request['calibration_data']}: expected (N, C, H, W) with N > 0, "
              f"got {inputs.shape}; Model Optimizer would fall back to random data", file=sys.stderr)
        return 2
    from modelopt.onnx.quantization import quantize

    quantize(onnx_path=request["onnx_path"], quantize_mode="int8", calibration_data={request["input_name"]: inputs},
             calibration_method=request["method"], calibration_cache_path=request.get("calibration_cache"),
             calibration_eps=["cpu"], nodes_to_exclude=request["nodes_to_exclude"] or None,
             high_precision_dtype=request["high_precision"], output_path=request["output_path"],
             log_level="WARNING")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m model_build.calibration.modelopt_worker REQUEST.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
