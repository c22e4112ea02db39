"""Records are made, written and read in one module, against one schema version."""

import json

import pytest

from fairbench.errors import FairbenchError
from fairbench.records import SCHEMA_VERSION, make_record, read_record, spec_hash, write_record


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
