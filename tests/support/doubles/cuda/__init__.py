"""TEST DOUBLE of the cuda-python package namespace (see tests/support/doubles/README.md)."""
