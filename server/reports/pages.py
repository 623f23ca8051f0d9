"""The label form's HTML: small, self-contained pages for a plant tablet.

No CDN, no web fonts, no scripts: one inline style sheet, allowed by its
hash in the Content-Security-Policy.  Templates are rendered by Jinja with
autoescaping on, so whatever a report holds is shown as text.
"""

from __future__ import annotations

import base64
import hashlib

from markupsafe import Markup

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0;padding:1rem;max-width:40rem;margin:auto;line-height:1.4;
color:#111;background:#f6f6f4}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
.device{background:#fff;border:1px solid #ccc;border-radius:.4rem;padding:.6rem .8rem;margin-bottom:1rem}
label,legend{display:block;font-weight:600;margin:.8rem 0 .3rem}
textarea,input[type=text]{width:100%;font-size:1.1rem;padding:.6rem;border:1px solid #888;border-radius:.3rem}
textarea{min-height:8rem}
fieldset{border:0;padding:0;margin:0}
.choice{display:block;font-weight:400;background:#fff;border:1px solid #bbb;border-radius:.3rem;padding:.7rem;
margin:.3rem 0}
button{margin-top:1.2rem;width:100%;font-size:1.2rem;padding:.9rem;border:0;border-radius:.4rem;
background:#0b5394;color:#fff}
.error{background:#fde8e8;border:1px solid #c00;padding:.6rem;border-radius:.3rem}
.ok{background:#e6f4ea;border:1px solid #2a7a3a;padding:.6rem;border-radius:.3rem}
.text{white-space:pre-wrap;background:#fff;border:1px solid #ccc;padding:.6rem;border-radius:.3rem}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (f"default-src 'self'; style-src 'sha256-{STYLE_HASH}'; script-src 'none'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",  # the page's URL carries the label key
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

URGENCIES = [
    ("critical", "Stopped or unsafe"),
    ("error", "Not working properly"),
    ("warning", "Works, but something is off"),
    ("info", "Just letting you know"),
]

_LAYOUT_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ title }}</title><style>{{ style }}</style></head><body>
"""

FORM = _LAYOUT_HEAD + """<h1>Report a problem</h1>
<div class="device">Device <strong>{{ device_id }}</strong>{% if hardware %}, model {{ hardware }}{% endif %}</div>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}" accept-charset="utf-8">
<input type="hidden" name="k" value="{{ key }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label for="problem">What is wrong?</label>
<textarea id="problem" name="problem" required maxlength="{{ max_problem }}">{{ problem }}</textarea>
<fieldset><legend>How urgent is it?</legend>
{% for value, text in urgencies %}<label class="choice"><input type="radio" name="urgency" value="{{ value }}"
{% if value == urgency %} checked{% endif %} required> {{ text }}</label>
{% endfor %}</fieldset>
<label for="reporter">Your name or badge</label>
<input type="text" id="reporter" name="reporter" required maxlength="{{ max_reporter }}" autocomplete="name"
 value="{{ reporter }}">
<button type="submit">Send report</button>
</form>
</body></html>
"""

DONE = _LAYOUT_HEAD + """<h1>Thank you</h1>
<p class="ok" role="status">Your report <strong>#{{ number }}</strong> about device <strong>{{ device_id }}</strong>
was filed. Plant IT will look at it.</p>
<p>Urgency: <strong>{{ urgency_text }}</strong>, reported by <strong>{{ reporter }}</strong></p>
<div class="text">{{ problem }}</div>
</body></html>
"""

REFUSED = _LAYOUT_HEAD + """<h1>{{ title }}</h1>
<p class="error" role="alert">{{ message }}</p>
</body></html>
"""


def style() -> Markup:
    return Markup(STYLE)
