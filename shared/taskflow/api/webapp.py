"""The web app's static files, served by tasks-api at ``/`` with strict security headers.

The files are built from ``web/`` by ``tools/build_web.py`` (Vite, content-hashed names under
``assets/``). Hashed files are cached for a year; ``index.html`` is revalidated on every load so a
new build is picked up at once. A ``.gz`` sibling written by the build is sent to browsers that
accept gzip.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from flask import Request, Response, send_file
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join

from taskflow.api.http import HttpError
from taskflow.config import Settings

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_API_PREFIXES = ("/v1/", "/healthz", "/readyz")


def web_dir(explicit: str | None) -> Path | None:
    """TASKFLOW_WEB_DIR, else ``web/dist`` of the checkout this library runs from, else of the cwd."""
    if explicit:
        return Path(explicit)
    candidates = [p / "web" / "dist" for p in Path(__file__).resolve().parents]
    candidates.append(Path.cwd() / "web" / "dist")
    return next((c for c in candidates if (c / "index.html").is_file()), None)


def is_asset_request(request: Request) -> bool:
    """GET or HEAD of anything outside the API's paths."""
    path = request.path
    return request.method in ("GET", "HEAD") and not (path == "/v1" or path.startswith(_API_PREFIXES))


def content_security_policy(settings: Settings) -> str:
    """No inline script or style; the API is same-origin; only the OIDC issuer may be fetched besides."""
    connect = ["'self'"]
    oidc = settings.oidc
    if oidc is not None:
        parts = urlsplit(oidc.issuer)
        connect.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "manifest-src 'self'",
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )


def secure(resp: Response, settings: Settings) -> Response:
    """Headers every page and asset carries."""
    resp.headers["Content-Security-Policy"] = content_security_policy(settings)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return resp


def serve(request: Request, settings: Settings, root: Path | None) -> Response:
    """One static file of ``root`` (the built app); ``/`` is the app's page. Unknown paths are a 404 problem."""
    if root is None:
        raise HttpError(
            404,
            "Not found",
            "the web app is not built; run `python tools/build_web.py` (nox -s dev does)",
            slug="not-found",
        )
    name = "index.html" if request.path in ("/", "/index.html") else request.path.lstrip("/")
    path = safe_join(str(root), name)
    if path is None or not os.path.isfile(path):
        raise HttpError(404, "Not found", f"no file {request.path}", slug="not-found")
    gz = path + ".gz"
    use_gz = "gzip" in request.headers.get("Accept-Encoding", "") and os.path.isfile(gz)
    try:
        resp = send_file(
            gz if use_gz else path,
            mimetype=_mimetype(name),
            conditional=True,
            etag=True,
            max_age=None,
        )
    except NotFound as exc:  # removed between the check and the open
        raise HttpError(404, "Not found", f"no file {request.path}", slug="not-found") from exc
    if use_gz:
        resp.headers["Content-Encoding"] = "gzip"
    resp.headers["Vary"] = "Accept-Encoding"
    resp.headers["Cache-Control"] = IMMUTABLE if name.startswith("assets/") else REVALIDATE
    return secure(resp, settings)


def _mimetype(name: str) -> str | None:
    """The type of a built file (flask adds ``charset=utf-8`` to text types)."""
    import mimetypes

    if name.endswith(".js"):
        return "text/javascript"
    guessed, _ = mimetypes.guess_type(name)
    return guessed
