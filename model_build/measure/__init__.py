"""The muscle-measurement model on the workstation: the aponeurosis segmentation network, its
data (DL_Track-style ``index.csv`` of image/mask pairs, synthetic frames), training, ONNX export,
running it on images, DICOMs and videos, and its evaluation (docs/measurements.md)."""
