"""The scheduled jobs (APScheduler): consolidate on an interval or a crontab, storage
maintenance, the write of buffered accesses, and (with an inverter configured) inversion
of settled merged points.
One instance of a job at a time, missed runs coalesced into one; a consolidation that
would overlap another, or an undo from the API, is skipped and logged."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reverie.config import SchedulerSettings
from reverie.daemon.service import Service
from reverie.errors import BusyError, NotFoundError

log = structlog.get_logger("reverie.scheduler")


def start_scheduler(service: Service, settings: SchedulerSettings) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    every = IntervalTrigger(seconds=settings.consolidate_every)
    when = (
        CronTrigger.from_crontab(settings.consolidate_cron, timezone="UTC")
        if settings.consolidate_cron
        else every
    )
    scheduler.add_job(_job("consolidate", service.consolidate), when, id="consolidate", name="consolidate")
    scheduler.add_job(
        _job("maintain", service.maintain),
        IntervalTrigger(seconds=settings.maintain_every),
        id="maintain",
        name="maintain",
    )
    scheduler.add_job(
        _job("flush-accesses", service.rv.flush_accesses),
        IntervalTrigger(seconds=service.rv.settings.memory.flush_accesses),
        id="flush-accesses",
        name="write buffered accesses",
    )
    forget = service.rv.settings.forget
    if forget.enabled:
        scheduler.add_job(
            _job("forget", service.forget_faded),
            IntervalTrigger(seconds=forget.every),
            id="forget",
            name="faded memories go dormant",
        )
    if service.rv.settings.inversion.model != "none":
        scheduler.add_job(
            _job("invert", service.invert_pending),
            IntervalTrigger(seconds=settings.invert_every),
            id="invert",
            name="invert pending merged points",
        )
    scheduler.start()
    log.info("scheduler.start", jobs=[job.id for job in scheduler.get_jobs()])
    return scheduler


def _job(name: str, work: Callable[[], object]) -> Callable[[], None]:
    """`work` that logs its start and end (at debug: which job a crash interrupted) and
    whose failure leaves the schedule running."""

    def run() -> None:
        started = time.perf_counter()
        log.debug("job.started", job=name)
        try:
            work()
            log.debug("job.finished", job=name, seconds=round(time.perf_counter() - started, 3))
        except BusyError:
            log.info(
                "scheduler.skipped", job=name, reason="another consolidation, undo or maintenance is running"
            )
        except NotFoundError:
            log.debug("scheduler.skipped", job=name, reason="no memories yet")
        except Exception as exc:  # a failed run must not stop the schedule
            log.error("scheduler.job_failed", job=name, error=repr(exc))

    return run
