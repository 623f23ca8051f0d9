"""Charts drawn by the appliance as SVG markup, for the console's pages:
no script, no inline style (presentation attributes only, so the
Content-Security-Policy stays as it is), every label escaped (a model or
metric name comes from a device).  Each function returns a string that is
safe to put into a page as it is (``Markup``)."""

from __future__ import annotations

from markupsafe import Markup, escape

from server.text import escape_text

WIDTH = 640
BAR = 18  # px per bar
COLOURS = ("#0b5394", "#c77700", "#2a7a3a", "#a00", "#6a1b9a", "#00838f")


def _label(text: object, limit: int = 40) -> str:
    return str(escape(escape_text(str(text), limit)))


def _svg(height: int, body: list[str], title: str) -> Markup:
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" '
                  f'role="img" aria-label="{_label(title, 200)}" class="chart"><title>{_label(title, 200)}</title>'
                  + "".join(body) + "</svg>")


def bars(rows: list[tuple[str, int]], title: str, *, empty: str = "nothing to show yet") -> Markup:
    """Horizontal bars, one per (label, count), longest scaled to the width."""
    if not rows:
        return _svg(30, [f'<text x="4" y="20" font-size="13" fill="#555">{_label(empty, 200)}</text>'], title)
    top = max(n for _, n in rows) or 1
    left, right = 200, 60
    body = []
    for i, (label, n) in enumerate(rows):
        y = 6 + i * (BAR + 6)
        w = max(1, round((WIDTH - left - right) * n / top))
        body.append(f'<text x="{left - 6}" y="{y + 13}" font-size="12" text-anchor="end" fill="#111">'
                    f'{_label(label)}</text>'
                    f'<rect x="{left}" y="{y}" width="{w}" height="{BAR}" fill="{COLOURS[0]}"><title>'
                    f'{_label(label)}: {n}</title></rect>'
                    f'<text x="{left + w + 4}" y="{y + 13}" font-size="12" fill="#111">{n}</text>')
    return _svg(12 + len(rows) * (BAR + 6), body, title)


def stacked_days(days: list[tuple[str, int, int]], title: str, names: tuple[str, str]) -> Markup:
    """One column per day: the first count from the bottom, the second on top."""
    height, bottom, left = 180, 30, 36
    top = max((a + b for _, a, b in days), default=0) or 1
    step = (WIDTH - left - 10) / max(len(days), 1)
    body = [f'<line x1="{left}" y1="{height - bottom}" x2="{WIDTH - 10}" y2="{height - bottom}" stroke="#888"/>',
            f'<text x="{left - 4}" y="16" font-size="11" text-anchor="end" fill="#555">{top}</text>',
            f'<text x="{left - 4}" y="{height - bottom}" font-size="11" text-anchor="end" fill="#555">0</text>']
    scale = (height - bottom - 10) / top
    for i, (day, a, b) in enumerate(days):
        x = left + i * step + 2
        w = max(step - 4, 1)
        ha, hb = a * scale, b * scale
        y = height - bottom
        body.append(f'<rect x="{x:.1f}" y="{y - ha:.1f}" width="{w:.1f}" height="{ha:.1f}" fill="{COLOURS[2]}">'
                    f'<title>{_label(day)}: {a} {_label(names[0])}</title></rect>')
        body.append(f'<rect x="{x:.1f}" y="{y - ha - hb:.1f}" width="{w:.1f}" height="{hb:.1f}" fill="{COLOURS[3]}">'
                    f'<title>{_label(day)}: {b} {_label(names[1])}</title></rect>')
        if i % max(1, len(days) // 7) == 0:
            body.append(f'<text x="{x:.1f}" y="{height - 10}" font-size="10" fill="#555">{_label(day[5:])}</text>')
    body.append(f'<rect x="{WIDTH - 200}" y="4" width="10" height="10" fill="{COLOURS[2]}"/>'
                f'<text x="{WIDTH - 186}" y="13" font-size="11">{_label(names[0])}</text>'
                f'<rect x="{WIDTH - 110}" y="4" width="10" height="10" fill="{COLOURS[3]}"/>'
                f'<text x="{WIDTH - 96}" y="13" font-size="11">{_label(names[1])}</text>')
    return _svg(height, body, title)


def lines(series: dict[str, list[float]], title: str, *, empty: str = "no metrics reported yet") -> Markup:
    """One small line chart per series (oldest value first), with its range."""
    if not series:
        return _svg(30, [f'<text x="4" y="20" font-size="13" fill="#555">{_label(empty, 200)}</text>'], title)
    body: list[str] = []
    panel, left = 70, 200
    for i, (name, values) in enumerate(series.items()):
        y0 = 6 + i * panel
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        n = len(values)
        points = " ".join(f"{left + (j * (WIDTH - left - 10) / max(n - 1, 1)):.1f},"
                          f"{y0 + 50 - (v - low) * 50 / span:.1f}" for j, v in enumerate(values))
        body.append(f'<text x="4" y="{y0 + 20}" font-size="12" fill="#111">{_label(name)}</text>'
                    f'<text x="4" y="{y0 + 38}" font-size="11" fill="#555">{low:g} to {high:g}, '
                    f'{n} samples</text>'
                    f'<polyline points="{points}" fill="none" stroke="{COLOURS[i % len(COLOURS)]}" '
                    f'stroke-width="2"/>')
    return _svg(12 + len(series) * panel, body, title)
