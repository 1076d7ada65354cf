"""GET /metrics: Prometheus text from a registry of this app's own (not the process-global one,
so that several apps in one process, as in tests, do not collide).

Requests are counted by route and status and timed by route, in an ASGI middleware; the
schedulers' state (queue depth, rows in the last step, image tokens, images made, text
tokens, busy time) is the backend's `stats()` at each scrape, per model: one Scheduler's for
the local server, the sum over a model's live replicas for the Ray one (ray_stats.py), with
`janus_replicas` saying how many. Image tokens/s is `rate(janus_image_tokens_total[1m])`, or
since start `janus_image_tokens_per_busy_second`.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTES = ("/v1/chat/completions", "/v1/images/generations", "/v1/models", "/health", "/metrics")
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)


def route_of(path: str) -> str:
    """A bounded label for PATH: a known route, /files, / (the page) or other."""
    if path in ROUTES:
        return path
    if path.startswith("/files/"):
        return "/files"
    return "/" if path == "/" or path.startswith("/static/") else "other"


class Metrics:
    """The registry of one app and its instruments."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "janus_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        timed = {"buckets": BUCKETS, "registry": self.registry}
        self.latency = Histogram(
            "janus_request_seconds", "Time to the end of the response", ["route"], **timed
        )
        self.ttft = Histogram(
            "janus_chat_first_token_seconds", "Chat: time to the first text", ["model"], **timed
        )
        self.schedulers = _SchedulerCollector()
        self.registry.register(self.schedulers)

    def scrape(self, stats: dict) -> bytes:
        """The registry's text, the schedulers' part from STATS (model name -> SchedulerStats,
        with an optional `replicas` attribute)."""
        self.schedulers.stats = stats
        return generate_latest(self.registry)

    def middleware(self, app):
        """ASGI middleware that counts and times every HTTP request."""

        async def counted(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            route, t0, status = route_of(scope["path"]), time.perf_counter(), [500]

            async def sending(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                self.requests.labels(route, str(status[0])).inc()
                self.latency.labels(route).observe(time.perf_counter() - t0)

        return counted


class _SchedulerCollector:
    """The schedulers' stats given to the scrape."""

    def __init__(self):
        self.stats: dict = {}

    def describe(self):
        return []

    def collect(self):
        gauges = {
            "queue_depth": "Requests waiting to start",
            "active_images": "Images in the running batch",
            "active_text_rows": "Chat answers in the running batch",
            "rows_last_step": "Rows (images and answers) in the last forward step",
        }
        counters = {
            "steps": "Forward steps run",
            "image_tokens": "Image tokens (Janus) or Euler steps x images (JanusFlow) made",
            "images_made": "Images made",
            "text_tokens": "Answer tokens made",
            "busy_seconds": "Seconds the worker spent running steps",
        }
        g = {k: GaugeMetricFamily(f"janus_{k}", h, labels=["model"]) for k, h in gauges.items()}
        c = {k: CounterMetricFamily(f"janus_{k}", h, labels=["model"]) for k, h in counters.items()}
        rate = GaugeMetricFamily(
            "janus_image_tokens_per_busy_second",
            "Image tokens per second of worker busy time",
            labels=["model"],
        )
        replicas = GaugeMetricFamily("janus_replicas", "Live schedulers serving the model", labels=["model"])
        for name, s in self.stats.items():
            replicas.add_metric([name], getattr(s, "replicas", 1))
            for k in gauges:
                g[k].add_metric([name], getattr(s, k))
            for k in counters:
                c[k].add_metric([name], getattr(s, k))
            rate.add_metric([name], s.image_tokens / s.busy_seconds if s.busy_seconds else 0.0)
        yield from g.values()
        yield from c.values()
        yield rate
        yield replicas
