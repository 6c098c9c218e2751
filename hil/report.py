"""The HIL report: summary and pass/fail checks from per-clip records, written as JSON, JUnit XML
and Markdown. Files are replaced atomically after every clip, so a run that dies midway leaves a
consistent report of the clips that finished (``status`` says why it stopped).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from tinysep.data.clip import SOURCES
from tinysep.eval_inputs import FILES
from tinysep.jsonfile import write_text_atomic
from tinysep.metrics.paired import INTERVAL, clip_song, format_bounds, mean_interval

VARIANTS = ("float", "int8_host", "int8_board")
VARIANT_LABELS = {"float": "float (host)", "int8_host": "int8 (host)", "int8_board": "int8 (board)"}
METRICS = ("sdr", "sir", "sar")
NOT_SCORED = "n/a (no reference)"  # what an SDR cell shows for a clip given without references
JSON_NAME = "hil.json"
JUNIT_NAME = "hil.junit.xml"
MARKDOWN_NAME = "hil.md"
AGENT_LOG_NAME = "agent.log"  # the emulated agent's output
FIGURES_DIR = "figures"
# everything a run writes into its report folder; another run may replace only these
REPORT_ENTRIES = (JSON_NAME, JUNIT_NAME, MARKDOWN_NAME, AGENT_LOG_NAME, FIGURES_DIR)


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _difference(a, b) -> float | None:
    return None if a is None or b is None else float(a - b)


def _percentile(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def is_referenced(clip: dict) -> bool:
    """True when the clip came with reference sources (dataset clips always do)."""
    return clip.get("references", True)


def report_sources(report: dict) -> list:
    """The bundle's sources, in manifest order (vocals, accompaniment when not recorded)."""
    return list((report.get("bundle") or {}).get("sources") or SOURCES)


def _interval_text(summary: dict, variant: str, source: str) -> str:
    """`` [low, high] (95 % over songs)`` of a variant's drop on ``source`` ("" without one)."""
    interval = (summary.get("drop_interval") or {}).get(variant, {}).get(source)
    bounds = format_bounds(interval, 3)
    return f" {bounds} ({INTERVAL * 100:g} % over songs)" if bounds else ""


def summarize(report: dict) -> dict:
    """Means per variant / source / metric, drops, LSB, timing and link totals over ok clips."""
    sources = report_sources(report)
    clips = [c for c in report["clips"] if c.get("status") == "ok"]
    summary: dict = {
        "clips": len(report["clips"]),
        "clips_ok": len(clips),
        "clips_failed": len(report["clips"]) - len(clips),
        "audio_seconds": float(sum(c["seconds"] for c in clips)),
        "scores": {},
        "drop": {},
    }
    for variant in VARIANTS:
        summary["scores"][variant] = {
            source: {
                metric: _mean(c["scores"][variant][source].get(metric) for c in clips)
                for metric in METRICS
            }
            for source in sources
        }
    # the drops' means, each with its interval over songs (a clip naming none: its own)
    summary["drop_interval"] = {
        variant: {source: mean_interval([(clip_song(c), drop) for c in clips
                                         if (drop := c["drop"][variant][source]) is not None
                                         and np.isfinite(drop)])
                  for source in sources}
        for variant in ("int8_host", "int8_board")
    }
    summary["drop"] = {variant: {source: interval["mean"] if interval else None
                                 for source, interval in by_source.items()}
                       for variant, by_source in summary["drop_interval"].items()}
    summary["board_vs_host_sdr"] = {
        source: _mean(
            _difference(
                c["scores"]["int8_board"][source].get("sdr"),
                c["scores"]["int8_host"][source].get("sdr"),
            )
            for c in clips
        )
        for source in sources
    }
    summary["vs_float_snr"] = {
        variant: {
            source: _mean((c.get("vs_float_snr") or {}).get(variant, {}).get(source)
                          for c in clips)
            for source in sources
        }
        for variant in ("int8_host", "int8_board")
    }
    lsb = [c["lsb"] for c in clips]
    summary["lsb"] = {
        "max_abs": max((s["max_abs"] for entry in lsb for s in entry.values()), default=None),
        "differing_samples": int(sum(s["differing"] for entry in lsb for s in entry.values())),
        "samples": int(sum(s["samples"] for entry in lsb for s in entry.values())),
    }
    invoke = [v for c in clips for v in c["stream"]["invoke_us_per_chunk"]]
    summary["invoke_us"] = {
        "p50": _percentile(invoke, 50),
        "p99": _percentile(invoke, 99),
        "mean": _mean(invoke),
    }
    wall = sum(c["stream"]["wall_seconds"] for c in clips)
    link_keys = (
        "bytes_sent",
        "bytes_received",
        "resends",
        "timeouts",
        "naks_sent",
        "naks_received",
        "duplicates",
        "decode_errors",
        "peer_restarts",
    )
    totals = {key: int(sum(c["stream"]["link"][key] for c in clips)) for key in link_keys}
    wire = totals["bytes_sent"] + totals["bytes_received"]
    session = report.get("session") or {}
    recoveries = session.get("recoveries")
    if session.get("link"):  # the whole session: INFO, tensor check, upload, stopped clips
        totals = {key: int(session["link"].get(key, 0)) for key in link_keys}
    summary["link"] = totals
    summary["stream_seconds"] = wall
    summary["realtime_factor"] = summary["audio_seconds"] / wall if wall > 0 else None
    summary["wire_bytes_per_second"] = wire / wall if wall > 0 else None
    if recoveries is None:
        recoveries = [r for c in clips for r in c["stream"]["recoveries"]]
    summary["recoveries"] = len(recoveries)
    summary["recoveries_by_request"] = {}
    for entry in recoveries:
        during = entry.get("during", "a clip")
        summary["recoveries_by_request"][during] = summary["recoveries_by_request"].get(
            during, 0) + 1
    summary["silent_clips"] = [c["name"] for c in clips if c.get("silent")]
    summary["unreferenced_clips"] = [c["name"] for c in clips if not is_referenced(c)]
    summary["audio_errors"] = [c["name"] for c in clips if c.get("audio_error")]
    summary["converted_clips"] = [
        c["name"] for c in clips if (c.get("input") or {}).get("converted")
    ]
    return summary


def _check(name: str, passed: bool | None, value, threshold, text: str) -> dict:
    return {"name": name, "passed": passed, "value": value, "threshold": threshold, "text": text}


def evaluate_checks(report: dict) -> list:
    """Pass/fail checks; ``passed`` None means not applicable (skipped)."""
    settings = report["settings"]
    summary = report["summary"]
    checks = []
    finished = report["status"] in ("finished", "passed", "failed")
    expected = report.get("clips_planned", summary["clips"])
    checks.append(
        _check(
            "stream_integrity",
            finished and summary["clips_failed"] == 0 and summary["clips"] == expected,
            summary["clips_ok"],
            expected,
            f"{summary['clips_ok']} of {expected} clips streamed with every audio position "
            f"exactly once ({summary['recoveries']} recoveries)",
        )
    )
    limit = settings["max_sdr_drop"]
    gain_limit = settings.get("max_sdr_gain", limit)
    silent = len(summary.get("silent_clips", []))
    silent_text = f"; {silent} silent clip(s) have no SDR and are not scored" if silent else ""
    unreferenced = len(summary.get("unreferenced_clips", []))
    if unreferenced:
        silent_text += (f"; {unreferenced} clip(s) without references are not scored: "
                        f"SDR {NOT_SCORED}")
    referenced = summary["clips_ok"] - unreferenced
    for source in report_sources(report):
        drop = summary["drop"]["int8_board"][source]
        if drop is None and summary["clips_ok"] and not referenced:
            passed = None
            text = (f"{NOT_SCORED} for {source}: none of the {unreferenced} clip(s) came with "
                    "reference sources, so no SDR was computed; the board is checked against "
                    "the host int8 output (LSB) and compared with the float output (SNR)")
        elif drop is None:
            passed = False if summary["clips_ok"] else None
            text = (f"no SDR for {source}: " + (
                "no clip could be scored" + silent_text if summary["clips_ok"]
                else "no clip streamed"))
        else:
            passed = -gain_limit <= drop <= limit
            text = (f"mean SDR drop of the board vs float for {source}: {drop:.3f} dB"
                    f"{_interval_text(summary, 'int8_board', source)} "
                    f"(allowed {-gain_limit:g} .. {limit:g} dB)" + silent_text)
            if drop < -gain_limit:
                text += (": the board is far better than its float model, so they are not "
                         "the same model")
        checks.append(
            _check(f"sdr_drop_{source}", passed, drop, [-gain_limit, limit], text)
        )
    limit, why = lsb_limit(report)
    worst = summary["lsb"]["max_abs"]
    note = "" if limit is not None else f"; not checked: {why}"
    checks.append(
        _check(
            "board_vs_host_int8_lsb",
            None if limit is None else (worst is not None and worst <= limit),
            worst,
            limit,
            f"largest |board - host int8| = {worst} LSB over "
            f"{summary['lsb']['samples']} samples ({summary['lsb']['differing_samples']} differ)"
            + note,
        )
    )
    tensor = report.get("tensor_check")
    if tensor is not None:
        tensor_worst = tensor.get("max_abs_diff")
        if tensor.get("skipped"):
            passed, text = None, "tensor mode not supported by this board, skipped: " + tensor[
                "reason"]
        elif tensor.get("error"):
            passed, text = False, "the board refused tensor mode: " + tensor["error"]
        else:
            passed = None if limit is None else (tensor_worst is not None and tensor_worst <= limit)
            text = (f"raw int8 outputs of {tensor.get('invokes', 0)} invokes: largest "
                    f"difference {tensor_worst} LSB" + note)
        checks.append(_check("tensor_mode_bit_exact", passed, tensor_worst, limit, text))
    provenance = report.get("provenance")
    if provenance is not None:
        if provenance.get("match"):
            passed, text = True, ("the float model is the bundle's source (sha256 "
                                  f"{provenance['float_model']['sha256'][:16]}...)")
        else:
            passed, text = None, provenance.get("note", "not verified")
        checks.append(_check("float_model_provenance", passed, provenance.get("match"), True,
                             text))
    if settings.get("min_realtime") is not None:
        rtf = summary["realtime_factor"]
        checks.append(
            _check(
                "realtime",
                rtf is not None and rtf >= settings["min_realtime"],
                rtf,
                settings["min_realtime"],
                "streaming speed " + ("n/a" if rtf is None else f"{rtf:.2f}x real time"),
            )
        )
    return checks


def lsb_limit(report: dict) -> tuple:
    """(limit or None, why): the board vs host int8 limit in LSB that applies to this run."""
    wanted = report["settings"]["max_lsb"]
    if wanted is not None and wanted < 0:
        return None, "disabled (--max-lsb -1)"
    if wanted is not None:
        return wanted, "set with --max-lsb"
    if report["board"].get("exact_expected"):
        return 0, report["board"].get("exact_reason", "")
    return None, exact_reason(report["board"])


def exact_reason(board: dict) -> str:
    """Why the board is or is not expected to be bit-exact with the host, or why that was
    never judged (the run stopped before or after the board answered)."""
    if "exact_reason" in board:
        return board["exact_reason"]
    if board.get("agent"):
        return "not judged: the run stopped before the board's output was compared"
    return "the board was not reached"


def finalize(report: dict) -> dict:
    """Recompute summary and checks; set ``passed``."""
    report["summary"] = summarize(report)
    report["checks"] = evaluate_checks(report)
    report["passed"] = report["status"] == "finished" and all(
        c["passed"] is not False for c in report["checks"]
    )
    return report


def _not_streamed_text(report: dict, summary: dict) -> str:
    """For a run that stopped early, the note that some planned clips were not streamed."""
    planned = report.get("clips_planned", summary["clips"])
    if planned <= summary["clips"]:
        return ""
    return f" ({planned - summary['clips']} of the {planned} planned clips not streamed)"


def junit_xml(report: dict) -> str:
    """One test suite: a test case per clip (streamed and scored) and per check."""
    suite = ET.Element("testsuite", name="tinysep-hil")
    cases = 0
    failures = 0
    skipped = 0
    for clip in report["clips"]:
        cases += 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname="hil.clips",
            name=clip["name"],
            time=f"{clip.get('stream', {}).get('wall_seconds', 0.0):.3f}",
        )
        if clip.get("status") != "ok":
            failures += 1
            ET.SubElement(case, "failure", message=clip.get("error", "failed")).text = clip.get(
                "error", ""
            )
        elif not is_referenced(clip):
            snr = (clip.get("vs_float_snr") or {}).get("int8_board", {})
            ET.SubElement(case, "system-out").text = (
                f"SDR {NOT_SCORED}; SNR of the board against float: " + ", ".join(
                    f"{s} {v:.2f} dB" for s, v in snr.items() if v is not None))
        else:
            drops = clip["drop"]["int8_board"]
            ET.SubElement(case, "system-out").text = "SDR drop board vs float: " + ", ".join(
                f"{s} {'n/a' if v is None else f'{v:.3f} dB'}" for s, v in drops.items()
            )
    for check in report["checks"]:
        cases += 1
        case = ET.SubElement(suite, "testcase", classname="hil.checks", name=check["name"])
        if check["passed"] is None:
            skipped += 1
            ET.SubElement(case, "skipped", message=check["text"])
        elif not check["passed"]:
            failures += 1
            ET.SubElement(case, "failure", message=check["text"]).text = check["text"]
        else:
            ET.SubElement(case, "system-out").text = check["text"]
    if report["status"] in ("aborted", "refused"):
        cases += 1
        failures += 1
        case = ET.SubElement(suite, "testcase", classname="hil.run", name="run_completed")
        ET.SubElement(case, "failure", message=report.get("error") or "aborted").text = report.get(
            "error"
        )
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode") + "\n"


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(report: dict) -> str:
    """A human-readable report: verdict, scores, drops, bit-exactness, timing, clips, plots."""
    summary = report["summary"]
    board = report["board"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [
        f"# Hardware-in-the-loop report: {verdict}",
        "",
        f"- status: {report['status']}"
        + (f", {report['fault']} fault" if report.get("fault") else "")
        + (f" ({report['error']})" if report.get("error") else ""),
        f"- board: {board.get('port')} - {board.get('agent')}, {board.get('runtime')} "
        f"[{board.get('delegate')}]" + (" (emulated)" if board.get("emulated") else ""),
        f"- bundle: {report['bundle']['path']} (model sha256 "
        f"{report['bundle']['sha256'][:16]}..., K={report['bundle']['frames_per_invoke']})",
        f"- float model: {report['float_model']}" + _provenance_text(report),
        f"- data: {report['data']['path']} " + _data_kind(report) + ", "
        f"{summary['clips_ok']} of {summary['clips']} clips ok"
        + _not_streamed_text(report, summary) + f", {summary['audio_seconds']:.1f} s of audio",
        "",
        "## Checks",
        "",
        "| check | result | value | threshold |",
        "|---|---|---|---|",
    ]
    for check in report["checks"]:
        result = {True: "pass", False: "**FAIL**", None: "skipped"}[check["passed"]]
        lines.append(
            f"| {check['name']} | {result} | {_fmt(check['value'], 3)} | {check['threshold']} |"
        )
    sources = report_sources(report)
    unreferenced = summary.get("unreferenced_clips", [])
    # no clip had references: every SDR cell says why it is empty
    none_scored = bool(unreferenced) and len(unreferenced) == summary["clips_ok"]

    def sdr_cell(value, digits: int = 2) -> str:
        return NOT_SCORED if value is None and none_scored else _fmt(value, digits)

    lines += ["", "## Separation (mean over clips, dB)", ""]
    if unreferenced:
        lines += [f"{len(unreferenced)} clip(s) came without reference sources: streamed and "
                  f"compared with the host int8 and float outputs, SDR {NOT_SCORED} ("
                  + ", ".join(unreferenced[:10]) + (" ..." if len(unreferenced) > 10 else "")
                  + ").", ""]
    header = "| variant | " + " | ".join(f"{s} {m.upper()}" for s in sources for m in METRICS)
    lines += [header + " |", "|---" * (1 + len(sources) * len(METRICS)) + "|"]
    for variant in VARIANTS:
        cells = [sdr_cell(summary["scores"][variant][s][m]) for s in sources for m in METRICS]
        lines.append(f"| {VARIANT_LABELS[variant]} | " + " | ".join(cells) + " |")
    lines += ["", "SDR drop against float (dB, positive = worse; [an interval over songs]):",
              ""]
    lines += ["| variant | " + " | ".join(sources) + " |", "|---" * (1 + len(sources)) + "|"]
    for variant in ("int8_host", "int8_board"):
        cells = [sdr_cell(summary["drop"][variant][s], 3) + _interval_text(summary, variant, s)
                 for s in sources]
        lines.append(f"| {VARIANT_LABELS[variant]} | " + " | ".join(cells) + " |")
    lines += ["", "SNR against the float output (dB, higher = closer; needs no reference):", ""]
    lines += ["| variant | " + " | ".join(sources) + " |", "|---" * (1 + len(sources)) + "|"]
    for variant in ("int8_host", "int8_board"):
        cells = [_fmt((summary.get("vs_float_snr") or {}).get(variant, {}).get(s))
                 for s in sources]
        lines.append(f"| {VARIANT_LABELS[variant]} | " + " | ".join(cells) + " |")
    lines += ["", "SDR per source (mean over clips, dB) and its check:", "",
              "| source | float | int8 (host) | int8 (board) | board drop | check |",
              "|---|---|---|---|---|---|"]
    results = {c["name"]: c["passed"] for c in report.get("checks", [])}
    for s in sources:
        result = {True: "pass", False: "**FAIL**", None: "skipped"}[
            results.get(f"sdr_drop_{s}")]
        lines.append(
            f"| {s} | " + " | ".join(sdr_cell(summary["scores"][v][s]["sdr"]) for v in VARIANTS)
            + f" | {sdr_cell(summary['drop']['int8_board'][s], 3)} | {result} |")
    tensor = report.get("tensor_check") or {}
    link = summary["link"]
    short = "/".join(s[:3] for s in sources)
    lines += [
        "",
        "## Board",
        "",
        f"- board vs host int8: largest difference {_fmt(summary['lsb']['max_abs'])} LSB, "
        f"{summary['lsb']['differing_samples']} of {summary['lsb']['samples']} samples differ; "
        "SDR board - host "
        + ", ".join(f"{s} {_fmt(summary['board_vs_host_sdr'][s], 3)} dB" for s in sources),
        f"- bit-exact expected: {'yes' if board.get('exact_expected') else 'no'} "
        f"({exact_reason(board)})",
        "- tensor mode: " + (
            f"skipped ({tensor.get('reason')})" if tensor.get("skipped") else
            f"{tensor.get('invokes', 0)} invokes, largest raw int8 difference "
            f"{_fmt(tensor.get('max_abs_diff'))} LSB"),
        "- board limits: " + (", ".join(
            f"{k} {v if not isinstance(v, list) else '/'.join(v) or 'none'}"
            for k, v in (board.get("limits") or {}).items()) or "unknown")
        + (f"; {report['settings']['chunk_note']}" if report["settings"].get("chunk_note")
           else ""),
        f"- invoke time per model run: p50 {_fmt(summary['invoke_us']['p50'], 1)} us, "
        f"p99 {_fmt(summary['invoke_us']['p99'], 1)} us",
        f"- streaming: {_fmt(summary['realtime_factor'])}x real time, "
        f"{_fmt((summary['wire_bytes_per_second'] or 0) / 1000.0, 1)} kB/s on the wire "
        f"(both directions), chunk {report['settings']['chunk_samples']} samples",
        f"- link: {link['resends']} frames resent, {link['timeouts']} timeouts, "
        f"{link['naks_sent'] + link['naks_received']} NAKs, {link['duplicates']} duplicates, "
        f"{link['decode_errors']} damaged frames, {summary['recoveries']} recoveries "
        f"(board restarts / stalls"
        + "".join(f"; {n} during {what}" for what, n in
                  summary.get("recoveries_by_request", {}).items()) + ")",
        "",
        "## Clips",
        "",
        f"| clip | s | float SDR {short} | board SDR {short} | drop {short} | max LSB | x RT "
        f"| board vs float SNR {short} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for clip in report["clips"]:
        if clip.get("status") != "ok":
            lines.append(f"| {clip['name']} | - | failed: {clip.get('error', '')} | | | | | |")
            continue
        f = clip["scores"]["float"]
        b = clip["scores"]["int8_board"]
        d = clip["drop"]["int8_board"]
        lsb = max(s["max_abs"] for s in clip["lsb"].values())
        snr = (clip.get("vs_float_snr") or {}).get("int8_board", {})
        snr_cell = "/".join(_fmt(snr.get(s)) for s in sources)
        if clip.get("silent"):
            lines.append(f"| {clip['name']} | {clip['seconds']:.1f} | silent: not scored "
                         f"| | | {lsb} | | {snr_cell} |")
            continue
        if not is_referenced(clip):
            lines.append(f"| {clip['name']} | {clip['seconds']:.1f} | {NOT_SCORED} | "
                         f"{NOT_SCORED} | {NOT_SCORED} | {lsb} | "
                         f"{_fmt(clip['stream']['realtime_factor'])} | {snr_cell} |")
            continue
        lines.append(
            f"| {clip['name']} | {clip['seconds']:.1f} | "
            + "/".join(_fmt(f[s]["sdr"]) for s in sources)
            + " | "
            + "/".join(_fmt(b[s]["sdr"]) for s in sources)
            + " | "
            + "/".join(_fmt(d[s], 3) for s in sources)
            + f" | {lsb} | {_fmt(clip['stream']['realtime_factor'])} | {snr_cell} |"
        )
    converted = [c for c in report["clips"] if (c.get("input") or {}).get("converted")]
    if converted:
        lines += ["", "## Converted inputs", ""]
        for clip in converted:
            lines.append(f"- {clip['name']}: " + ", ".join(clip["input"]["converted"]))
    saved = (report.get("data") or {}).get("save_audio")
    if saved:
        lines += ["", "## Audio", "",
                  f"Every clip's audio is in {saved}/CLIP/: mixture.wav (the int16 samples "
                  "the board got), reference/ (when the clip has references), float/, "
                  "int8-host/ and board/, one wav per source."]
        for clip in report["clips"]:
            if clip.get("audio_error"):
                lines.append(f"- {clip['name']}: not saved ({clip['audio_error']})")
    if report.get("plots"):
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"


def _data_kind(report: dict) -> str:
    """``[split]`` for a dataset, what the mixture files held for mixture files."""
    data = report.get("data") or {}
    if data.get("dataset") != FILES:
        return f"[{data.get('split')}]"
    missing = len(report["summary"].get("unreferenced_clips", []))
    return (f"(mixture files, {missing} without references)" if missing
            else "(mixture files with references)")


def _provenance_text(report: dict) -> str:
    provenance = report.get("provenance") or {}
    if provenance.get("overridden"):
        return f"\n\n**WARNING: {provenance.get('note')}**\n"
    if provenance.get("match"):
        return " (the bundle's recorded source)"
    if provenance.get("note"):
        return f" ({provenance['note']})"
    return ""


def write_reports(report: dict, folder: str | Path) -> dict:
    """Finalize and write hil.json, hil.junit.xml and hil.md into ``folder``; returns paths."""
    folder = Path(folder)
    finalize(report)
    paths = {
        "json": folder / JSON_NAME,
        "junit": folder / JUNIT_NAME,
        "markdown": folder / MARKDOWN_NAME,
    }
    write_text_atomic(paths["json"], json.dumps(report, indent=1, allow_nan=False) + "\n")
    write_text_atomic(paths["junit"], junit_xml(report))
    write_text_atomic(paths["markdown"], markdown(report))
    return paths
