"""Text tables of evaluation summaries, one block per source, laid out like Tables 3-4 of
"Real-time audio source separation in live music performances using edge AI technology"
(J. Yang). Summaries of other sources (the four stems) get one block per stem, the
MUSDB18 columns (BSS-eval v4, median over 1 s windows then over clips) when they were
scored framewise, and a closing SDR-per-stem table."""

from __future__ import annotations

from collections.abc import Mapping

from firmware_host.bundle.layout import MODEL_FILE
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
# The MUSDB18 / SiSEC convention: median over a clip's 1 s windows, then over clips.
_V4_COLUMNS = (
    ("SDR v4", "sdr_v4", "median"),
    ("SIR v4", "sir_v4", "median"),
    ("SAR v4", "sar_v4", "median"),
    ("ISR v4", "isr_v4", "median"),
)

# A source silent in a clip while others sound: its estimate's power against theirs.
_LEAK_COLUMNS = (
    ("Leak mean", "leak", "mean"),
    ("Leak med", "leak", "median"),
)


def table_sources(summaries: Mapping[str, Mapping]) -> list[str]:
    """The sources of the summaries in table order: accompaniment before vocals for the
    two default sources (as the paper's tables), otherwise as the summaries list them."""
    found = list(dict.fromkeys(s for summary in summaries.values() for s in summary["sources"]))
    return list(TABLE_SOURCES) if set(found) == set(TABLE_SOURCES) else found


def _columns(summaries: Mapping[str, Mapping]) -> tuple:
    framewise = any("sdr_v4" in block for summary in summaries.values()
                    for block in summary["sources"].values())
    leaks = any((block.get("leak") or {}).get("n") for summary in summaries.values()
                for block in summary["sources"].values())
    return _COLUMNS + (_V4_COLUMNS if framewise else ()) + (_LEAK_COLUMNS if leaks else ())


MODEL_PREFIX = "model:"
MODEL_FILES = (MODEL_FILE,)  # a bundle's model file: the bundle folder names the method


def _label_parts(method: str) -> list[str]:
    """The path components of a ``model:PATH`` method, the file name of a bundle's model
    dropped (``model:b/model.tflite`` is the bundle ``b``)."""
    parts = [p for p in method[len(MODEL_PREFIX):].replace("\\", "/").split("/") if p]
    if len(parts) > 1 and parts[-1] in MODEL_FILES:
        parts = parts[:-1]
    return parts or [method[len(MODEL_PREFIX):]]


def short_labels(methods) -> dict[str, str]:
    """Method -> short label for tables and figures: ``model:/long/path/run`` becomes
    ``model:run`` (as many trailing folders as it takes to tell the models apart); other
    method names stay as they are."""
    methods = list(methods)
    depth = {m: 1 for m in methods if m.startswith(MODEL_PREFIX)}

    def label(m: str) -> str:
        if m not in depth:
            return m
        return MODEL_PREFIX + "/".join(_label_parts(m)[-depth[m]:])

    for _ in range(64):  # each pass lengthens the labels that still collide
        labels = {m: label(m) for m in methods}
        clashes = [m for m in depth
                   if list(labels.values()).count(labels[m]) > 1
                   and depth[m] < len(_label_parts(m))]
        if not clashes:
            break
        for m in clashes:
            depth[m] += 1
    labels = {m: label(m) for m in methods}
    if len(set(labels.values())) < len(labels):  # still ambiguous: the full names
        return {m: m for m in methods}
    return labels


def _cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"


def format_table(summaries: Mapping[str, Mapping], title: str = "") -> str:
    """One block per source: a row per method, SDR/SIR/SAR mean and median, NSDR, GNSDR,
    and, where a source was silent in some clips, its leak there.

    ``summaries`` maps method name -> :func:`tinysep.metrics.summarize` output (plus the
    optional ``failed`` count). Values are dB; "-" marks an undefined value.
    """
    labels = short_labels(summaries)
    name_width = max([len("Method")] + [len(label) for label in labels.values()]) + 2
    columns = _columns(summaries)
    widths = [max(len(header), 7) for header, _, _ in columns]
    lines = [title] if title else []
    sources = table_sources(summaries)
    for source in sources:
        header = f"{'Method':<{name_width}}" + "  ".join(
            f"{h:>{w}}" for (h, _, _), w in zip(columns, widths, strict=True)
        ) + f"  {'clips':>5}"
        lines += ["", f"{source.capitalize()} (dB)", header, "-" * len(header)]
        notes = []
        for method, summary in summaries.items():
            block = summary["sources"].get(source)
            if block is None or (block["sdr"]["n"] == 0 and block["skipped"].get("not_estimated")):
                continue  # a reference method that does not estimate this source
            cells = []
            for (_, key, stat), w in zip(columns, widths, strict=True):
                value = block.get(key)
                cells.append(_cell(value if stat is None or value is None else value[stat], w))
            counted = max(block["sdr"]["n"], (block.get("leak") or {}).get("n", 0))
            lines.append(f"{labels[method]:<{name_width}}" + "  ".join(cells)
                         + f"  {counted:>5d}")
            skipped = block["skipped"]
            parts = [f"{count} {reason.replace('_', ' ')}" for reason, count in skipped.items()
                     if count]
            if summary.get("failed"):
                parts.append(f"{summary['failed']} failed")
            if parts:
                notes.append(f"  {labels[method]}: skipped {', '.join(parts)}")
        lines += notes
    if sources != list(TABLE_SOURCES):
        lines += ["", *_stem_table(summaries, sources, labels, name_width)]
    at_limit = any(
        block[key][stat] is not None and block[key][stat] >= METRIC_LIMIT_DB - 1e-3
        for summary in summaries.values() for block in summary["sources"].values()
        for _, key, stat in columns if stat is not None and key in block
    )
    shortened = [f"  {label} = {method}" for method, label in labels.items() if label != method]
    if shortened:
        lines += ["", "Methods:", *shortened]
    if at_limit:
        lines += ["", f"{METRIC_LIMIT_DB:.2f} is the metric limit: a ratio whose denominator is "
                      "zero, e.g. the SAR of the mixture itself (no artifacts)."]
    return "\n".join(lines)


def _stem_table(summaries: Mapping[str, Mapping], sources: list[str], labels: dict,
                name_width: int) -> list[str]:
    """SDR per stem, one row per method: whole-clip mean and, when scored framewise, the
    MUSDB18 figure (v4, median of the clips' window medians)."""
    framewise = _columns(summaries) != _COLUMNS
    width = max(9, *(len(s) + 3 for s in sources))
    kinds = [("sdr", "mean", "SDR (mean of whole-clip values)")]
    if framewise:
        kinds.append(("sdr_v4", "median", "SDR v4 (median over 1 s windows, then over clips)"))
    lines = []
    for key, stat, caption in kinds:
        header = f"{'Method':<{name_width}}" + "".join(f"{s:>{width}}" for s in sources)
        lines += [f"{caption}, dB", header, "-" * len(header)]
        for method, summary in summaries.items():
            cells = []
            for source in sources:
                block = summary["sources"].get(source, {})
                value = block.get(key)
                cells.append(_cell(None if value is None else value[stat], width))
            lines.append(f"{labels[method]:<{name_width}}" + "".join(cells))
        lines.append("")
    return lines[:-1]
