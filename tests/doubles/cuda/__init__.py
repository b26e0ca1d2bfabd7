"""TEST DOUBLE of the cuda-python package namespace (see tests/doubles/README.md)."""
