"""kolyric over HTTP: a FastAPI app serving one model to many clients (``kolyric serve``).

``create_app(source, limits)`` builds the app (``kolyric.serve.api``); request bodies are
validated by ``kolyric.serve.schema`` with the same settings validation as the CLI and the
app. FastAPI is imported only when the app is built, so importing this package stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kolyric.serve.problems import RequestError
from kolyric.serve.schema import Limits, parse_generation

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kolyric.serve.host import ModelSource

__all__ = ["Limits", "RequestError", "create_app", "parse_generation"]


def create_app(
    source: ModelSource,
    limits: Limits | None = None,
    *,
    description: str | None = None,
    docs: bool = False,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """See ``kolyric.serve.api.create_app``."""
    from kolyric.serve.api import create_app as build

    return build(source, limits, description=description, docs=docs, allowed_hosts=allowed_hosts)
