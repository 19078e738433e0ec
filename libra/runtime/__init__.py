"""The model runtime, what serving loads: the one preprocessing path (`inputs`), the payload
format, the ONNX Runtime recognizer, dynamic batching, labels. numpy and onnxruntime only."""
