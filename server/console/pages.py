"""What every console page shares: its security headers and the HTML error
page.  Pages load one local style sheet and, on a running import's page only, one
local script (``static/``); the Content-Security-Policy allows nothing
inline and nothing from elsewhere."""

from __future__ import annotations

from flask import Response, g, render_template, request

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
# a page that set ``g.airlock_script`` (the import's progress) may load the console's own scripts and ask
# the console for JSON: nothing inline, nothing from elsewhere
CSP_WITH_SCRIPT = CSP.replace("default-src 'none';", "default-src 'none'; script-src 'self'; connect-src 'self';")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TITLES = {400: "Please check the request", 401: "Please log in", 403: "Not allowed", 404: "Not found",
          405: "Not allowed here", 409: "Refused", 413: "Too large", 429: "Too many attempts",
          500: "Something went wrong", 503: "Busy"}


def add_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if g.get("airlock_script"):
        response.headers["Content-Security-Policy"] = CSP_WITH_SCRIPT
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def error_page(status: int, message: str) -> Response:
    """A refusal or failure as a page: the one-line message, never a trace."""
    response = Response(render_template("console/error.html", title=TITLES.get(status, "Refused"), message=message,
                                        status=status, user=g.get("airlock_session")),
                        status=status, mimetype="text/html")
    return add_headers(response)
