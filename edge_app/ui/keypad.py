"""On-screen keypads: large keys that type what a hardware keyboard would, so a touch screen
alone is enough (a tap sends the same action as the key)."""

from __future__ import annotations

from edge_app.ui.canvas import Box, Canvas

# the screening id: 3-32 letters, digits, '-' or '_' (sarco_core.wire.schema); DEL deletes
ID_ROWS = ("1234567890", "QWERTYUIOP", "ASDFGHJKL-", "ZXCVBNM_")
NUMBER_ROWS = ("789", "456", "123", "0.")


def keypad(canvas: Canvas, box: Box, rows: tuple[str, ...], height: float = 26) -> None:
    """``rows`` of keys filling ``box``; the last row ends with a wide DEL key. Every key's
    action is ``type:<char>`` (``delete`` for DEL)."""
    gap = canvas.u(6)
    columns = max(len(row) for row in rows)
    key_w = (box[2] - box[0] - gap * (columns - 1)) / columns
    key_h = (box[3] - box[1] - gap * (len(rows) - 1)) / len(rows)
    for r, row in enumerate(rows):
        y0 = int(box[1] + r * (key_h + gap))
        y1 = int(y0 + key_h)
        for c, char in enumerate(row):
            x0 = int(box[0] + c * (key_w + gap))
            canvas.button(f"type:{char}", char, (x0, y0, int(x0 + key_w), y1), height=height)
        if r == len(rows) - 1:
            x0 = int(box[0] + len(row) * (key_w + gap))
            canvas.button("delete", "DEL", (x0, y0, box[2], y1), height=height * 0.8)
