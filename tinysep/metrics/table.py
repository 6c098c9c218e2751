"""Text tables of evaluation summaries, one block per source, laid out like paper 1's Tables 3-4."""

from __future__ import annotations

from collections.abc import Mapping

from tinysep.metrics.bss import METRIC_LIMIT_DB

# Paper 1 lists the accompaniment (Table 3) before the vocals (Table 4).
TABLE_SOURCES = ("accompaniment", "vocals")
_COLUMNS = (
    ("SDR mean", "sdr", "mean"),
    ("SDR med", "sdr", "median"),
    ("SIR mean", "sir", "mean"),
    ("SIR med", "sir", "median"),
    ("SAR mean", "sar", "mean"),
    ("SAR med", "sar", "median"),
    ("NSDR", "nsdr", "mean"),
    ("GNSDR", "gnsdr", None),
    ("SI-SDR", "si_sdr", "mean"),
)


def _cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"


def format_table(summaries: Mapping[str, Mapping], title: str = "") -> str:
    """One block per source: a row per method, SDR/SIR/SAR mean and median, NSDR, GNSDR.

    ``summaries`` maps method name -> :func:`tinysep.metrics.summarize` output (plus the
    optional ``failed`` count). Values are dB; "-" marks an undefined value.
    """
    name_width = max([len("Method")] + [len(m) for m in summaries]) + 2
    widths = [max(len(header), 7) for header, _, _ in _COLUMNS]
    lines = [title] if title else []
    for source in TABLE_SOURCES:
        header = f"{'Method':<{name_width}}" + "  ".join(
            f"{h:>{w}}" for (h, _, _), w in zip(_COLUMNS, widths, strict=True)
        ) + f"  {'clips':>5}"
        lines += ["", f"{source.capitalize()} (dB)", header, "-" * len(header)]
        notes = []
        for method, summary in summaries.items():
            block = summary["sources"][source]
            cells = []
            for (_, key, stat), w in zip(_COLUMNS, widths, strict=True):
                cells.append(_cell(block[key] if stat is None else block[key][stat], w))
            lines.append(f"{method:<{name_width}}" + "  ".join(cells)
                         + f"  {block['sdr']['n']:>5d}")
            skipped = block["skipped"]
            parts = [f"{count} {reason.replace('_', ' ')}" for reason, count in skipped.items()
                     if count]
            if summary.get("failed"):
                parts.append(f"{summary['failed']} failed")
            if parts:
                notes.append(f"  {method}: skipped {', '.join(parts)}")
        lines += notes
    at_limit = any(
        block[key][stat] is not None and block[key][stat] >= METRIC_LIMIT_DB - 1e-3
        for summary in summaries.values() for block in summary["sources"].values()
        for _, key, stat in _COLUMNS if stat is not None
    )
    if at_limit:
        lines += ["", f"{METRIC_LIMIT_DB:.2f} is the metric limit: a ratio whose denominator is "
                      "zero, e.g. the SAR of the mixture itself (no artifacts)."]
    return "\n".join(lines)
