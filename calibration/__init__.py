"""INT8 post-training quantization of the model bundle (explicit Q/DQ for TensorRT, ONNX Runtime
static INT8 for CPUs) and the accuracy gates that refuse a bad quantized model.
Console script ``sarco-calibrate`` arrives with its issue."""
