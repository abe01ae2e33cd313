"""Where a running `reverie serve` can be reached, so other commands go through it.

`serve` writes `<data_dir>/daemon.json` once it listens and removes it when it stops. A
file left behind by a killed daemon names a dead process and is ignored. Light on
imports: every CLI command reads this.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "daemon.json"
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True)
class Registration:
    pid: int
    url: str


def url_for(host: str, port: int) -> str:
    host = _ANY_ADDRESS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def register(data_dir: Path, host: str, port: int) -> Path:
    path = data_dir / FILE_NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(Registration(os.getpid(), url_for(host, port)))))
    os.replace(temporary, path)  # readers never see half a file
    return path


def unregister(path: Path) -> None:
    path.unlink(missing_ok=True)


def running_daemon(data_dir: Path) -> Registration | None:
    """The daemon serving this data directory, if its process is alive."""
    try:
        found = Registration(**json.loads((data_dir / FILE_NAME).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return found if _alive(found.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user (a systemd DynamicUser)
        return True
    return True
