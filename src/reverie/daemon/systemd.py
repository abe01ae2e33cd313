"""systemd's notify protocol (Type=notify), without a dependency: one datagram a state.

READY=1 once the API listens, WATCHDOG=1 every half watchdog interval while the API
answers, STOPPING=1 when a shutdown begins. Outside systemd (no $NOTIFY_SOCKET) every
call is a no-op.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

# Held while checking health and pinging, and while marking a shutdown and saying so:
# no WATCHDOG=1 can follow STOPPING=1.
state_lock = threading.Lock()


def notify(state: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True


def watchdog_interval() -> float | None:
    """Seconds between pings: half of $WATCHDOG_USEC, or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2e6 if usec and usec.isdigit() and int(usec) > 0 else None


def start_watchdog(healthy: Callable[[], bool], stop: threading.Event) -> threading.Thread | None:
    interval = watchdog_interval()
    if interval is None:
        return None

    def ping() -> None:
        while not stop.wait(interval):
            with state_lock:
                if healthy():
                    notify("WATCHDOG=1")

    thread = threading.Thread(target=ping, name="systemd-watchdog", daemon=True)
    thread.start()
    return thread
