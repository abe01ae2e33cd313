"""Files written whole or not at all (whole_files.py): an error mid-write keeps the old file."""

from pathlib import Path

import pytest

from reverie.whole_files import replaced_whole


def test_a_finished_write_replaces_the_file_and_leaves_no_scratch(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "meta.json"  # its folder is made
    with replaced_whole(target) as scratch:
        scratch.write_text("new")
        assert not target.exists()  # nothing shows until the write is whole
    assert target.read_text() == "new"
    assert list(target.parent.iterdir()) == [target]
    plain = tmp_path / "plain.json"
    plain.write_text("new")  # readable as any new file is (a daemon may run as another user)
    assert target.stat().st_mode == plain.stat().st_mode


def test_an_error_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replaced_whole(target) as scratch:
        scratch.write_text("half")
        raise RuntimeError("the disk filled")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
