"""`python -m ui.server [streamlit options]`: the UI as `easgd up` serves it.

Streamlit's own command line, on ui/app.py (whose .streamlit/config.toml sets the theme and
hides the developer menu), with one repair made before its server starts; see
`_serve_images_uncompressed`.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def _serve_images_uncompressed() -> None:
    """Streamlit 1.60's gzip middleware holds back the start of a response whose type Starlette
    (1.5 and later) will not compress (PNG, JPEG, GIF, WebP) and then sends its body alone, so
    the /favicon.png that every page load asks for answered 500, with a 65-line traceback in the
    terminal. Streamlit 1.62 sends such paths around the middleware, as here; it needs protobuf
    5, which TensorFlow 2.17 does not accept. A Streamlit without this function is left alone."""
    try:
        from streamlit.web.server.starlette import starlette_gzip_middleware as gzip
    except ImportError:
        return
    bypass = getattr(gzip, "_should_bypass_static_gzip", None)
    if bypass is None or getattr(bypass, "images_bypass", False):
        return

    def should_bypass(path: str) -> bool:
        return bypass(path) or path == "/favicon.png" or path.startswith("/media/")

    should_bypass.images_bypass = True  # type: ignore[attr-defined]
    gzip._should_bypass_static_gzip = should_bypass


def main(argv: list[str] | None = None) -> None:
    _serve_images_uncompressed()
    from streamlit.web import cli

    cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    main()
