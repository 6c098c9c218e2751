"""Representative datasets for full-integer calibration, drawn from real training audio.

A streaming model's inputs are one chunk of features *and* its state tensors. Calibrating
the states on zeros or noise would give them ranges they never see, so the float
streaming model is run over real clips, invoke by invoke, and the inputs of every invoke
(features plus the states the float model actually carried) are recorded. Each segment
is run from the start of its clip, so the states are warmed up exactly as on a board
that starts from silence; only the last ``segment_frames`` frames are recorded.

Coverage is reported per recorded frame by the level of its analysis window (512 samples,
1024 for the long framing; RMS in dBFS, 0 dBFS = RMS of 1.0): ``silent`` below -60 dBFS,
``quiet`` below -30 dBFS, ``loud`` otherwise. Training audio is loud, so ``gains_db``
replays segments at lower levels in turn. The default is 64 segments of 128 frames at
``(0, -30)``: 64 clips of a corpus with many music engines. The levels came out best in the
calibration-level study (convert/calibration_study.py) of the first shipped model: as good
as loud frames alone at normal playback, better at -30 dB playback. The size matters once
the training corpus holds many engines: on 40 held-out choir clips the multi-engine model
lost 0.21 / 0.39 dB (vocals / accompaniment) to int8 with 16 segments (16 clips), 0.05 /
0.02 dB with 64.
Silent frames are not recorded on purpose: the output is the mask
times the mixture, so silence comes out silent whatever the mask, and zero states (the
start) are exact in int8. Measured: clips with 1.5 s silent gaps lost no more to int8 than
clips without, and adding -100 dB (silent) replays made every level worse (wider ranges).
A warning is raised only for a missing loud or quiet level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinysep.data.clip import Clip
from tinysep.dsp import DEFAULT_FRAMING, SAMPLE_RATE, Framing, get_framing
from tinysep.progress import Progress

SILENT_BELOW_DBFS = -60.0
QUIET_BELOW_DBFS = -30.0
DEFAULT_SEGMENT_FRAMES = 128
DEFAULT_FRAMES = 64 * DEFAULT_SEGMENT_FRAMES  # 64 segments, so up to 64 clips
DEFAULT_GAINS_DB = (0.0, -30.0)  # loud and quiet playback, in turn
GAIN_LIMITS_DB = (-120.0, 40.0)  # calibration gains outside this make silence or overflow
LEVELS = ("silent", "quiet", "loud")


@dataclass
class RepresentativeSet:
    """Recorded streaming inputs: ``samples[i]`` maps every input name of the streaming
    model (``features`` and each state) to the array it received at invoke ``i``."""

    frames_per_invoke: int
    samples: list[dict[str, np.ndarray]]
    segments: list[dict] = field(default_factory=list)
    coverage: dict = field(default_factory=dict)
    features: list[np.ndarray] = field(default_factory=list)  # per segment, from frame 0

    @property
    def frames(self) -> int:
        return len(self.samples) * self.frames_per_invoke

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.samples)

    def subset(self, frames: int, seed: int = 0) -> RepresentativeSet:
        """A smaller set of about ``frames`` frames (whole invokes drawn without
        replacement), for calibration-size studies."""
        count = max(1, min(len(self.samples), -(-int(frames) // self.frames_per_invoke)))
        order = np.random.default_rng(seed).permutation(len(self.samples))[:count]
        return RepresentativeSet(
            self.frames_per_invoke,
            [self.samples[i] for i in sorted(order)],
            self.segments,
            {**self.coverage, "subset_frames": count * self.frames_per_invoke},
            self.features,
        )

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "invokes": len(self.samples),
            "frames_per_invoke": self.frames_per_invoke,
            "segments": len(self.segments),
            "clips": sorted({s["clip"] for s in self.segments}),
            "coverage": self.coverage,
        }


def check_calibration_clips(clips: Sequence[Clip], where: str = "calibration set") -> None:
    """Raise ValueError for an empty set, a wrong sample rate or an empty / non-mono clip."""
    if len(clips) == 0:
        raise ValueError(f"{where} is empty: int8 calibration needs at least one clip")
    for clip in clips:
        if clip.sample_rate != SAMPLE_RATE:
            raise ValueError(
                f"{where}: clip {clip.name!r} is at {clip.sample_rate} Hz, expected "
                f"{SAMPLE_RATE} Hz (the model's STFT runs at {SAMPLE_RATE} Hz)"
            )
        mixture = np.asarray(clip.mixture)
        if mixture.ndim != 1 or mixture.size == 0:
            raise ValueError(
                f"{where}: clip {clip.name!r} has no mono audio (shape {mixture.shape})"
            )


def load_calibration_clips(
    root: str | Path,
    split: str = "train",
    max_clips: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[Clip]:
    """Clips of ``split`` under a dataset ``root`` (any layout ``tinysep eval`` reads); with
    ``max_clips`` only that many, drawn in a seeded random order (only they are read)."""
    from tinysep.data.loaders import find_clips, load_clips

    sources = find_clips(root, split=split)
    if not sources:
        raise ValueError(f"calibration data {root}: the {split!r} split holds no clips")
    if max_clips is not None:
        order = np.random.default_rng(seed).permutation(len(sources))[:max(1, max_clips)]
        sources = [sources[i] for i in sorted(order)]
    clips = load_clips(sources, progress=progress)
    check_calibration_clips(clips, f"calibration data {root} [{split}]")
    return clips


def check_gains(gains_db: Sequence[float]) -> tuple[float, ...]:
    """``gains_db`` as a tuple of floats; ValueError for an empty set or a gain that is not a
    finite number."""
    try:
        gains = tuple(float(g) for g in gains_db)
    except (TypeError, ValueError):
        raise ValueError(f"calibration gains must be numbers in dB, got {gains_db!r}") from None
    if not gains:
        raise ValueError("calibration gains are empty: give at least one level in dB, e.g. 0")
    low, high = GAIN_LIMITS_DB
    bad = [g for g in gains if not (np.isfinite(g) and low <= g <= high)]
    if bad:
        raise ValueError(f"calibration gains must be dB values from {low:g} to {high:g}, "
                         f"got {bad}")
    return gains


def format_gains(gains_db: Sequence[float]) -> str:
    """Gains as the command line writes them: ``(0.0, -30.0)`` -> ``"0,-30"``."""
    return ",".join(f"{float(g):g}" for g in gains_db)


def parse_gains(text: str) -> tuple[float, ...]:
    """Calibration gains from the command line: comma-separated dB, e.g. ``"0,-30"``."""
    try:
        gains = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"calibration gains: expected comma-separated dB values such as "
                         f"'0,-30', got {text!r}") from None
    return check_gains(gains)


def segments_needed(frames: int, segment_frames: int = DEFAULT_SEGMENT_FRAMES) -> int:
    """Segments (so at most distinct clips) a set of ``frames`` frames draws."""
    return -(-int(frames) // int(segment_frames))


def frame_levels_dbfs(audio: np.ndarray, framing: str | Framing = DEFAULT_FRAMING) -> np.ndarray:
    """RMS level (dBFS) of every causal STFT frame's analysis window (``n_fft`` samples of
    ``framing``)."""
    from tinysep.dsp import frame_count

    framing = get_framing(framing)
    n_fft, hop = framing.n_fft, framing.hop
    x = np.asarray(audio, np.float64)
    n = frame_count(len(x), framing=framing)
    padded = np.zeros((n - 1) * hop + n_fft)
    padded[n_fft - hop : n_fft - hop + len(x)] = x
    energy = np.convolve(padded**2, np.ones(n_fft), mode="valid")[::hop][:n]
    return 10.0 * np.log10(np.maximum(energy / n_fft, 1e-20))


def classify_levels(levels_dbfs: np.ndarray) -> dict[str, int]:
    levels = np.asarray(levels_dbfs)
    silent = int(np.sum(levels < SILENT_BELOW_DBFS))
    quiet = int(np.sum((levels >= SILENT_BELOW_DBFS) & (levels < QUIET_BELOW_DBFS)))
    return {"silent": silent, "quiet": quiet, "loud": int(levels.size - silent - quiet)}


def coverage_warnings(counts: dict[str, int], gains_db: Sequence[float] = ()) -> list[str]:
    """Warnings for the playback levels a board meets that the set holds no frame of: loud
    and quiet. Silence needs no frames of its own (see the module docstring)."""
    warnings = []
    if counts.get("loud", 0) == 0:
        warnings.append(f"no loud frames (>= {QUIET_BELOW_DBFS:g} dBFS) in the calibration "
                        "set: it is too quiet for normal playback")
    if counts.get("quiet", 0) == 0:
        used = f"gains {format_gains(gains_db)} dB" if gains_db else "these gains"
        warnings.append(f"no quiet frames ({SILENT_BELOW_DBFS:g} to {QUIET_BELOW_DBFS:g} "
                        f"dBFS) in the calibration set with {used}: quiet playback is not "
                        "calibrated (replay segments lower, e.g. gains 0,-30, with at least "
                        "one segment per gain)")
    return warnings


class FloatStream:
    """The float streaming model as a float32 TFLite model on the LiteRT interpreter.

    Same graph and weights as the Keras stream (BatchNorm folded, float32 throughout), but
    ~100x faster per invoke than calling Keras, which pays TensorFlow's per-op overhead on
    hundreds of tiny ops: recording thousands of invokes takes seconds, not minutes.
    """

    def __init__(self, stream):
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        from tinysep.models.streaming import serving_function, streaming_spec
        from tinysep.quiet import quiet_runtime

        self.spec = streaming_spec(stream)
        function, holder = serving_function(stream)
        with quiet_runtime():  # no converter / XNNPACK lines
            content = tf.lite.TFLiteConverter.from_concrete_functions([function],
                                                                      holder).convert()
            self.interpreter = Interpreter(model_content=content, num_threads=1)
            self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner()
        ins, outs = runner.get_input_details(), runner.get_output_details()
        self.input_index = ins[self.spec.input["name"]]["index"]
        self.masks_index = outs[self.spec.output["name"]]["index"]
        self.state_index = [(s.input, ins[s.input]["index"], outs[s.output]["index"])
                            for s in self.spec.states]

    def iterate(self, features: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        """Yield the inputs (features chunk + states) of every invoke over ``features``
        ``(T, bins)`` from zero states; the tail is zero-padded to a whole invoke."""
        k = self.spec.frames_per_invoke
        features = np.asarray(features, np.float32)
        padded = np.zeros((-(-len(features) // k) * k, features.shape[1]), np.float32)
        padded[: len(features)] = features
        states = self.spec.zero_states()
        name = self.spec.input["name"]
        for start in range(0, len(padded), k):
            inputs = {name: padded[None, start : start + k], **states}
            self.interpreter.set_tensor(self.input_index, inputs[name])
            for state, index, _ in self.state_index:
                self.interpreter.set_tensor(index, states[state])
            self.interpreter.invoke()
            states = {state: self.interpreter.get_tensor(out).copy()
                      for state, _, out in self.state_index}
            yield inputs

    def masks(self, features: np.ndarray) -> np.ndarray:
        """Masks ``(T, bins, S)`` of the float stream (for checks)."""
        out = []
        for _ in self.iterate(features):
            out.append(self.interpreter.get_tensor(self.masks_index)[0].copy())
        return np.concatenate(out, axis=0)[: len(features)]


def build_representative_set(
    stream,
    clips: Sequence[Clip],
    frames: int = DEFAULT_FRAMES,
    *,
    segment_frames: int = DEFAULT_SEGMENT_FRAMES,
    gains_db: Sequence[float] = DEFAULT_GAINS_DB,
    seed: int = 0,
    progress: bool = True,
) -> RepresentativeSet:
    """Record about ``frames`` frames of real streaming inputs (features + states).

    ``stream`` is a model from :func:`tinysep.models.make_streaming_model` with
    ``input="features"``. Segments of ``segment_frames`` frames are drawn from the clips in
    a seeded random order (every clip before any repeats), each at a random offset and at
    the next gain of ``gains_db`` in turn (a set too small for one segment per gain gets
    shorter segments); the float stream runs from the clip start so the recorded states are
    the warmed-up ones.
    """
    from tinysep.dsp import magnitude, stft
    from tinysep.models import compress_magnitude, resolved_params, stream_features
    from tinysep.models.streaming import streaming_spec

    spec = streaming_spec(stream)
    if spec.input["name"] != "features":
        raise ValueError(
            "calibrate the board's form of the model: make_streaming_model(..., "
            f"input='features'), got input={spec.input['name']!r}"
        )
    check_calibration_clips(clips)
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"calibration frames must be a positive integer, got {frames!r}")
    if not isinstance(segment_frames, int) or segment_frames < 1:
        raise ValueError(f"segment_frames must be a positive integer, got {segment_frames!r}")
    gains = check_gains(gains_db)
    gain = float(resolved_params(stream.tinysep_config)["input_gain"])
    k = spec.frames_per_invoke
    segment_frames = -(-segment_frames // k) * k  # whole invokes
    n_segments = -(-frames // segment_frames)
    if n_segments < len(gains):  # a small set: shorter segments, so every gain gets one
        n_segments = min(len(gains), -(-frames // k))
        per_segment = -(-frames // n_segments)
        segment_frames = -(-per_segment // k) * k
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < n_segments:
        order += [int(i) for i in rng.permutation(len(clips))]

    runner = FloatStream(stream)
    samples: list[dict[str, np.ndarray]] = []
    segments, features_used = [], []
    counts = dict.fromkeys(LEVELS, 0)
    bar = Progress(n_segments * segment_frames, "calibration", unit="frame", enabled=progress)
    for number, clip_index in enumerate(order[:n_segments]):
        clip = clips[clip_index]
        gain_db = gains[number % len(gains)]
        audio = np.asarray(clip.mixture, np.float32) * np.float32(10 ** (gain_db / 20))
        spectrum = stft(audio, framing=spec.framing)
        total = spectrum.shape[0]
        want = min(segment_frames, frames - number * segment_frames)
        if want <= 0:
            break
        want = -(-want // k) * k
        start = int(rng.integers(0, max(1, total - want + 1))) // k * k
        stop = min(start + want, -(-total // k) * k)
        features = stream_features(stream, compress_magnitude(magnitude(spectrum[:stop]), gain))
        levels = frame_levels_dbfs(audio, spec.framing)[start:stop]
        for level, count in classify_levels(levels).items():
            counts[level] += count
        recorded = 0
        for invoke, inputs in enumerate(runner.iterate(features)):
            if invoke * k >= start:
                samples.append(inputs)
                recorded += k
        segments.append({"clip": clip.name, "start_frame": start, "frames": recorded,
                         "gain_db": gain_db})
        features_used.append(features)
        bar.update(recorded)
    bar.close()
    total_frames = max(1, sum(counts.values()))
    coverage = {
        "thresholds_dbfs": {"silent_below": SILENT_BELOW_DBFS, "quiet_below": QUIET_BELOW_DBFS},
        "gains_db": list(gains),
        "frames": counts,
        "fractions": {level: counts[level] / total_frames for level in LEVELS},
        "warnings": coverage_warnings(counts, gains),
    }
    return RepresentativeSet(k, samples, segments, coverage, features_used)


def format_coverage(rep: RepresentativeSet) -> str:
    """One line: frames, clips, gains, the loud / quiet / silent shares and any warning."""
    c = rep.coverage
    shares = ", ".join(
        f"{level} {c['frames'][level]} ({100 * c['fractions'][level]:.0f}%)" for level in LEVELS
    )
    clips = len({s["clip"] for s in rep.segments})
    gains = c.get("gains_db")
    at = f" at gains {format_gains(gains)} dB" if gains else ""
    line = f"calibration: {rep.frames} frames from {clips} clip(s){at}: {shares}"
    for warning in c.get("warnings", []):
        line += f"; warning: {warning}"
    return line
