"""Image handling shared by training and the device: reading frames, finding the scan region,
physical pixel size, burned-in text (numpy + OpenCV only)."""
