"""Four-stem data: the synthetic corpus's Stems/ folders, MUSDB18-HQ's stems, missing
stems named, and augmentation per source (gain, sign, cross-song remix) over four stems."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tinysep.data.audio_io import read_mono
from tinysep.data.augment import training_chunks
from tinysep.data.clip import SOURCES, Clip
from tinysep.data.loaders import find_clips, load_split
from tinysep.data.sources import STEMS
from tinysep.data.synth import write_corpus

MUSDB_RATE = 44_100


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stems") / "synth"
    write_corpus(root, songs=3, seconds=5.0, seed=21, progress=False, stems=True)
    return root


def test_synth_clips_load_their_four_stems(corpus):
    two = {c.name: c for c in load_split(corpus, split="all", progress=False)}
    four = load_split(corpus, split="all", progress=False, sources=STEMS)
    assert sorted(c.name for c in four) == sorted(two)
    for clip in four:
        assert clip.sources == STEMS
        stems = {s: read_mono(corpus / "Stems" / clip.name / f"{s}.wav") for s in STEMS}
        for stem in STEMS:
            np.testing.assert_array_equal(clip.source(stem), stems[stem])
        # The mixture is the sum of the stems; the stereo file holds the same music up to
        # the 16-bit rounding of each file.
        np.testing.assert_allclose(clip.mixture, sum(stems.values()), atol=1e-6)
        np.testing.assert_allclose(clip.accompaniment, stems["drums"] + stems["bass"]
                                   + stems["other"], atol=1e-6)
        np.testing.assert_allclose(clip.mixture, two[clip.name].mixture, atol=4 / 32768)
        np.testing.assert_array_equal(clip.vocals, two[clip.name].vocals)
        assert all(np.sqrt(np.mean(clip.source(s) ** 2)) > 1e-4 for s in STEMS)
    assert two[four[0].name].sources == SOURCES and not two[four[0].name].stems


def test_a_missing_stem_names_its_file(corpus, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    clip = sorted((broken / "Stems").iterdir())[0]
    (clip / "bass.wav").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{clip.name}/bass\.wav is missing"):
        find_clips(broken, split="all", sources=STEMS)
    # The two default sources do not need the stems.
    assert find_clips(broken, split="all")
    shutil.rmtree(broken / "Stems")
    with pytest.raises(FileNotFoundError, match=r"Stems/.*vocals\.wav is missing.*--no-stems"):
        find_clips(broken, split="all", sources=STEMS)


def test_a_stem_deleted_after_listing_is_named_at_load(corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    source = find_clips(copy, split="all", sources=STEMS)[0]
    (copy / "Stems" / source.name / "drums.wav").unlink()
    with pytest.raises(FileNotFoundError, match="stem drums of clip"):
        source.load()


def test_mir1k_has_no_stems_and_bad_source_sets_are_refused(tmp_path, corpus):
    (tmp_path / "mir" / "Wavfile").mkdir(parents=True)
    sf.write(str(tmp_path / "mir" / "Wavfile" / "a_1_01.wav"), np.zeros((800, 2)), 16_000)
    with pytest.raises(ValueError, match="MIR-1K holds only vocals and accompaniment"):
        find_clips(tmp_path / "mir", "mir1k", "all", sources=STEMS)
    with pytest.raises(ValueError, match="exactly once"):
        find_clips(corpus, split="all", sources=("vocals", "drums"))


def _write_musdb_track(folder: Path, seconds: float = 1.0) -> dict[str, np.ndarray]:
    n = int(seconds * MUSDB_RATE)
    t = np.arange(n) / MUSDB_RATE
    tones = {"vocals": 440.0, "drums": 150.0, "bass": 60.0, "other": 1000.0}
    folder.mkdir(parents=True)
    stems = {s: np.stack([0.2 * np.sin(2 * np.pi * f * t)] * 2, axis=1) for s, f in tones.items()}
    stems["mixture"] = sum(stems.values())
    for stem, audio in stems.items():
        sf.write(str(folder / f"{stem}.wav"), audio, MUSDB_RATE, subtype="FLOAT")
    return stems


def test_musdb_yields_every_stem(tmp_path):
    root = tmp_path / "musdb"
    _write_musdb_track(root / "test" / "E")
    _write_musdb_track(root / "train" / "A")
    for sources in (SOURCES, STEMS):
        (source,) = find_clips(root, "musdb", "test", sources)
        clip = source.load()
        assert clip.sources == tuple(sources)
        assert sorted(clip.stems) == ["bass", "drums", "other"]
        for stem in STEMS:
            np.testing.assert_allclose(clip.source(stem), read_mono(root / "test" / "E" /
                                                                   f"{stem}.wav"), atol=1e-6)
        t = np.arange(16_000) / 16_000
        middle = slice(1000, 15_000)
        np.testing.assert_allclose(clip.source("bass")[middle],
                                   0.2 * np.sin(2 * np.pi * 60 * t)[middle], atol=2e-3)
        # The mixture is the track's own mixture file.
        np.testing.assert_allclose(clip.mixture, read_mono(root / "test" / "E" / "mixture.wav"),
                                   atol=1e-6)


# --- augmentation over four stems -----------------------------------------------------

CHUNK, LENGTH, SCALE = 1000, 20_000, 100_000


def _coded_stem_clips() -> list[Clip]:
    """Clips whose every sample says (stem, clip, position); two clips per song."""
    clips = []
    for k in range(8):
        position = np.arange(LENGTH, dtype=np.float32)
        stems = {s: (i + 1) * 10 * SCALE + k * SCALE + position + 1 for i, s in enumerate(STEMS)}
        accompaniment = stems["drums"] + stems["bass"] + stems["other"]
        clips.append(Clip(f"s{k // 2}_1_{k % 2:02d}", accompaniment + stems["vocals"],
                          stems["vocals"], accompaniment, song=f"s{k // 2}_1",
                          stems={s: stems[s] for s in STEMS[1:]}, sources=STEMS))
    return clips


def _decode(chunk: np.ndarray) -> tuple[int, int, int]:
    """(stem, clip, offset) of an unscaled coded chunk."""
    raw = int(chunk[0]) - 1
    stem = raw // (10 * SCALE) - 1
    raw -= (stem + 1) * 10 * SCALE
    return stem, raw // SCALE, raw % SCALE


def test_four_stem_chunks_remix_each_stem_on_its_own():
    clips = _coded_stem_clips()
    chunks = list(training_chunks(clips, CHUNK, np.random.default_rng(0), count=400,
                                  sources=STEMS, random_gain=False, sign_flip=False))
    remixed = 0
    for mixture, *parts in chunks:
        assert len(parts) == 4
        np.testing.assert_array_equal(mixture, ((parts[0] + parts[1]) + parts[2]) + parts[3])
        decoded = [_decode(p) for p in parts]
        assert [d[0] for d in decoded] == [0, 1, 2, 3]  # each stem from its own stem
        _, first_clip, first_offset = decoded[0]
        for _, clip, offset in decoded[1:]:
            if clip // 2 != first_clip // 2:
                remixed += 1
            else:  # not remixed: the same instant of the same clip
                assert (clip, offset) == (first_clip, first_offset)
    # Each of the 3 later stems comes from another song with probability 1/2.
    assert 0.4 < remixed / (3 * len(chunks)) < 0.6


def test_four_stem_chunks_get_a_gain_and_a_sign_per_stem():
    chunks = list(training_chunks(_coded_stem_clips(), CHUNK, np.random.default_rng(1),
                                  count=300, sources=STEMS, remix=False))
    factors = np.array([[(p[-1] - p[0]) / (CHUNK - 1) for p in parts]
                        for _, *parts in chunks], np.float64)
    gains = np.abs(factors)
    assert 0.25 - 1e-3 <= gains.min() and gains.max() <= 1.25 + 1e-3
    assert np.all(np.ptp(gains, axis=1) > 1e-3)  # never one gain for all stems
    assert 0.4 < np.mean(factors < 0) < 0.6
    # Signs are independent per stem: all four alike in about 2 / 16 of the chunks.
    alike = np.mean(np.all(factors < 0, axis=1) | np.all(factors > 0, axis=1))
    assert 0.05 < alike < 0.25


def test_four_stems_need_clips_loaded_for_them():
    clip = Clip("a", np.zeros(2000, np.float32), np.zeros(2000, np.float32),
                np.zeros(2000, np.float32))
    with pytest.raises(KeyError, match="no source 'drums'"):
        next(training_chunks([clip, clip], CHUNK, np.random.default_rng(0), sources=STEMS))
