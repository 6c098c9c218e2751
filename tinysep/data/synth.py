"""The synthetic music corpus: songs from several music engines, written in MIR-1K layout.

A song's score (key, tempo, form, parts, melody) comes from `score`; its vocal engine and its
accompaniment engine are drawn per song among the selected ones (`engines`: additive,
soundfont, physical, subtractive accompaniments or excerpts of recordings; additive, festival,
choir, espeak, flite, speech vocals),
then a randomized production (`production`: rooms, EQ, compression, saturation, band limits,
noise floors, vocal doubling and reverb) is applied. Everything is drawn from
``numpy.random.default_rng([seed, ...])`` so a song depends only on (seed, song number,
seconds, engines, fonts, voices, composers, and the files of the recordings' collections):
the same command writes the same bytes. The corpus is cut
into 4-10 s clips, each mixed at its own vocal-to-accompaniment ratio (uniform in [-5, +5]
dB).

Layout of a corpus folder:
- ``Wavfile/{singer}_{song}_{clip:02d}.wav``: 16 kHz 16-bit stereo, left accompaniment,
  right vocals (MIR-1K layout; what the loaders read);
- ``Stems/{clip}/{vocals,drums,bass,other}.wav``: 16 kHz 16-bit mono stems of the same clip
  at the same gains (drums + bass + other = the left channel, up to 16-bit rounding), for
  four-source work (written unless ``stems=False``);
- ``splits.json``: song-disjoint train/valid/test clip lists, the parameters, per song and
  per clip the engines (``engines``: vocals, accompaniment, font, the voice of a festival,
  espeak, flite or speech song, the named composer and a recorded song's collection), the songs
  skipped (a sound font that failed to load, a voice that spoke nothing usable, no audible
  excerpt of a collection, a song that rendered silent) and why.
The folder is written under a temporary name beside it and renamed when complete, so an
interrupted or failed run leaves no half-written corpus.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

import tinysep
from tinysep.data.audio_io import SAMPLE_RATE, write_audio
from tinysep.data.clip import Clip
from tinysep.data.engines import (
    DEFAULT_COMPOSERS,
    VOICE_ENGINES,
    SongPlan,
    check_engines,
    parse_composers,
    parse_engines,
    parse_fonts,
    parse_voices,
    plan_song,
    render_stems,
    singer_pool,  # noqa: F401  (re-exported: the additive singers)
    song_singer,
)
from tinysep.data.loaders import SPLITS_FILE, SYNTH_FORMAT, SYNTH_STEMS_DIR, WAV_DIR
from tinysep.data.production import produce
from tinysep.data.recordings import (
    RecordingError,
    check_apart_from,
    collection_fingerprint,
    parse_collections,
)
from tinysep.data.singing import DEFAULT_VOICES, VoiceError
from tinysep.data.soundfont import FontError
from tinysep.data.sources import ACCOMPANIMENT_STEMS, STEMS
from tinysep.folder_writes import (
    clean_abandoned_writes,
    first_names,
    make_parents,
    remove_made,
)
from tinysep.jsonfile import write_json_atomic
from tinysep.progress import Progress

GENERATOR_VERSION = 2
CLIP_SECONDS = (4.0, 10.0)
MAX_SONGS = 100_000  # far beyond any corpus; a larger count is a typing slip
MAX_SONG_SECONDS = 600.0  # a longer song is refused: every stem of it is held in memory at once
VAR_DB = (-5.0, 5.0)
SPLIT_FRACTIONS = {"train": 0.7, "valid": 0.1, "test": 0.2}
PEAK = 0.9  # written peak of max(|accompaniment|, |vocals|, |mixture|)
SILENT_RMS = 1e-5  # a song whose vocals or accompaniment stay below this is skipped
DEFAULT_ENGINES = ("additive",)  # the library default; the command line: the standard engines


@dataclass
class Song:
    """One rendered song: float32 sources at 16 kHz and a description of what plays."""

    song_id: str
    vocals: np.ndarray
    accompaniment: np.ndarray
    info: dict = field(default_factory=dict)


def song_id(seed: int, index: int) -> str:
    """``{singer}_{song}`` of an additive song, as MIR-1K names its songs."""
    return f"{song_singer(seed, index).name}_{index + 1:03d}"


def _additive_plan(seed: int, index: int) -> SongPlan:
    return SongPlan(index, "additive", "additive", None, song_singer(seed, index).name)


def render_song(seed: int, index: int, seconds: float, sample_rate: int = SAMPLE_RATE) -> Song:
    """Render song ``index`` of the additive corpus drawn with ``seed`` (dry, no production)."""
    plan = _additive_plan(seed, index)
    song = render_stems(seed, plan, seconds, sample_rate)
    return Song(plan.song_id, song.stems["vocals"], song.accompaniment, song.info)


def clip_bounds(n_samples: int, rng: np.random.Generator,
                sample_rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Cut a song into consecutive clips of 4-10 s (one shorter clip if the song is < 4 s)."""
    low, high = (int(s * sample_rate) for s in CLIP_SECONDS)
    bounds, start = [], 0
    while n_samples - start > high:
        length = int(rng.integers(low, min(high, n_samples - start - low) + 1))
        bounds.append((start, start + length))
        start += length
    bounds.append((start, n_samples))
    return bounds


def split_songs(n_songs: int, seed: int) -> dict[str, list[int]]:
    """Song numbers per split, about 70/10/20, the test split getting at least 20%."""
    order = [int(i) for i in np.random.default_rng([seed, 2]).permutation(n_songs)]
    n_test = int(np.ceil(SPLIT_FRACTIONS["test"] * n_songs))
    n_valid = int(round(SPLIT_FRACTIONS["valid"] * n_songs)) if n_songs - n_test >= 2 else 0
    return {"train": sorted(order[n_test + n_valid:]),
            "valid": sorted(order[n_test:n_test + n_valid]),
            "test": sorted(order[:n_test])}


def mix_clip(vocals: np.ndarray, accompaniment: np.ndarray, var_db: float) -> np.ndarray:
    """Stereo (samples, 2) clip: left accompaniment, right vocals scaled to ``var_db``.

    Both channels get the same final gain so that the peak of either source and of
    their sum is ``PEAK``.
    """
    e_voc = float(np.sum(vocals.astype(np.float64) ** 2))
    e_acc = float(np.sum(accompaniment.astype(np.float64) ** 2))
    v = vocals.astype(np.float64)
    if e_voc > 0 and e_acc > 0:
        v *= np.sqrt(e_acc / e_voc) * 10 ** (var_db / 20)
    a = accompaniment.astype(np.float64)
    peak = max(np.max(np.abs(a)), np.max(np.abs(v)), np.max(np.abs(a + v)), 1e-9)
    return (np.stack([a, v], axis=1) * (PEAK / peak)).astype(np.float32)


def synthetic_clips(count: int, seconds: float, seed: int) -> list[Clip]:
    """``count`` whole songs of corpus ``seed``, mixed at 0 dB and kept in memory (for
    calibration, benchmarks and tests that need music but no corpus on disk)."""
    clips = []
    for index in range(count):
        song = render_song(seed, index, seconds)
        stereo = mix_clip(song.vocals, song.accompaniment, var_db=0.0)
        accompaniment, vocals = stereo[:, 0].copy(), stereo[:, 1].copy()
        clips.append(Clip(song.song_id, accompaniment + vocals, vocals, accompaniment))
    return clips


def mix_stems(stems: dict[str, np.ndarray], var_db: float) -> tuple[np.ndarray,
                                                                      dict[str, np.ndarray]]:
    """`mix_clip` of four stems: the stereo clip and the stems at the clip's gains.

    The left channel is the sum of the scaled drums, bass and other stems.
    """
    acc = sum(stems[name].astype(np.float64) for name in ACCOMPANIMENT_STEMS)
    v = stems["vocals"].astype(np.float64)
    e_voc, e_acc = float(np.sum(v ** 2)), float(np.sum(acc ** 2))
    vocal_gain = np.sqrt(e_acc / e_voc) * 10 ** (var_db / 20) if e_voc > 0 and e_acc > 0 else 1.0
    v = v * vocal_gain
    peak = max(np.max(np.abs(acc)), np.max(np.abs(v)), np.max(np.abs(acc + v)), 1e-9)
    gain = PEAK / peak
    scaled = {name: (stems[name].astype(np.float64) * gain).astype(np.float32)
              for name in ACCOMPANIMENT_STEMS}
    scaled["vocals"] = (v * gain).astype(np.float32)
    left = sum(scaled[name].astype(np.float64) for name in ACCOMPANIMENT_STEMS)
    stereo = np.stack([left, scaled["vocals"]], axis=1).astype(np.float32)
    return stereo, {name: scaled[name] for name in STEMS}


def corpus_parameters(songs: int, seconds: float, seed: int,
                      engines: tuple[str, ...] = DEFAULT_ENGINES,
                      fonts: tuple[str, ...] = (), production: bool = False,
                      stems: bool = False, backing: float = 0.0,
                      voices: tuple[str, ...] = DEFAULT_VOICES,
                      composers: tuple[str, ...] = DEFAULT_COMPOSERS,
                      collections: tuple[str, ...] = ()) -> dict:
    """What determines the corpus's content (compared when writing into an existing folder);
    ``backing_vocals`` is recorded only when some songs have them, ``voices`` only when
    the voice engines sing with other voices than `singing.DEFAULT_VOICES`, ``composers``
    only when others than the loops write the scores, ``recordings`` (the ``collections``,
    each with the fingerprint of its files) only when the ``recorded`` engine plays."""
    parameters = {"songs": int(songs), "seconds": float(seconds), "seed": int(seed),
                  "sample_rate": SAMPLE_RATE, "clip_seconds": list(CLIP_SECONDS),
                  "var_db": list(VAR_DB), "engines": list(engines), "fonts": list(fonts),
                  "production": bool(production), "stems": bool(stems),
                  "generator_version": GENERATOR_VERSION}
    if backing > 0:
        parameters["backing_vocals"] = float(backing)
    if any(e in VOICE_ENGINES for e in engines) and tuple(voices) != DEFAULT_VOICES:
        parameters["voices"] = list(voices)
    if tuple(composers) != DEFAULT_COMPOSERS:
        parameters["composers"] = list(composers)
    if "recorded" in engines:
        parameters["recordings"] = list(collections)
        parameters["recording_files"] = {name: collection_fingerprint(name)
                                         for name in collections}
    return parameters


def check_corpus_arguments(songs: int, seconds: float, seed: int) -> None:
    """Refuse a song count, song length or seed that no corpus can be written with (before
    anything is rendered, so a bad length fails at once rather than after memory runs out)."""
    if int(songs) != songs or not 1 <= songs <= MAX_SONGS:
        raise ValueError(f"songs must be a whole number from 1 to {MAX_SONGS}, got {songs}")
    if not np.isfinite(seconds) or not 1.0 <= seconds <= MAX_SONG_SECONDS:
        raise ValueError(f"seconds must be between 1 and {MAX_SONG_SECONDS:g}, got {seconds}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed}")


def _check_destination(out: Path, parameters: dict) -> None:
    """Refuse a non-empty folder unless it holds a corpus written with the same parameters."""
    if out.is_symlink():
        raise ValueError(f"{out} is a symbolic link; rewriting the corpus would replace the "
                         f"link by a folder: give the folder it points to ({out.resolve()})")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    meta_path = out / SPLITS_FILE
    hint = "choose an empty or new folder"
    if not meta_path.is_file():
        raise ValueError(f"{out} is not empty and holds no {SPLITS_FILE} of an earlier corpus; "
                         f"{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{meta_path}: unreadable ({exc}); {hint}") from exc
    if not isinstance(meta, dict) or meta.get("format") != SYNTH_FORMAT:
        raise ValueError(f"{out} is not empty and its {SPLITS_FILE} is not a tinysep synthetic "
                         f"corpus; {hint}")
    old = meta.get("parameters", {})
    diff = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in parameters.items() if old.get(k) != v]
    if diff:
        raise ValueError(f"{out} holds a corpus with other parameters ({', '.join(diff)}); "
                         f"{hint} or delete it")
    others = _foreign_entries(out, meta)
    if others:
        raise ValueError(f"{out} holds {first_names(others)}, which its corpus did not "
                         f"write; rewriting the corpus would delete them: move them out or "
                         f"{hint}")


def _foreign_entries(out: Path, meta: dict) -> list[str]:
    """Paths under ``out`` (relative, sorted) that the corpus its ``meta`` describes did not
    write: a user's own files, which rewriting the corpus must not delete."""
    clips = meta.get("clips")
    stems = meta.get("stems")
    names = stems.get("names") if isinstance(stems, dict) else None
    written = {SPLITS_FILE, WAV_DIR}
    if isinstance(clips, dict):
        written |= {f"{WAV_DIR}/{clip}.wav" for clip in clips}
        if isinstance(names, list):
            written.add(SYNTH_STEMS_DIR)
            for clip in clips:
                written.add(f"{SYNTH_STEMS_DIR}/{clip}")
                written |= {f"{SYNTH_STEMS_DIR}/{clip}/{stem}.wav" for stem in names}
    return sorted(path.relative_to(out).as_posix() for path in out.rglob("*")
                  if path.relative_to(out).as_posix() not in written)


@dataclass
class CorpusSummary:
    """What `write_corpus` wrote: songs, clips and seconds of audio per split, songs per
    engine and the songs skipped (with why)."""

    out_dir: Path
    songs: dict[str, int]
    clips: dict[str, int]
    seconds: dict[str, float]
    elapsed: float
    engines: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def total_minutes(self) -> float:
        return sum(self.seconds.values()) / 60.0


def plan_corpus(songs: int, seconds: float, seed: int,
                engines: tuple[str, ...] = DEFAULT_ENGINES, fonts: tuple[str, ...] = (),
                production: bool = False, stems: bool = False, backing: float = 0.0,
                voices: tuple[str, ...] = DEFAULT_VOICES,
                composers: tuple[str, ...] = DEFAULT_COMPOSERS,
                collections: tuple[str, ...] = ()) -> dict:
    """The corpus's metadata before rendering: splits, engines, clip names and bounds."""
    check_corpus_arguments(songs, seconds, seed)
    n = int(round(seconds * SAMPLE_RATE))
    split_of = {i: name for name, idx in split_songs(songs, seed).items() for i in idx}
    clips, song_meta = {}, {}
    for i in range(songs):
        plan = plan_song(seed, i, engines, fonts, voices, composers, collections)
        sid = plan.song_id
        rng = np.random.default_rng([seed, 4, i])
        names = []
        for c, (a, b) in enumerate(clip_bounds(n, rng), start=1):
            name = f"{sid}_{c:02d}"
            clips[name] = {"song": sid, "split": split_of[i], "start_seconds": a / SAMPLE_RATE,
                           "seconds": (b - a) / SAMPLE_RATE,
                           "var_db": round(float(rng.uniform(*VAR_DB)), 4),
                           "engines": plan.engines()}
            names.append(name)
        song_meta[sid] = {"index": i, "split": split_of[i], "engines": plan.engines(),
                          "clips": names}
    splits = {s: [c for c, m in clips.items() if m["split"] == s] for s in SPLIT_FRACTIONS}
    meta = {"format": SYNTH_FORMAT, "kit_version": tinysep.__version__,
            "parameters": corpus_parameters(songs, seconds, seed, engines, fonts, production,
                                            stems, backing, voices, composers, collections),
            "complete": False, "channels": {"left": "accompaniment", "right": "vocals"}}
    if stems:
        meta["stems"] = {"folder": SYNTH_STEMS_DIR, "names": list(STEMS),
                         "note": "accompaniment = drums + bass + other"}
    meta.update({"splits": splits, "skipped": {}, "songs": song_meta, "clips": clips})
    return meta




def silence_reason(stems: dict[str, np.ndarray]) -> str | None:
    """Why a rendered song is unusable (silent vocals or accompaniment), or None."""
    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))) if len(x) else 0.0

    if not all(np.all(np.isfinite(stems[name])) for name in STEMS):
        return "rendered non-finite samples"
    if rms(stems["vocals"]) < SILENT_RMS:
        return "vocals render silent"
    if rms(sum(stems[name].astype(np.float64) for name in ACCOMPANIMENT_STEMS)) < SILENT_RMS:
        return "accompaniment renders silent"
    return None


def render_corpus_song(seed: int, plan: SongPlan, seconds: float, production: bool,
                       backing: float = 0.0) -> tuple[dict[str, np.ndarray] | None, dict]:
    """The produced stems of one corpus song and its description, or (None, {"skipped":
    reason}) when a sound font fails to load, a Festival or eSpeak NG voice speaks nothing
    usable or the song renders silent."""
    try:
        song = render_stems(seed, plan, seconds, SAMPLE_RATE, backing)
    except FontError as exc:
        return None, {"skipped": f"sound font {plan.font} failed to load ({exc})"}
    except VoiceError as exc:
        return None, {"skipped": f"the {plan.vocal_engine} engine failed: {exc}"}
    except RecordingError as exc:
        return None, {"skipped": f"the recorded engine failed: {exc}"}
    stems, info = song.stems, dict(song.info)
    reason = silence_reason(stems)
    if reason is None and production:
        stems, info["production"] = produce(stems, SAMPLE_RATE,
                                            np.random.default_rng([seed, 7, plan.index]))
        reason = silence_reason(stems)
    if reason is not None:
        return None, {"skipped": reason}
    return stems, info


def _song_task(task: tuple) -> dict:
    """Render one song and write its clips into the (temporary) corpus folder."""
    seed, plan, seconds, production, backing, with_stems, clip_list, out = task
    stems, info = render_corpus_song(seed, plan, seconds, production, backing)
    if stems is None:
        return info
    out = Path(out)
    for name, start, length, var_db in clip_list:
        a = int(round(start * SAMPLE_RATE))
        b = a + int(round(length * SAMPLE_RATE))
        stereo, scaled = mix_stems({k: v[a:b] for k, v in stems.items()}, var_db)
        write_audio(out / WAV_DIR / f"{name}.wav", stereo, SAMPLE_RATE)
        if with_stems:
            folder = out / SYNTH_STEMS_DIR / name
            folder.mkdir(parents=True, exist_ok=True)
            for stem in STEMS:
                write_audio(folder / f"{stem}.wav", scaled[stem], SAMPLE_RATE)
    return info


def _results(tasks: list[tuple], workers: int):
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_song_task, tasks)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        yield from pool.map(_song_task, tasks, chunksize=1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder to ``out`` (replacing an earlier same corpus)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_corpus(out_dir: str | Path, songs: int, seconds: float, seed: int,
                 progress: bool = True, engines: tuple[str, ...] | str = DEFAULT_ENGINES,
                 fonts: tuple[str, ...] | str | None = None, production: bool = False,
                 stems: bool = False, workers: int = 1, backing_vocals: float = 0.0,
                 voices: tuple[str, ...] | str | None = None,
                 composers: tuple[str, ...] | str | None = None,
                 recordings: tuple[str, ...] | str | None = None) -> CorpusSummary:
    """Render ``songs`` songs of ``seconds`` each and write them (see the module docstring).

    ``engines``: names of `engines.ENGINES` (default additive only, the original corpus);
    ``fonts``: sound fonts for the soundfont and choir engines (default `soundfont.DEFAULT_FONTS`);
    ``production``: randomized production; ``stems``: also write the four stems per clip;
    ``workers``: processes rendering songs; ``backing_vocals``: share of the songs of
    `engines.BACKING_ENGINES` (0-1) that get backing vocals of their own engine; ``voices``: the
    voice engines' voices (`engines.parse_voices`; default each engine's own); ``composers``:
    who writes the scores, drawn per song (`engines.COMPOSERS`; default the loops alone);
    ``recordings``: the collections the ``recorded`` engine plays from
    (`recordings.parse_collections`; default `recordings.DEFAULT_COLLECTIONS`).
    Refuses a non-empty folder unless it holds an earlier corpus with the same parameters
    (then it is rewritten, with the same bytes).
    Raises `engines.EngineUnavailable` when a selected engine's tools are missing.
    """
    begin = time.perf_counter()
    out = Path(out_dir)
    engines = parse_engines(engines)
    fonts = parse_fonts(fonts) if any(e in ("soundfont", "choir") for e in engines) else ()
    if voices is not None and not any(e in VOICE_ENGINES for e in engines):
        *others, last = VOICE_ENGINES
        raise ValueError(f"voices {voices!r} sing only with the {', '.join(others)} and {last} "
                         f"engines, which engines {','.join(engines)} leave out")
    voices = parse_voices(voices, engines)
    composers = parse_composers(composers)
    if recordings is not None and "recorded" not in engines:
        raise ValueError(f"recordings {recordings!r} play only with the recorded engine, which "
                         f"engines {','.join(engines)} leave out")
    collections = parse_collections(recordings) if "recorded" in engines else ()
    check_engines(engines, fonts, voices, collections)
    for collection in collections:
        check_apart_from(collection, out)
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive whole number, got {workers}")
    if not 0.0 <= backing_vocals <= 1.0:
        raise ValueError(f"backing vocals must be a share between 0 and 1, got {backing_vocals}")
    meta = plan_corpus(songs, seconds, seed, engines, fonts, production, stems, backing_vocals,
                       voices, composers, collections)
    clean_abandoned_writes(out)
    _check_destination(out, meta["parameters"])
    made = make_parents(out.parent)  # removed again when nothing is written
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / WAV_DIR).mkdir(parents=True)
    bar = Progress(songs, "synth", "songs", enabled=progress)
    try:
        tasks = []
        for song_meta in meta["songs"].values():
            plan = plan_song(seed, song_meta["index"], engines, fonts, voices, composers,
                             collections)
            clip_list = [(c, meta["clips"][c]["start_seconds"], meta["clips"][c]["seconds"],
                          meta["clips"][c]["var_db"]) for c in song_meta["clips"]]
            tasks.append((seed, plan, float(seconds), production, float(backing_vocals), stems,
                          clip_list, str(tmp)))
        for (sid, song_meta), info in zip(meta["songs"].items(), _results(tasks, workers),
                                          strict=True):
            song_meta.update(info)
            if "skipped" in info:
                meta["skipped"][sid] = info["skipped"]
            bar.update(1)
        bar.close()
        if len(meta["skipped"]) == songs:
            first = next(iter(meta["skipped"].items()))
            raise ValueError(f"every song was skipped (first: {first[0]}: {first[1]}); "
                             f"nothing written to {out}")
        for sid in meta["skipped"]:
            for name in meta["songs"][sid]["clips"]:
                del meta["clips"][name]
                meta["splits"][meta["songs"][sid]["split"]].remove(name)
        meta["complete"] = True
        write_json_atomic(tmp / SPLITS_FILE, meta)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_made(made)
        raise
    finally:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)

    per_split = {s: [meta["clips"][c] for c in meta["splits"][s]] for s in SPLIT_FRACTIONS}
    used: dict[str, int] = {}
    for sid, song_meta in meta["songs"].items():
        if sid not in meta["skipped"]:
            e = song_meta["engines"]
            font = f" ({Path(e['font']).stem})" if e["font"] else ""
            voice = f" ({e['voice']})" if e.get("voice") else ""
            composer = f", {e['composer']}" if e.get("composer") else ""
            recording = f" ({Path(e['recording']).name})" if e.get("recording") else ""
            key = (f"{e['vocals']} vocals{voice} / {e['accompaniment']} band{font}{recording}"
                   f"{composer}")
            used[key] = used.get(key, 0) + 1
    return CorpusSummary(
        out_dir=out,
        songs={s: len({c["song"] for c in cl}) for s, cl in per_split.items()},
        clips={s: len(cl) for s, cl in per_split.items()},
        seconds={s: float(sum(c["seconds"] for c in cl)) for s, cl in per_split.items()},
        elapsed=time.perf_counter() - begin,
        engines=dict(sorted(used.items())),
        skipped=dict(meta["skipped"]),
    )

