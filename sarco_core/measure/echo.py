"""Echo intensity: the mean 8-bit grey level of the muscle band between the aponeuroses.

The band is :func:`sarco_core.measure.thickness.muscle_band`: in every column holding both
aponeuroses, the pixels strictly between them, so the aponeuroses themselves (bright, and
drawn wider or narrower by each annotator or model) never count. All such columns count, not
only the middle half the thickness uses: echo intensity is a mean over tissue, and more tissue
makes it steadier.

Caveat, to be shown wherever the number is: echo intensity depends on the scanner, its preset
(gain, dynamic range, grey map, speckle filters), depth, probe tilt and pressure, and on the
subcutaneous fat above the muscle. Compare it only within one scanner and preset; it is not a
tissue property that transfers between devices.
"""

from __future__ import annotations

import numpy as np

from sarco_core.measure.labels import check_labels
from sarco_core.measure.thickness import ApoEdges, aponeurosis_edges, band_crop

ECHO_CAVEAT = ("Echo intensity depends on the scanner, preset (gain, dynamic range, grey map, filters), depth, "
               "probe tilt and pressure, and subcutaneous fat: compare it only within one scanner and preset.")


def echo_intensity(grey_u8: np.ndarray, labels: np.ndarray, edges: ApoEdges | None = None) -> float | None:
    """Mean grey level (0-255) of the muscle band, or None when there is no band."""
    labels = check_labels(labels)
    if not isinstance(grey_u8, np.ndarray) or grey_u8.dtype != np.uint8 or grey_u8.ndim != 2:
        raise ValueError(f"echo intensity needs a 2-D uint8 grey image, got "
                         f"{getattr(grey_u8, 'dtype', type(grey_u8).__name__)} {getattr(grey_u8, 'shape', '')}")
    if grey_u8.shape != labels.shape:
        raise ValueError(f"grey image {grey_u8.shape} and labels {labels.shape} differ in size")
    if edges is None:
        edges, _ = aponeurosis_edges(labels)
    if edges is None:
        return None
    top, left, band = band_crop(edges)
    if not band.any():
        return None
    return float(grey_u8[top:top + band.shape[0], left:left + band.shape[1]][band].mean(dtype=np.float64))
