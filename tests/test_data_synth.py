"""The synthetic corpus: determinism, song-disjoint splits, layout, VAR, overlap, repetition."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from cli.main import main as cli_main
from tinysep.data.synth import (
    CLIP_SECONDS,
    PEAK,
    clip_bounds,
    render_song,
    split_songs,
    write_corpus,
)
from tinysep.dsp import stft

SONGS, SECONDS, SEED = 6, 12.0, 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    write_corpus(out, songs=SONGS, seconds=SECONDS, seed=SEED, progress=False)
    return out


def _meta(root: Path) -> dict:
    return json.loads((root / "splits.json").read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _band_fraction(x: np.ndarray, low: float, high: float, rate: int = 16_000) -> float:
    f, p = welch(x, fs=rate, nperseg=1024)
    return float(p[(f >= low) & (f <= high)].sum() / p.sum())


def test_same_seed_writes_the_same_bytes(corpus, tmp_path):
    again = tmp_path / "again"
    write_corpus(again, songs=SONGS, seconds=SECONDS, seed=SEED, progress=False)
    first, second = _files(corpus), _files(again)
    assert len(first) == len(_meta(corpus)["clips"]) + 1
    assert first == second


def test_rewriting_an_interrupted_corpus_completes_it_with_the_same_bytes(corpus):
    before = _files(corpus)
    meta = _meta(corpus)
    (corpus / "splits.json").write_text(json.dumps({**meta, "complete": False}))
    victim = corpus / "Wavfile" / f"{meta['splits']['test'][0]}.wav"
    victim.unlink()
    summary = write_corpus(corpus, songs=SONGS, seconds=SECONDS, seed=SEED, progress=False)
    assert _files(corpus) == before
    assert sum(summary.clips.values()) == len(_meta(corpus)["clips"])


def test_different_seeds_give_different_songs():
    a, b = render_song(0, 0, 6.0), render_song(1, 0, 6.0)
    assert a.vocals.shape == b.vocals.shape == (96_000,)
    assert not np.allclose(a.vocals, b.vocals)
    assert not np.allclose(a.accompaniment, b.accompaniment)
    c = render_song(0, 1, 6.0)  # another song of the same corpus
    assert not np.allclose(a.accompaniment, c.accompaniment)


def test_splits_never_share_a_song(corpus):
    meta = _meta(corpus)
    splits = meta["splits"]
    listed = [c for names in splits.values() for c in names]
    assert sorted(listed) == sorted(meta["clips"])  # every clip in exactly one split
    wavs = sorted(p.stem for p in (corpus / "Wavfile").glob("*.wav"))
    assert wavs == sorted(listed)
    songs = {s: {"_".join(c.split("_")[:2]) for c in names} for s, names in splits.items()}
    assert songs["train"] & songs["test"] == set()
    assert songs["train"] & songs["valid"] == set()
    assert songs["valid"] & songs["test"] == set()
    assert len(set().union(*songs.values())) == SONGS
    assert len(songs["test"]) >= 0.2 * SONGS
    assert all(len(meta["songs"][s]["clips"]) >= 2 for s in meta["songs"])  # 12 s -> 2+ clips


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 10, 17, 100])
def test_split_sizes(n):
    splits = split_songs(n, seed=0)
    everything = splits["train"] + splits["valid"] + splits["test"]
    assert sorted(everything) == list(range(n))
    assert len(splits["test"]) >= 0.2 * n
    if n >= 2:
        assert splits["train"]
    if n == 100:
        assert [len(splits[s]) for s in ("train", "valid", "test")] == [70, 10, 20]
    assert split_songs(n, seed=0) == splits
    if n >= 10:
        assert split_songs(n, seed=1) != splits


def test_clip_bounds_cover_the_song_in_4_to_10_second_pieces():
    rng = np.random.default_rng(0)
    for seconds in (4.0, 9.5, 10.0, 10.5, 14.0, 30.0, 61.3):
        n = int(seconds * 16_000)
        bounds = clip_bounds(n, rng)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        lengths = np.array([b - a for a, b in bounds]) / 16_000
        assert lengths.min() >= CLIP_SECONDS[0] and lengths.max() <= CLIP_SECONDS[1]


def test_stereo_layout_left_accompaniment_right_vocals(corpus):
    meta = _meta(corpus)
    song_id, song = next(iter(meta["songs"].items()))
    rendered = render_song(SEED, song["index"], SECONDS)
    assert rendered.song_id == song_id
    for name in song["clips"]:
        info = sf.info(str(corpus / "Wavfile" / f"{name}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 2, "PCM_16")
        audio, _ = sf.read(str(corpus / "Wavfile" / f"{name}.wav"))
        clip = meta["clips"][name]
        a = int(round(clip["start_seconds"] * 16_000))
        voc = rendered.vocals[a:a + len(audio)]
        acc = rendered.accompaniment[a:a + len(audio)]
        assert np.corrcoef(audio[:, 0], acc)[0, 1] > 0.999
        assert np.corrcoef(audio[:, 1], voc)[0, 1] > 0.999
        assert abs(np.corrcoef(audio[:, 0], voc)[0, 1]) < 0.5


def test_vocal_to_accompaniment_ratio_and_peak(corpus):
    meta = _meta(corpus)
    ratios = []
    for name, clip in meta["clips"].items():
        audio, _ = sf.read(str(corpus / "Wavfile" / f"{name}.wav"))
        var = 10 * np.log10(np.sum(audio[:, 1] ** 2) / np.sum(audio[:, 0] ** 2))
        assert -5.0 <= var <= 5.0
        assert var == pytest.approx(clip["var_db"], abs=0.05)
        peak = max(np.abs(audio).max(), np.abs(audio.sum(axis=1)).max())
        assert peak == pytest.approx(PEAK, abs=2e-4)
        ratios.append(var)
    assert max(ratios) - min(ratios) > 2.0  # drawn per clip, not one constant


def test_vocals_and_accompaniment_overlap_in_frequency(corpus):
    shared = []
    for wav in sorted((corpus / "Wavfile").glob("*.wav")):
        audio, _ = sf.read(str(wav))
        accompaniment, vocals = audio[:, 0], audio[:, 1]
        shared.append(_band_fraction(accompaniment, 200, 1000))
        assert shared[-1] > 0.1, wav.name
        assert _band_fraction(vocals, 200, 1000) > 0.3, wav.name
        assert _band_fraction(vocals, 2000, 8000) > 1e-3, wav.name  # formants and consonants
    assert np.mean(shared) > 0.25


def test_vocals_sing_in_phrases_with_silent_gaps():
    song = render_song(5, 2, 20.0)
    frames = song.vocals[: len(song.vocals) // 400 * 400].reshape(-1, 400)  # 25 ms frames
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 1e-3 * np.abs(song.vocals).max()
    assert 0.5 < loud.mean() < 0.97
    silent_runs, run = [], 0
    for x in loud:
        run = 0 if x else run + 1
        silent_runs.append(run)
    assert max(silent_runs) * 0.025 < 2.5  # short gaps only: every 4 s clip has singing
    assert np.all(song.vocals[~np.repeat(loud, 400)] ** 2 < 1e-4)


def test_pitch_follows_a_melody_with_vibrato():
    song = render_song(2, 0, 10.0)
    spec = np.abs(stft(song.vocals))
    loud = spec.sum(axis=1) > 0.05 * spec.sum(axis=1).max()
    peak_bins = spec[loud, 3:80].argmax(axis=1)  # strongest partial below 2.5 kHz
    assert len(np.unique(peak_bins)) >= 4  # the pitch moves


@pytest.mark.parametrize("seed, index", [(7, 1), (0, 0)])
def test_accompaniment_repeats_bar_wise_and_vocals_do_not(seed, index):
    song = render_song(seed, index, 24.0)
    bar = int(round(4 * 60.0 / song.info["tempo_bpm"] * 16_000 / 128))  # frames per bar

    def self_similarity(x: np.ndarray, lag: int) -> float:
        spec = np.log1p(100 * np.abs(stft(x)))
        spec -= spec.mean(axis=0)
        a, b = spec[:-lag], spec[lag:]
        return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    at_loop = max(self_similarity(song.accompaniment, k * bar) for k in (1, 2, 4))
    off_loop = self_similarity(song.accompaniment, bar + bar // 8 + 3)
    vocals = max(self_similarity(song.vocals, k * bar) for k in (1, 2, 4))
    assert at_loop > 0.4
    assert at_loop > off_loop + 0.2
    assert vocals < at_loop - 0.2


def test_refuses_a_foreign_or_different_folder(corpus, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        write_corpus(foreign, songs=2, seconds=5, seed=0, progress=False)
    with pytest.raises(ValueError, match=r"other parameters \(songs 6 -> 7"):
        write_corpus(corpus, songs=7, seconds=SECONDS, seed=SEED, progress=False)
    with pytest.raises(ValueError, match="seed"):
        write_corpus(corpus, songs=SONGS, seconds=SECONDS, seed=SEED + 1, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_rewriting_a_corpus_keeps_files_it_did_not_write(corpus, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    (copy / "notes.txt").write_text("mine")
    (copy / "Wavfile" / "mine.txt").write_text("mine")
    (copy / "Stems" / "myclip").mkdir(parents=True)
    (copy / "Stems" / "myclip" / "vocals.wav").write_text("mine")
    before = _files(copy)
    with pytest.raises(ValueError, match=r"Stems, Stems/myclip, Stems/myclip/vocals.wav "
                                         r"and 2 more, which its corpus did not write"):
        write_corpus(copy, songs=SONGS, seconds=SECONDS, seed=SEED, progress=False)
    assert _files(copy) == before
    (copy / "notes.txt").unlink()
    (copy / "Wavfile" / "mine.txt").unlink()
    shutil.rmtree(copy / "Stems")
    write_corpus(copy, songs=SONGS, seconds=SECONDS, seed=SEED, progress=False)
    assert _files(copy) == _files(corpus)


@pytest.mark.parametrize("songs, seconds, seed, field", [
    (0, 5.0, 0, "songs"), (2, 0.5, 0, "seconds"), (2, 5.0, -1, "seed")])
def test_bad_arguments_are_named(tmp_path, songs, seconds, seed, field):
    with pytest.raises(ValueError, match=field):
        write_corpus(tmp_path / "x", songs=songs, seconds=seconds, seed=seed, progress=False)


def test_cli_synth_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    # every engine (the default), the smallest sound font, one worker
    assert cli_main(["synth", "--out", str(out), "--songs", "3", "--seconds", "5",
                     "--seed", "1", "--fonts", "timgm6mb", "--workers", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "synth:" not in captured.err  # --no-progress: no progress lines
    assert "test" in printed and "total" in printed
    total = next(line for line in printed.splitlines() if line.startswith("total")).split()
    assert total[1:3] == ["3", "3"]  # 3 songs, one 5 s clip each
    assert float(total[3]) == pytest.approx(15 / 60, abs=0.01)
    assert "skipped songs: 0" in printed and " vocals / " in printed
    meta = _meta(out)
    assert meta["parameters"]["engines"] == ["additive", "soundfont", "physical", "festival",
                                             "choir"]
    assert meta["parameters"]["production"] and meta["parameters"]["stems"]
    assert sorted(p.name for p in (out / "Stems").iterdir()) == sorted(meta["clips"])
    (out / "extra.txt").write_text("x")
    assert cli_main(["synth", "--out", str(out), "--songs", "4", "--seconds", "5",
                     "--fonts", "timgm6mb", "--quiet"]) == 2
    assert "other parameters" in capsys.readouterr().err
    assert cli_main(["synth", "--out", str(tmp_path / "x"), "--engines", "additive,lute"]) == 2
    assert "unknown engine(s) lute" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_synthetic_clips_are_the_corpus_songs_mixed_at_0_db():
    from tinysep.data.synth import synthetic_clips

    clips = synthetic_clips(2, 2.0, seed=4)
    assert [c.name for c in clips] == [render_song(4, i, 2.0).song_id for i in range(2)]
    for clip in clips:
        assert clip.mixture.size == 32000
        np.testing.assert_allclose(clip.mixture, clip.vocals + clip.accompaniment, atol=1e-6)
        ratio_db = 10 * np.log10(np.sum(clip.vocals.astype(np.float64) ** 2)
                                 / np.sum(clip.accompaniment.astype(np.float64) ** 2))
        assert abs(ratio_db) < 1e-3
    assert not np.allclose(clips[0].mixture, clips[1].mixture)


def _dead_pid() -> int:
    """The process id of a process that has finished."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_a_killed_write_leaves_a_folder_the_next_write_removes(tmp_path):
    out = tmp_path / "corpus"
    code = ("from tinysep.data.synth import write_corpus; "
            f"write_corpus({str(out)!r}, songs=40, seconds=30, seed=5, progress=False)")
    writer = subprocess.Popen([sys.executable, "-c", code])
    partial = tmp_path / f".corpus.partial-{writer.pid}"
    deadline = time.monotonic() + 120
    while not (partial / "Wavfile").is_dir() or not any((partial / "Wavfile").iterdir()):
        assert writer.poll() is None and time.monotonic() < deadline, "the writer never began"
        time.sleep(0.05)
    writer.kill()  # no clean-up can run
    writer.wait()
    assert partial.is_dir() and not out.exists()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        running = tmp_path / f".corpus.partial-{sleeper.pid}"  # a write still under way
        running.mkdir()
        write_corpus(out, songs=SONGS, seconds=SECONDS, seed=SEED, progress=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "corpus"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_corpus_moved_aside_by_a_killed_rewrite_goes_back(corpus, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(corpus, tmp_path / f".corpus.old-{_dead_pid()}")
    with pytest.raises(ValueError, match="seed"):  # another corpus's parameters: refused
        write_corpus(out, songs=SONGS, seconds=SECONDS, seed=SEED + 1, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]
    assert _files(out) == _files(corpus)


def test_a_terminated_synth_stops_as_on_ctrl_c_and_leaves_nothing(tmp_path):
    """`kill PID` (a scheduler, `docker stop`): the half-written corpus goes, the workers
    end and the command says it was interrupted."""
    out = tmp_path / "deep" / "corpus"
    writer = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "synth", "--out", str(out), "--songs", "40",
         "--seconds", "30", "--engines", "additive", "--workers", "2", "--no-progress"],
        stderr=subprocess.PIPE, text=True)
    partial = out.parent / f".corpus.partial-{writer.pid}"
    deadline = time.monotonic() + 120
    while not (partial / "Wavfile").is_dir() or not any((partial / "Wavfile").iterdir()):
        assert writer.poll() is None and time.monotonic() < deadline, "the writer never began"
        time.sleep(0.05)
    writer.terminate()
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 130 and "tinysep synth: interrupted" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no corpus, no partial folder, no parents made


def test_a_symlinked_out_or_a_huge_song_count_is_refused_before_writing(corpus, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(corpus)
    with pytest.raises(ValueError, match=f"{link} is a symbolic link.*{corpus}"):
        write_corpus(link, songs=SONGS, seconds=SECONDS, seed=SEED, progress=False)
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["link"]
    with pytest.raises(ValueError, match="songs must be a whole number from 1 to 100000"):
        write_corpus(tmp_path / "x", songs=10**11, seconds=SECONDS, seed=SEED, progress=False)
    assert not (tmp_path / "x").exists()
