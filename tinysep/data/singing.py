"""Recorded-voice singing: Festival's diphone and HTS voices re-pitched onto a melody.

Festival speaks a bank of lyric-like syllables per voice (diphones cut from real speakers);
the WORLD vocoder (pyworld) splits each into pitch, spectral envelope and aperiodicity. A
song's syllables are then laid on its sung notes: the consonant frames keep their length,
the vowel frames are stretched over the note (and its melisma), the pitch follows the melody
with portamento and vibrato, and the envelope is warped per singer (vocal tract length) so
a few speakers give several singers and ranges.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tinysep.data.audio_io import read_mono
from tinysep.data.score import SungNote

FESTIVAL_VOICE_ROOT = Path("/usr/share/festival/voices")
# Words the English and Italian voices speak, one syllable each.
WORD_SYLLABLES = ("la", "na", "oh", "day", "me", "so", "love", "you", "sky", "light", "go",
                  "home", "fly", "night", "dream", "see", "high", "low", "more", "time", "way",
                  "rain", "sun", "stay", "heart", "blue", "sea", "fire", "mine", "away", "star",
                  "ride")
# Consonant-vowel syllables every letter-to-sound rule reads alike: the voices of other
# languages speak these rather than English words.
OPEN_SYLLABLES = ("la", "na", "ma", "da", "sa", "ta", "ra", "va", "ka", "pa", "lo", "no", "mo",
                  "do", "so", "to", "ro", "vo", "li", "ni", "mi", "di", "le", "ne", "me", "de",
                  "lu", "nu", "mu", "du", "ja", "jo")


class VoiceError(RuntimeError):
    """A Festival voice that speaks no usable syllable (the songs it sings are skipped)."""


@dataclass(frozen=True)
class FestivalVoice:
    """One installed Festival voice: how to select it, where it lives, its natural range."""

    function: str  # the Scheme function that selects the voice
    package: str  # the Debian package that installs it
    folder: str  # below FESTIVAL_VOICE_ROOT
    low: int  # lowest MIDI note of its natural range
    syllables: tuple[str, ...]


VOICES: dict[str, FestivalVoice] = {
    "kal": FestivalVoice("voice_kal_diphone", "festvox-kallpc16k", "english/kal_diphone", 45,
                         WORD_SYLLABLES),
    "ked": FestivalVoice("voice_ked_diphone", "festvox-kdlpc16k", "english/ked_diphone", 45,
                         WORD_SYLLABLES),
    "slt": FestivalVoice("voice_cmu_us_slt_arctic_hts", "festvox-us-slt-hts",
                         "us/cmu_us_slt_arctic_hts", 55, WORD_SYLLABLES),
    "lp": FestivalVoice("voice_lp_diphone", "festvox-italp16k", "italian/lp_diphone", 55,
                        WORD_SYLLABLES),
    "pc": FestivalVoice("voice_pc_diphone", "festvox-itapc16k", "italian/pc_diphone", 45,
                        WORD_SYLLABLES),
    # Czech (adult woman, boy, two men), Russian man, Finnish woman, Catalan woman. (The
    # Finnish man's diphones re-pitch off key: WORLD misreads his creaky voice.)
    "dita": FestivalVoice("voice_czech_dita", "festvox-czech-dita", "czech/czech_dita", 55,
                          OPEN_SYLLABLES),
    "krb": FestivalVoice("voice_czech_krb", "festvox-czech-krb", "czech/czech_krb", 58,
                         OPEN_SYLLABLES),
    "machac": FestivalVoice("voice_czech_machac", "festvox-czech-machac",
                            "czech/czech_machac", 45, OPEN_SYLLABLES),
    "ph": FestivalVoice("voice_czech_ph", "festvox-czech-ph", "czech/czech_ph", 45,
                        OPEN_SYLLABLES),
    "nsh": FestivalVoice("voice_msu_ru_nsh_clunits", "festvox-ru",
                         "russian/msu_ru_nsh_clunits", 45, OPEN_SYLLABLES),
    "lj": FestivalVoice("voice_suo_fi_lj_diphone", "festvox-suopuhe-lj",
                        "finnish/suo_fi_lj_diphone", 55, OPEN_SYLLABLES),
    "ona": FestivalVoice("voice_upc_ca_ona_hts", "festvox-ca-ona-hts", "catalan/upc_ca_ona_hts",
                         55, OPEN_SYLLABLES),
}
# The voices a corpus sings with unless it names others. The later voices join by name, so
# corpora written before they existed keep their bytes.
DEFAULT_VOICES = ("kal", "ked", "lp", "pc", "slt")
FRAME_MS = 5.0
RELEASE_FRAMES = 8  # a sung syllable fades over its last 40 ms
FESTIVAL_TIMEOUT = 120.0


@dataclass(frozen=True)
class Syllable:
    """WORLD parameters of one spoken syllable; frames ``onset:`` are the voiced nucleus."""

    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray
    onset: int


@dataclass(frozen=True)
class VoiceSinger:
    """A singer made from a Festival voice: range and vocal tract warp."""

    name: str
    voice: str
    low: int
    high: int
    warp: float  # > 1 shorter tract (brighter), < 1 longer
    vibrato_cents: float
    vibrato_hz: float
    glide: float  # seconds

    @property
    def vocal_range(self) -> tuple[int, int]:
        return self.low, self.high


def installed_voices() -> list[str]:
    """Voices of `VOICES` whose Festival files are installed."""
    return [v for v in sorted(VOICES) if (FESTIVAL_VOICE_ROOT / VOICES[v].folder).is_dir()]


def missing_tools(voices: tuple[str, ...] = DEFAULT_VOICES) -> str | None:
    """What the festival engine lacks to sing with ``voices``, or None when it can run."""
    if shutil.which("festival") is None:
        return "the festival program (Debian package festival)"
    absent = [v for v in voices if v not in installed_voices()]
    if absent:
        return (f"the Festival voice(s) {', '.join(absent)} (Debian package(s) "
                f"{', '.join(VOICES[v].package for v in absent)})")
    try:
        import pyworld  # noqa: F401
    except ImportError:
        return "the WORLD vocoder's Python package pyworld (`make install`)"
    return None


def random_singer(rng: np.random.Generator, voices: list[str], index: int,
                  lows: dict[str, int] | None = None) -> VoiceSinger:
    """A singer on one of ``voices``: natural range (``lows``: lowest MIDI note per voice,
    default the Festival voices') shifted by up to +-4 semitones."""
    voice = voices[int(rng.integers(len(voices)))]
    low = lows[voice] if lows is not None else VOICES[voice].low
    base = low + int(rng.integers(-3, 5))
    warp = float(rng.uniform(0.9, 1.15))
    return VoiceSinger(name=f"{voice}{index % 10}", voice=voice, low=base,
                       high=base + int(rng.integers(14, 19)), warp=warp,
                       vibrato_cents=float(rng.uniform(15, 60)),
                       vibrato_hz=float(rng.uniform(4.5, 6.5)),
                       glide=float(rng.uniform(0.02, 0.06)))


@lru_cache(maxsize=8)
def syllable_bank(voice: str, sample_rate: int) -> tuple[Syllable, ...]:
    """Festival speaks each of the voice's syllables once per process; WORLD analyses them."""
    import pyworld

    function = VOICES[voice].function
    syllables = VOICES[voice].syllables
    with tempfile.TemporaryDirectory(prefix="tinysep-festival-") as tmp:
        lines = [f"({function})"]
        for i, text in enumerate(syllables):
            lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) '
                         f'"{tmp}/s{i:02d}.wav" \'riff)')
        script = Path(tmp) / "bank.scm"
        script.write_text("\n".join(lines) + "\n")
        try:
            done = subprocess.run(["festival", "-b", str(script)], capture_output=True,
                                  text=True, timeout=FESTIVAL_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VoiceError(f"festival voice {voice}: could not run festival ({exc})") from exc
        bank = []
        for i in range(len(syllables)):
            path = Path(tmp) / f"s{i:02d}.wav"
            if not path.is_file():
                raise VoiceError(f"festival voice {voice} wrote no audio for "
                                 f"{syllables[i]!r}: {done.stderr.strip()[-300:]}")
            x = read_mono(path, sample_rate).astype(np.float64)
            loud = np.flatnonzero(np.abs(x) > 0.02 * np.max(np.abs(x)))
            x = x[loud[0]:loud[-1] + 1] if loud.size else x
            f0, t = pyworld.dio(x, sample_rate, frame_period=FRAME_MS, f0_floor=60, f0_ceil=500)
            f0 = pyworld.stonemask(x, f0, t, sample_rate)
            sp = pyworld.cheaptrick(x, f0, t, sample_rate)
            ap = pyworld.d4c(x, f0, t, sample_rate)
            voiced = np.flatnonzero(f0 > 0)
            if voiced.size < 4:
                continue
            lo, hi = voiced[0], voiced[-1] + 1
            bank.append(Syllable(f0[:hi], sp[:hi], ap[:hi], int(lo)))
    if not bank:
        raise VoiceError(f"festival voice {voice}: no voiced syllable")
    return tuple(bank)


@lru_cache(maxsize=64)
def warped_bank(voice: str, sample_rate: int, warp: float) -> tuple[Syllable, ...]:
    """The syllable bank of ``voice`` with every envelope warped for one singer."""
    return tuple(Syllable(s.f0, _warp_envelope(s.sp, warp), s.ap, s.onset)
                 for s in syllable_bank(voice, sample_rate))


def _warp_envelope(sp: np.ndarray, warp: float) -> np.ndarray:
    """Scale the spectral envelope's frequency axis by ``warp`` (formants move with it)."""
    bins = np.arange(sp.shape[1], dtype=np.float64)
    source = np.clip(bins / warp, 0, sp.shape[1] - 1)
    lo = np.floor(source).astype(int)
    hi = np.minimum(lo + 1, sp.shape[1] - 1)
    frac = source - lo
    return sp[:, lo] * (1 - frac) + sp[:, hi] * frac


def syllable_groups(melody: list[SungNote]) -> list[list[SungNote]]:
    """Each sung syllable with the melisma notes that follow it."""
    groups: list[list[SungNote]] = []
    for note in melody:
        if note.syllable_start or not groups:
            groups.append([note])
        else:
            groups[-1].append(note)
    return groups


def note_frames(group: list[SungNote], target: np.ndarray, gain: np.ndarray, hop: float,
                first: int, stop: int) -> None:
    """Write one syllable's notes into the per-frame MIDI pitch ``target`` and ``gain``
    (velocity), with a release fade over the last frames before ``stop``."""
    for note in group:
        s = int(round(note.start / hop))
        e = min(len(target), int(round((note.start + note.duration) / hop)))
        target[s:e] = note.pitch
        gain[s:e] = note.velocity
    fade = min(RELEASE_FRAMES, stop - first)
    gain[stop - fade:stop] *= np.linspace(1.0, 0.2, fade)


def sung_pitch_hz(target: np.ndarray, singer: VoiceSinger, hop: float,
                  rng: np.random.Generator) -> np.ndarray:
    """The sung pitch per frame, Hz, from the notes' MIDI pitch per frame (0 between notes):
    portamento between notes (one-pole glide), vibrato and a slight drift."""
    n_frames = len(target)
    held = target.astype(np.float64)
    last = 0.0
    for i in range(n_frames):
        if held[i] > 0:
            last = held[i]
        else:
            held[i] = last
    alpha = 1 - np.exp(-hop / singer.glide)
    smooth = np.empty(n_frames)
    value = held[np.flatnonzero(held > 0)[0]] if np.any(held > 0) else 60.0
    for i in range(n_frames):
        value += alpha * (held[i] - value)
        smooth[i] = value
    t = np.arange(n_frames) * hop
    vibrato = singer.vibrato_cents / 100 * np.sin(2 * np.pi * singer.vibrato_hz * t
                                                  + rng.uniform(0, 2 * np.pi))
    pitch = smooth + vibrato * 0.8 + rng.uniform(-0.1, 0.1)
    return 440.0 * 2 ** ((pitch - 69) / 12)


def render_singing(melody: list[SungNote], singer: VoiceSinger, n_samples: int,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The sung vocal track of ``melody``: float32, ``n_samples`` long."""
    import pyworld

    bank = warped_bank(singer.voice, sample_rate, round(singer.warp, 4))
    hop = FRAME_MS / 1000.0
    n_frames = int(np.ceil(n_samples / sample_rate / hop)) + 1
    n_bins = bank[0].sp.shape[1]
    f0 = np.zeros(n_frames)
    sp = np.full((n_frames, n_bins), 1e-12)
    ap = np.ones((n_frames, n_bins))
    groups = syllable_groups(melody)
    target = np.zeros(n_frames)
    gain = np.ones(n_frames)  # note dynamics: velocity, and a short release at the end
    active = np.zeros(n_frames, dtype=bool)  # frames with sound (the rest is not synthesized)
    for group in groups:
        syl = bank[int(rng.integers(len(bank)))]
        start = group[0].start
        end = group[-1].start + group[-1].duration
        first = int(round(start / hop))
        lead = syl.onset
        a = max(0, first - lead)
        b = min(n_frames, int(round(end / hop)))
        if b - first < 2:
            continue
        # consonant frames before the note, unstretched
        sp[a:first] = syl.sp[lead - (first - a):lead]
        ap[a:first] = syl.ap[lead - (first - a):lead]
        nucleus = np.arange(syl.onset, len(syl.f0))
        pos = np.linspace(0, len(nucleus) - 1, b - first)
        idx = nucleus[np.round(pos).astype(int)]
        sp[first:b] = syl.sp[idx]
        ap[first:b] = syl.ap[idx]
        active[a:b] = True
        f0[first:b] = 1.0
        note_frames(group, target, gain, hop, first, b)
    f0 = np.where(f0 > 0, sung_pitch_hz(target, singer, hop, rng), 0.0)
    sp *= (gain ** 2)[:, None]
    out = np.zeros(n_samples, dtype=np.float32)
    per_frame = int(round(hop * sample_rate))
    # synthesize each stretch of sound on its own (with a little silence either side)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        a, b = max(0, start - 4), min(n_frames, stop + 4)
        y = pyworld.synthesize(f0[a:b], np.ascontiguousarray(sp[a:b]),
                               np.ascontiguousarray(ap[a:b]), sample_rate, FRAME_MS)
        offset = a * per_frame
        m = min(n_samples - offset, len(y))
        if m > 0:
            out[offset:offset + m] += y[:m]
    return out
