"""Soak: generations in one process with cancels in between (the Generator loop and the
server over HTTP). The short runs here check for leaks (threads, file handles, failures);
the 1,000-generation runs (``slow``, or ``python -m tests.reliability.soak``) also fit the
memory slope."""

from __future__ import annotations

import pytest

from tests.reliability import soak
from tests.reliability._util import count

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("psutil")


def check(report, name: str, *, slope_limit: float | None = None) -> None:
    count(f"soak: {name} generations", report.generations)
    count(f"soak: {name} cancels", report.cancelled + report.abandoned)
    print(name, {k: v for k, v in vars(report).items() if k not in ("failures", "rss_mb")})
    assert not report.failures, "\n".join(report.failures[:20])
    assert report.threads_end <= report.threads_start, f"threads leaked: {report.threads_start} -> {report.threads_end}"
    assert report.fds_end <= report.fds_start + 1, f"file handles leaked: {report.fds_start} -> {report.fds_end}"
    if slope_limit is not None:
        assert report.rss_slope_mb_per_100 < slope_limit, f"memory grows {report.rss_slope_mb_per_100} MB/100"
        assert report.rss_end_mb - report.rss_start_mb < 25, (report.rss_start_mb, report.rss_end_mb)


def test_generator_loop_with_cancels(tiny_model_dir):
    report = soak.soak_generator(120, tiny_model_dir, warmup=40, sample_every=40, log=lambda *_: None)
    check(report, "generator")
    assert report.generations == 120 and report.cancelled >= 15 and report.abandoned >= 10


def test_server_over_http_with_cancels(tiny_model_dir):
    report = soak.soak_server(60, tiny_model_dir, clients=3, warmup=20, sample_every=20, log=lambda *_: None)
    check(report, "server")
    assert report.generations == 60 and report.cancelled >= 5
    assert report.health_max_s < 2.0, f"/health took {report.health_max_s} s while generating"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_thousand_generations_in_one_process(tiny_model_dir):
    report = soak.soak_generator(1000, tiny_model_dir)
    check(report, "generator", slope_limit=1.0)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_thousand_generations_through_the_server(tiny_model_dir):
    report = soak.soak_server(1000, tiny_model_dir)
    check(report, "server", slope_limit=1.0)
    assert report.health_max_s < 2.0
