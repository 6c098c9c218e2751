"""Separation metrics: BSS-eval SDR/SIR/SAR, SI-SDR, NSDR/GNSDR, silence handling."""

from tinysep.metrics.bss import FILTER_LENGTH, METRIC_LIMIT_DB, bss_eval, si_sdr
from tinysep.metrics.plot import plot_summary
from tinysep.metrics.scores import (
    SILENT_ESTIMATE,
    SILENT_REFERENCE,
    VALUE_KEYS,
    score_estimates,
    score_mixture,
)
from tinysep.metrics.silence import (
    SILENT_ESTIMATE_DBFS,
    SILENT_REFERENCE_DBFS,
    is_silent,
    rms_dbfs,
)
from tinysep.metrics.summary import summarize
from tinysep.metrics.table import TABLE_SOURCES, format_table

__all__ = [
    "FILTER_LENGTH",
    "METRIC_LIMIT_DB",
    "SILENT_ESTIMATE",
    "SILENT_ESTIMATE_DBFS",
    "SILENT_REFERENCE",
    "SILENT_REFERENCE_DBFS",
    "TABLE_SOURCES",
    "VALUE_KEYS",
    "bss_eval",
    "format_table",
    "is_silent",
    "plot_summary",
    "rms_dbfs",
    "score_estimates",
    "score_mixture",
    "si_sdr",
    "summarize",
]
