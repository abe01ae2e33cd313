"""Prometheus metrics: point counts (read at scrape time), runs, merges, run and API latency.

Each Service has its own registry, so several services in one process (tests) never clash.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reverie.consolidation.engine import RunReport

POINT_KINDS = ("live", "merged", "archived", "pending_text", "inverted_text", "fresh", "quarantined")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.points = Gauge("reverie_points", "Points by kind, read at scrape time", ["kind"], registry=r)
        self.runs = Counter("reverie_runs_total", "Consolidation runs by outcome", ["status"], registry=r)
        self.merges = Counter("reverie_merges_total", "Merges applied", registry=r)
        self.skipped = Counter(
            "reverie_merges_skipped_total", "Merges voided by concurrent writes", registry=r
        )
        self.run_seconds = Histogram(
            "reverie_run_duration_seconds",
            "Consolidation run duration",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
            registry=r,
        )
        self.api_seconds = Histogram(
            "reverie_api_request_duration_seconds", "API latency", ["method", "route", "status"], registry=r
        )

        self.inversion_seconds = Histogram(
            "reverie_inversion_seconds_per_point",
            "Inversion latency per merged point (a batch's time over its size)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.inverted = Counter("reverie_inverted_points_total", "Merged points inverted", registry=r)
        self.accesses = Gauge(
            "reverie_accesses_flushed", "Accesses (search hits, reads) written since start", registry=r
        )
        self.forget_runs = Gauge("reverie_forget_runs", "Forget runs on record", registry=r)
        self.strength = Gauge(
            "reverie_strength_memories", "Live memories by tenth of retention", ["upper"], registry=r
        )

    def observe_inversion(self, points: int, seconds: float) -> None:
        self.inverted.inc(points)
        for _ in range(points):
            self.inversion_seconds.observe(seconds / points)

    def observe_run(self, report: RunReport | None, seconds: float) -> None:
        self.run_seconds.observe(seconds)
        if report is None:
            self.runs.labels("failed").inc()
            return
        self.runs.labels("dry_run" if report.dry_run else "done").inc()
        if not report.dry_run:
            self.merges.inc(report.merge_count)
            self.skipped.inc(len(report.skipped))

    def render(self, stats: dict[str, Any]) -> bytes:
        for kind in POINT_KINDS:
            self.points.labels(kind).set(stats[kind])
        self.accesses.set(stats["accesses_flushed"])
        self.forget_runs.set(stats["forget_runs"])
        histogram = (stats.get("strength") or {}).get("histogram") or []
        for index, count in enumerate(histogram):
            self.strength.labels(f"{(index + 1) / len(histogram):.1f}").set(count)
        return generate_latest(self.registry)
