"""Image handling shared by training and the device: reading frames, finding the scan region,
physical pixel size, burned-in text (numpy + OpenCV only).

The building blocks are small pure functions so that preprocessing can compose them in one
order everywhere: ``to_grey`` -> ``crop(find_scan_region(...))`` -> ``resample_to_mm`` -> resize.
"""

from sarco_core.imaging.pixels import Box, box_iou, colour_marks, crop, to_grey, to_grey_u8
from sarco_core.imaging.region import ScanRegionNotFound, find_scan_region
from sarco_core.imaging.scale import (PixelSize, ScannerProfile, TickScale, find_depth_ticks, first_known,
                                    pixel_size_from_depth, resample_to_mm)
from sarco_core.imaging.text import TextMarks, blank_outside, find_text, has_text, mask_text
from sarco_core.imaging.tracker import ScanRegionTracker

__all__ = [
    "Box", "PixelSize", "ScanRegionNotFound", "ScanRegionTracker", "ScannerProfile", "TextMarks", "TickScale",
    "blank_outside", "box_iou", "colour_marks", "crop", "find_depth_ticks", "find_scan_region", "find_text",
    "first_known", "has_text", "mask_text", "pixel_size_from_depth", "resample_to_mm", "to_grey", "to_grey_u8",
]
