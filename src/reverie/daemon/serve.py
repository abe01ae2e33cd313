"""`reverie serve`: open storage once, recover, then serve the HTTP API until a signal.

SIGTERM and SIGINT start a graceful shutdown: no new requests, in-flight ones (a
consolidation among them) run to their end, then storage is flushed and closed and the
process exits 0. A second signal exits at once; recovery covers that case.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import structlog
import uvicorn

from reverie.config import Settings
from reverie.daemon import systemd
from reverie.daemon.registration import FILE_NAME, register, unregister
from reverie.daemon.service import Service
from reverie.errors import ConfigError, StorageUnreachableError
from reverie.memory import Reverie

log = structlog.get_logger("reverie.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StoppableServer(uvicorn.Server):
    """uvicorn re-raises the signal after a graceful shutdown, so the process would end by
    SIGTERM (status -15); a server stopped on purpose exits 0 instead. A second signal
    exits at once."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            log.warning("serve.forced_exit", signal=sig)
            os._exit(128 + sig)
        self.should_exit = True


class _Server(StoppableServer):
    """`reverie serve`'s server: it also tells systemd when it is ready and when it stops."""

    def __init__(self, config: uvicorn.Config, service: Service, data_dir: Path) -> None:
        super().__init__(config)
        self.service = service
        self.data_dir = data_dir

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]  # the real one when port is 0
            register(self.data_dir, self.config.host, port)
            systemd.notify("READY=1")
            log.info("serve.ready", host=self.config.host, port=port)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            log.warning("serve.forced_exit", signal=sig)
            os._exit(128 + sig)
        log.info("serve.stopping", signal=sig, grace_period=self.config.timeout_graceful_shutdown)
        with systemd.state_lock:  # the watchdog pings no more once STOPPING=1 is out
            self.should_exit = True
            systemd.notify("STOPPING=1")
        self.service.stop()


def _open_when_reachable(settings: Settings, longest_wait: float = 30.0) -> Reverie | None:
    """Open storage and recover. A daemon started before its Qdrant server (or while it
    restarts) says so and retries, waiting twice as long each time up to `longest_wait`;
    SIGTERM or SIGINT meanwhile ends it cleanly (None)."""
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        wait = 1.0
        while True:
            rv = Reverie.open(settings)
            try:
                if rv.exists:
                    log.info("serve.recovered", **rv.recover(), agent_deletes=rv.honour_agent_deletes())
                return rv
            except StorageUnreachableError as exc:
                rv.close()
                log.warning("storage.unreachable", error=str(exc), retry_in=wait)
            if stop.wait(wait):
                log.info("serve.stopped", reason="signal while waiting for storage")
                return None
            wait = min(2 * wait, longest_wait)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def serve(settings: Settings) -> None:
    from reverie.daemon.api import create_app
    from reverie.daemon.scheduler import start_scheduler

    d = settings.daemon
    if not is_loopback(d.host) and not d.api_key:
        raise ConfigError(
            f"daemon.host {d.host!r} is not loopback: set daemon.api_key (REVERIE_DAEMON__API_KEY) "
            "so that every route but health needs it"
        )
    rv = _open_when_reachable(settings)
    if rv is None:
        return
    with rv:
        service = Service(rv)
        service.load_models_in_background()
        scheduler = start_scheduler(service, settings.scheduler) if settings.scheduler.enabled else None
        app = create_app(service, scheduler)
        log.info("serve.start", host=d.host, port=d.port, collection=rv.collection)
        config = uvicorn.Config(
            app,
            host=d.host,
            port=d.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=d.grace_period,
        )
        server = _Server(config, service, settings.storage.data_dir)
        stop_watchdog = threading.Event()
        systemd.start_watchdog(lambda: server.started and not server.should_exit, stop_watchdog)
        try:
            server.run()
        finally:
            unregister(settings.storage.data_dir / FILE_NAME)
            stop_watchdog.set()
            if scheduler is not None:
                scheduler.shutdown(wait=True)  # a running job reaches its end first
            service.wait_idle()  # a run the API started, past the grace period, stops at a merge
        log.info("serve.stopped")
