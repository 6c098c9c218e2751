"""HIL figures: waveforms and spectrograms of mixture / float / board output for a clip, and
per-clip SDR bars for float, int8 on the host and int8 on the board (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinysep.data.clip import SOURCES

from .report import VARIANT_LABELS, VARIANTS

SPECTROGRAM_FLOOR_DB = -90.0
SPECTROGRAM_UNIT = "dB (20 log10 |STFT|)"


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height))


def _spectrogram_db(audio: np.ndarray) -> np.ndarray:
    from tinysep.dsp import stft

    magnitude = np.abs(stft(np.asarray(audio, np.float32)))
    return 20.0 * np.log10(np.maximum(magnitude, 10 ** (SPECTROGRAM_FLOOR_DB / 20.0)))


def plot_clip(
    name: str, mixture: np.ndarray, rows: dict, sample_rate: int, path: str | Path
) -> Path:
    """Mixture, then each ``rows`` entry (label -> audio): waveform left, spectrogram right."""
    from tinysep.dsp import HOP_SAMPLES

    path = Path(path)
    signals = [("mixture", mixture)] + list(rows.items())
    plt, fig = _figure(12.0, 2.0 * len(signals))
    axes = fig.subplots(len(signals), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 1.4]})
    seconds = np.arange(len(mixture)) / sample_rate
    for row, (label, audio) in enumerate(signals):
        wave, spec = axes[row]
        wave.plot(seconds, audio, linewidth=0.4)
        wave.set_ylim(-1.0, 1.0)
        wave.set_ylabel(label, fontsize=8)
        db = _spectrogram_db(audio)
        extent = (0.0, db.shape[0] * HOP_SAMPLES / sample_rate, 0.0, sample_rate / 2000.0)
        image = spec.imshow(
            db.T,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="magma",
            vmin=SPECTROGRAM_FLOOR_DB,
            vmax=0.0,
        )
        spec.set_ylabel("kHz", fontsize=8)
        bar = fig.colorbar(image, ax=spec, pad=0.01)
        bar.set_label(SPECTROGRAM_UNIT, fontsize=7)
        bar.ax.tick_params(labelsize=6)
        for axis in (wave, spec):
            axis.tick_params(labelsize=7)
    axes[-1][0].set_xlabel("time (s)")
    axes[-1][1].set_xlabel("time (s)")
    fig.suptitle(f"{name}: waveforms and spectrograms (float on the host vs int8 on the board)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_sdr_bars(clips: list, path: str | Path, sources=SOURCES) -> Path | None:
    """Per-clip SDR per source (one panel per stem, ``sources`` in manifest order), bars for
    each variant; None when no clip finished."""
    done = [c for c in clips if c.get("status") == "ok"]
    if not done:
        return None
    path = Path(path)
    sources = list(sources)
    plt, fig = _figure(max(6.0, 0.5 * len(done) + 3.0), 3.2 * len(sources))
    axes = fig.subplots(len(sources), 1, squeeze=False)[:, 0]
    x = np.arange(len(done))
    width = 0.8 / len(VARIANTS)
    for axis, source in zip(axes, sources, strict=True):
        for number, variant in enumerate(VARIANTS):
            values = [c["scores"][variant][source]["sdr"] for c in done]
            values = [np.nan if v is None else v for v in values]
            axis.bar(x + (number - 1) * width, values, width, label=VARIANT_LABELS[variant])
        axis.set_ylabel(f"{source} SDR (dB)")
        axis.axhline(0.0, color="black", linewidth=0.5)
        axis.set_xticks(x)
        axis.set_xticklabels([c["name"] for c in done], rotation=60, ha="right", fontsize=7)
    axes[0].legend(fontsize=8)
    fig.suptitle("SDR per clip: float vs int8 on the host vs int8 on the board")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
