"""The contracts the sarco stages share (docs/architecture.md).

Training (``model_build``), INT8 calibration (``model_build.calibration``), the device
(``edge_app``) and the dashboard (``dashboard``) meet here and nowhere else: preprocessing and
imaging (what the model sees), the model bundle and the signed update package (what a trained
model is on disk), the MQTT wire format and broker connection, atomic files, the error base and
the command-line conventions.

Light on purpose, because the device installs it: the standard library, numpy and OpenCV
(paho-mqtt only in :mod:`sarco_core.wire.broker`, ``cryptography`` only in
:mod:`sarco_core.update.signing`). It imports no other sarco package and never torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sarco")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+source"
