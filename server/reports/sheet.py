"""A printable SVG sheet of QR labels: per device its id, model and a QR
code (made by segno) of its report URL.

The sheet is A4 wide (210 mm), two labels of 95 x 42 mm per row, as many
rows as needed; user units are millimetres.  Every text is XML-escaped.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

import segno

from server.reports.records import Label

PAGE_WIDTH = 210  # mm
MARGIN = 10  # mm
LABEL_W, LABEL_H = 95, 42  # mm
QR_SIZE = 36  # mm, quiet zone included
COLUMNS = 2
QR_ERROR = "m"  # 15 % of the code may be dirty or scratched


def qr_svg(url: str) -> str:
    """segno's inline SVG of the QR code for ``url`` (viewBox in modules)."""
    return segno.make(url, error=QR_ERROR, micro=False).svg_inline(scale=1, omitsize=True)


def _label(label: Label, x: float, y: float) -> str:
    qr = qr_svg(label.url)
    qr = re.sub(r"^<svg ", f'<svg x="{x + 3}" y="{y + 3}" width="{QR_SIZE}" height="{QR_SIZE}" ', qr, count=1)
    path_part, sep, key_part = label.url.partition("?")
    tx = x + QR_SIZE + 6
    lines = [
        f'<text x="{tx}" y="{y + 10}" font-size="5" font-weight="bold">{escape(label.device_id)}</text>',
        f'<text x="{tx}" y="{y + 17}" font-size="4">model {escape(label.hardware)}</text>',
        f'<text x="{tx}" y="{y + 25}" font-size="3.4">Problem with this device?</text>',
        f'<text x="{tx}" y="{y + 29.5}" font-size="3.4">Scan the code to report it.</text>',
        f'<text x="{tx}" y="{y + 35}" font-size="1.7" class="url">{escape(path_part)}</text>',
        f'<text x="{tx}" y="{y + 37.5}" font-size="1.7" class="url">{escape(sep + key_part)}</text>',
    ]
    return (f'<g class="label" data-device={quoteattr(label.device_id)}>'
            f'<rect x="{x}" y="{y}" width="{LABEL_W}" height="{LABEL_H}" fill="none" stroke="#999" '
            f'stroke-width="0.2" stroke-dasharray="1 1"/>'
            f'<a href={quoteattr(label.url)}>{qr}</a>' + "".join(lines) + "</g>")


def render_svg(labels: list[Label]) -> str:
    rows = max(1, -(-len(labels) // COLUMNS))
    height = 2 * MARGIN + rows * LABEL_H
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_WIDTH}mm" height="{height}mm" '
         f'viewBox="0 0 {PAGE_WIDTH} {height}" font-family="sans-serif">'),
        "<title>Airlock device labels</title>",
    ]
    for i, label in enumerate(labels):
        row, col = divmod(i, COLUMNS)
        parts.append(_label(label, MARGIN + col * LABEL_W, MARGIN + row * LABEL_H))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
