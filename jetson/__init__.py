"""Jetson deployment: device setup script, on-device TensorRT engine build, systemd service and
signed model updates. The scripts arrive with the deployment issue."""
