"""The sweep's markdown table shows sizes in KiB (the rows and results.json keep bytes)."""

from __future__ import annotations

from convert import sweep


def _row() -> dict:
    row = {"id": "base-int8-cal64", "bytes": 259_472, "gzip_bytes": 200_704,
           "arena_tflm": None, "macs_per_hop": 812_345, "host_us_per_hop": 41.5}
    for source in sweep.SOURCES:
        row.update({f"{source}_sdr_float": 9.5, f"{source}_sdr_quant": 9.25,
                    f"{source}_drop_db": 0.25, f"{source}_vs_base_db": -0.25})
    return row


def test_sizes_are_kib_in_the_table():
    header, _, line = sweep.markdown_table([_row()]).splitlines()
    names = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|")), strict=True))
    assert not [n for n in names if "bytes" in n]
    assert cells["KiB"] == "253.4" and cells["gzip KiB"] == "196.0"
    assert cells["arena KiB (TFLM)"] == "-" and cells["MACs/hop"] == "812,345"
