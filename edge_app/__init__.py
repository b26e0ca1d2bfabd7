"""Point-of-care device side: frames from the scanner -> quality gate -> preprocessing ->
inference (TensorRT / ONNX Runtime) -> readout and MQTT.

Kept light on purpose: numpy, OpenCV, ONNX Runtime / TensorRT and paho-mqtt only. It never
imports torch or ``model_build``; training imports *this* package's preprocessing instead, so
the device sees exactly what the model was trained on."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sarco")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+source"
