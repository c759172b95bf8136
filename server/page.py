"""The web page of `attn serve`: one HTML page, its stylesheet and its script.

They ship inside the package (`attn.server/static/`) and are read once, when the app is
made: no CDN, no build step, nothing fetched at run time. The page talks to the JSON API
of `attn.server.app` (GET /health, POST /translate, /summarize, /sentiment, /attention,
/translate/file).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import Response

# name -> media type of each file the page is made of.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}
# Every response revalidates: after an upgrade the browser must not mix old and new files.
# The policy keeps the page to its own files and API: nothing from elsewhere can load.
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
}


def read_static(name: str) -> bytes:
    """The bytes of one of the page's files.

    Raises:
        FileNotFoundError: the package was installed without its static files.
    """
    return files("attn.server").joinpath("static", name).read_bytes()


def page_paths() -> list[str]:
    """The URL paths of the page's files (served without an API key)."""
    return ["/" if name == "index.html" else f"/static/{name}" for name in FILES]


def mount_page(app: FastAPI) -> None:
    """Serve the page at / and its files at /static/NAME."""
    content = {name: read_static(name) for name in FILES}

    def route(name: str, path: str) -> None:
        def serve() -> Response:
            return Response(content[name], media_type=FILES[name], headers=HEADERS)

        app.add_api_route(path, serve, methods=["GET"], include_in_schema=False)

    for name, path in zip(FILES, page_paths(), strict=True):
        route(name, path)
