"""The HTTP API's suites: the real server (uvicorn on a free 127.0.0.1 port) with a tiny local model,
driven by a real HTTP client (httpx). Each server is started once for all of them."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from kolyric.serve.schema import Limits

from tests.servers import LiveServer


def make_generator_class():
    from kolyric.engine.stream import Generator

    class InstrumentedGenerator(Generator):
        """Prompts starting with 느리게 take ``delay`` s per token (so a test can act mid-stream);
        the prompt 폭발 raises inside the generation."""

        delay = 0.05

        def stream(self, request, cancel=None, controls=None):
            if request.prompt == "폭발":
                raise RuntimeError("secret internal detail")
            for event in super().stream(request, cancel=cancel, controls=controls):
                yield event
                if request.prompt.startswith("느리게"):
                    time.sleep(self.delay)

    return InstrumentedGenerator


@pytest.fixture(scope="package")
def server(tiny_model_dir):
    """The server as `kolyric serve` builds it: a loader called in the background."""
    from kolyric.engine.loading import load_model
    from kolyric.serve import create_app

    app = create_app(lambda: load_model(str(tiny_model_dir), device="cpu"), Limits(queue_depth=16))
    with LiveServer(app) as live:
        live.wait_ready()
        yield live


@pytest.fixture(scope="package")
def small_server(tiny_loaded):
    """One worker, one waiting place; slow and failing prompts available."""
    from kolyric.serve import create_app

    app = create_app(make_generator_class()(tiny_loaded), Limits(queue_depth=1, workers=1, max_body_bytes=4096))

    @app.get("/test/crash")
    async def crash():
        raise ValueError("another secret detail")

    with LiveServer(app) as live:
        live.wait_ready()
        yield live
