"""The AWGS 2019 / EWGSOP2 calculator the team opens after a positive screen: grip strength,
gait speed or chair stand, and ASMI when known, typed on the on-screen keypad or a keyboard;
the category of each standard (sarco_core.criteria, the copy ``sarco label`` uses) updates as
they type. The entries travel with the result as numbers (sarco_core.wire.payloads.assessment).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge_app.ui.canvas import BLACK, GREEN, KEY, WHITE, Box, Canvas
from edge_app.ui.keypad import NUMBER_ROWS, keypad
from sarco_core.criteria import Measurements, MeasurementError, diagnose
from sarco_core.wire.schema import MEASURE_BOUNDS

if TYPE_CHECKING:
    from edge_app.display import ScreenState

# (field, label, unit) in the order of the screen; each bounded as the wire bounds it
FIELDS = (("grip_kg", "Grip", "kg"), ("gait_speed_m_s", "Gait speed", "m/s"),
          ("chair_stand_s", "5 chair stands", "s"), ("asmi_kg_m2", "ASMI", "kg/m2"))
STANDARD_NAMES = {"awgs2019": "AWGS 2019", "ewgsop2": "EWGSOP2"}
MEASURE_NAMES = {"grip": "grip", "gait_speed": "gait speed", "chair_stand": "chair stands",
                 "sppb": "SPPB", "asmi": "ASMI", "asm": "ASM", "tug": "TUG", "sex": "sex"}


def type_into(entries: dict[str, str], field: str, char: str) -> None:
    """One keypad character into ``field``: digits and one decimal point, never a value above
    what the wire accepts (a typo cannot make the result unsendable)."""
    text = entries.get(field, "")
    if char == "delete":
        entries[field] = text[:-1]
        return
    candidate = text + char
    if char == "." and "." in text or len(candidate) > 6 or not (char.isdigit() or char == "."):
        return
    if float(candidate.rstrip(".") or 0) <= MEASURE_BOUNDS[field]:
        entries[field] = candidate


def measurements(entries: dict[str, str]) -> Measurements:
    values = {name: float(entries[name].rstrip(".")) for name, _, _ in FIELDS
              if entries.get(name, "").rstrip(".")}
    return Measurements(sex=entries.get("sex") or None,
                        asmi_method=entries.get("asmi_method") or None, **values)


def categories(entries: dict[str, str]) -> list[str]:
    """One line per standard: its category, or what it still needs."""
    lines = []
    for standard, name in STANDARD_NAMES.items():
        try:
            found = diagnose(measurements(entries), standard)
        except MeasurementError as exc:
            lines.append(f"{name}: {exc.fix}")
            continue
        todo = " and ".join(" or ".join(MEASURE_NAMES.get(m, m) for m in measures)
                            for measures in found.criteria["needed"].values())
        lines.append(f"{name}: {found.category.replace('_', ' ')}"
                     + (f"; measure {todo}" if todo else ""))
    return lines


def draw_criteria(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = canvas.body
    entries, split = screen.criteria, int(canvas.width * 0.56)
    rows = [("sex", "Sex", ""), *FIELDS, ("asmi_method", "ASMI by", "")]
    row_h = (y1 - y0 - canvas.u(6) * (len(rows) - 1)) // len(rows)
    for index, (name, label, unit) in enumerate(rows):
        top = y0 + index * (row_h + canvas.u(6))
        row = (x0, top, split - canvas.u(8), top + row_h)
        label_w = int((row[2] - row[0]) * 0.42)
        canvas.text(label, row[0], top + (row_h - canvas.u(20)) // 2, 20, WHITE,
                    max_width=label_w - canvas.u(6))
        if name in ("sex", "asmi_method"):
            _choice(canvas, name, entries.get(name), (row[0] + label_w, top, row[2], row[3]))
        else:
            _field(canvas, name, entries.get(name, ""), unit, name == screen.criteria_field,
                   (row[0] + label_w, top, row[2], row[3]))
    right = split + canvas.u(4)
    lines_bottom = y0 + canvas.u(128)
    y = y0
    for line in categories(entries):
        y = canvas.paragraph(line, (right, y, x1, lines_bottom), 16, WHITE)
    done_top = y1 - canvas.u(52)
    keypad(canvas, (right, lines_bottom + canvas.u(6), x1, done_top - canvas.u(8)), NUMBER_ROWS,
           height=24)
    middle = (right + x1) // 2
    canvas.button("criteria", "Back", (right, done_top, middle - canvas.u(4), y1), height=22)
    canvas.button("done", "Send", (middle + canvas.u(4), done_top, x1, y1), primary=True,
                  height=24)


def _field(canvas: Canvas, name: str, value: str, unit: str, selected: bool, box: Box) -> None:
    """A value the keypad types into when selected (tap to select)."""
    fill, ink = (WHITE, BLACK) if selected else (KEY, WHITE)
    canvas.button(f"field:{name}", "", box)
    canvas.fill((box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1), fill)
    text = (value or "-") + (f" {unit}" if value else "")
    canvas.text(text, box[0] + canvas.u(10), box[1] + (box[3] - box[1] - canvas.u(20)) // 2, 20,
                ink, fill, bold=selected, max_width=box[2] - box[0] - canvas.u(16))


def _choice(canvas: Canvas, name: str, value: str | None, box: Box) -> None:
    options = {"sex": (("M", "Man"), ("F", "Woman")),
               "asmi_method": (("dxa", "DXA"), ("bia", "BIA"))}[name]
    width = (box[2] - box[0] - canvas.u(6)) // 2
    for index, (code, label) in enumerate(options):
        left = box[0] + index * (width + canvas.u(6))
        chosen = (left, box[1], left + width, box[3])
        canvas.button(f"{name}:{code}", label, chosen, primary=value == code, height=18)
        if value == code:
            canvas.fill((chosen[0], chosen[3] - canvas.u(5), chosen[2], chosen[3]), GREEN)

