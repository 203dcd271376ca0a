"""kolyric over HTTP: a FastAPI app serving one model to many clients (``kolyric serve``).

``create_app(source, limits)`` builds the app (``kolyric.serve.api``); request bodies are
validated by ``kolyric.serve.schema`` with the same settings validation as the CLI and the
app. FastAPI is imported only when the app is built, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

from kolyric.serve.schema import Limits, RequestError, parse_generation

__all__ = ["Limits", "RequestError", "create_app", "parse_generation"]


def create_app(source: Any, limits: Limits | None = None, **kwargs: Any) -> Any:
    """See ``kolyric.serve.api.create_app``."""
    from kolyric.serve.api import create_app as build

    return build(source, limits, **kwargs)
