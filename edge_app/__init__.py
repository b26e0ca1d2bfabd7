"""Point-of-care device side: frames from the scanner -> quality gate -> preprocessing ->
inference (TensorRT / ONNX Runtime) -> session -> display, local log and MQTT.

Kept light on purpose: numpy, OpenCV, ONNX Runtime / TensorRT and paho-mqtt only. It never
imports torch, ``model_build`` or ``dashboard``; what it shares with training, calibration and
the dashboard (preprocessing, the bundle, the wire format) lives in ``sarco_core``, so the
device sees exactly what the model was trained on (docs/architecture.md)."""
