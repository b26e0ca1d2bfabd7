"""Jetson deployment files (docs/deployment.md): ``setup.sh`` (one-command device setup for
JetPack 6.x and 5.1.x), the systemd units (the app, and the model-update service with its path
trigger), the udev rule for the capture device, journald and logrotate settings, and an L4T
container recipe in ``container/``. The Python side lives in ``edge_app.deploy``."""
