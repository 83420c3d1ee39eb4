"""``dedup review``: the page and its JSON API (FastAPI, served by uvicorn on 127.0.0.1).

Safety, in the order a request meets it:

- **Host check**: on a loopback address only ``127.0.0.1:<port>`` / ``localhost:<port>`` are
  accepted as the ``Host`` header, so a web page elsewhere cannot reach the server through DNS
  rebinding.
- **Token**: listening on any other address needs a token (``--host`` prints a URL carrying it);
  the page's first load turns it into a ``SameSite=Strict`` cookie.
- **Same-origin writes**: every POST must carry the ``X-Dedup: 1`` header, which a cross-site form
  or image cannot send (and no CORS header ever allows it).
- **No markup from data**: the page builds every element with ``textContent``; the
  Content-Security-Policy allows only the server's own script and style, so even a record value
  like ``<script>`` or ``"><img onerror=...>`` stays text.
- The server writes only ``OUTPUT/labels.parquet`` and ``OUTPUT/.review/``, and retrains into
  ``OUTPUT``; record ids from the browser are looked up, never used as paths.
"""

from __future__ import annotations

import hmac
import secrets
import socket
from importlib import resources
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from dedup.errors import DedupError
from dedup.review.session import ReviewSession

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC = {
    "/": ("page.html", "text/html"),
    "/page.js": ("page.js", "text/javascript"),
    "/page.css": ("page.css", "text/css"),
}


class Answer(BaseModel):
    left: str
    right: str
    label: str = "non-match"
    tab: str = ""


def is_loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def create_app(session: ReviewSession, host: str, port: int, token: str | None) -> FastAPI:
    app = FastAPI(title="dedup review", docs_url=None, redoc_url=None, openapi_url=None)
    allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"} if is_loopback(host) else None

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN001 (Starlette's signature)
        if allowed_hosts is not None and request.headers.get("host", "") not in allowed_hosts:
            return PlainTextResponse("unknown host", status_code=421)
        set_cookie = False
        if token is not None:
            given = request.cookies.get("dedup_token") or request.headers.get("x-dedup-token") or ""
            if request.url.path == "/" and request.query_params.get("token"):
                given, set_cookie = request.query_params["token"], True
            if not hmac.compare_digest(given.encode(), token.encode()):
                return PlainTextResponse("a token is needed (see the URL dedup review printed)", status_code=403)
        if request.method == "POST" and request.headers.get("x-dedup") != "1":
            return PlainTextResponse("missing X-Dedup header", status_code=403)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        if set_cookie and token is not None:
            response.set_cookie("dedup_token", token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(DedupError)
    async def dedup_error(request: Request, exc: DedupError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    for route, (name, media) in STATIC.items():
        body = resources.files("dedup.review").joinpath(name).read_bytes()

        def static(body: bytes = body, media: str = media) -> Response:
            return Response(body, media_type=media)

        app.get(route, include_in_schema=False)(static)

    @app.get("/api/next")
    def next_pair(tab: str = "") -> dict[str, Any]:
        return {"pair": session.next_pair(tab), "progress": session.progress()}

    @app.get("/api/pair")
    def pair(left: str, right: str) -> dict[str, Any]:
        return {"pair": session.pair_view(left, right)}

    @app.post("/api/label")
    def label(answer: Answer) -> dict[str, Any]:
        count = session.answer(answer.left, answer.right, answer.label)
        return {"given": count, "pair": session.next_pair(answer.tab), "progress": session.progress()}

    @app.post("/api/undo")
    def undo(answer: Answer) -> dict[str, Any]:
        undone = session.undo(answer.left, answer.right)
        return {"undone": undone, "progress": session.progress()}

    @app.get("/api/progress")
    def progress() -> dict[str, Any]:
        return session.progress()

    @app.get("/api/cluster")
    def cluster(id: str) -> dict[str, Any]:  # noqa: A002 (the query parameter's name)
        return session.cluster_view(id)

    @app.post("/api/split")
    def split(answer: Answer) -> dict[str, Any]:
        return session.split(answer.left, answer.right)

    @app.get("/api/record")
    def record(id: str) -> dict[str, Any]:  # noqa: A002
        return session.record_view(id)

    @app.post("/api/retrain")
    def retrain() -> dict[str, Any]:
        return session.start_retrain()

    return app


def open_socket(host: str, port: int) -> socket.socket:
    """Bind now (port 0: any free port), so the URL printed is the one served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    return sock


def serve(output: str | Path, host: str = "127.0.0.1", port: int = 8765, input_path: str | Path | None = None) -> None:
    """Serve the review page until interrupted (Ctrl-C)."""
    import uvicorn

    session = ReviewSession(output, input_path)
    token = None if is_loopback(host) else secrets.token_urlsafe(24)
    try:
        sock = open_socket(host, port)
    except OSError as exc:
        raise DedupError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from None
    port = sock.getsockname()[1]
    app = create_app(session, host, port, token)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"reviewing {session.output} ({len(session.probability):,} pairs) at {url}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
