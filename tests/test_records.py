"""Records are made, written and read in one module, against one schema version."""

import json
import os
import stat

import pytest

from fairbench.errors import FairbenchError
from fairbench.records import SCHEMA_VERSION, atomic_write_text, make_record, read_record, spec_hash, write_record


def _record():
    return make_record(spec={"method": {"name": "conditional"}}, label="conditional", metrics={"epsilon": 0.5},
                       provenance={"device": "cpu"}, extra={"job_key": "ab" * 32})


def test_written_record_reads_back_equal(tmp_path):
    record = _record()
    path = write_record(tmp_path, record)
    assert path.name == "ab" * 8 + ".json"
    assert read_record(path) == record
    assert record["schema_version"] == SCHEMA_VERSION and record["spec_hash"] == spec_hash(record["spec"])


@pytest.mark.parametrize("edit,words", [
    (lambda r: r.update(schema_version=SCHEMA_VERSION + 1), ["schema version", str(SCHEMA_VERSION + 1)]),
    (lambda r: r.pop("schema_version"), ["schema version None"]),
    (lambda r: r.pop("provenance"), ["lacks provenance"]),
    (lambda r: r.pop("metrics"), ["not a fairbench record"]),
])
def test_records_of_another_schema_are_refused_on_one_line(tmp_path, edit, words):
    record = dict(_record())
    edit(record)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record))
    with pytest.raises(FairbenchError) as info:
        read_record(path)
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_usual_permissions(tmp_path, umask, mode):
    """Records and reports are written 0666 less the umask, as `open` would (a temporary file
    from `tempfile.mkstemp` is 0600, and `os.replace` keeps that mode)."""
    previous = os.umask(umask)
    try:
        record = make_record(spec={"seed": 0}, label="m", metrics={"epsilon": 0.1}, provenance={})
        path = write_record(tmp_path, record)
        page = tmp_path / "leaderboard.md"
        atomic_write_text(page, "text\n")
        atomic_write_text(page, "replaced\n")  # a rewrite too
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE(page.stat().st_mode) == mode and page.read_text() == "replaced\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.md", "records"]  # no temporary left


def test_provenance_says_when_the_record_was_made():
    from datetime import datetime, timezone

    from fairbench.records import provenance

    made = datetime.fromisoformat(provenance(device="cpu", seed=0, batch_size=1)["date"])
    assert made.tzinfo is not None and abs((datetime.now(timezone.utc) - made).total_seconds()) < 60
