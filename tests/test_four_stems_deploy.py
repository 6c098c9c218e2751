"""Four stems end to end on the deployment side: a tiny vocals/drums/bass/other model fitted
for a few steps on a synthetic corpus with stems exports to an int8 bundle within the MCU
budgets, streams on the emulated Cortex-M board (1 KiB messages, TFLite Micro), where one hop
of four int16 sources (1 038 bytes) only fits as SEPARATED_CHUNK parts, passes the HIL per
stem, and `tinysep separate` writes four files that add up to the input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from cli.main import main
from firmware_host.protocol.messages import SeparatedChunk
from hil.overhead import realtime_link

STEMS = ["vocals", "drums", "bass", "other"]
MODEL_BUDGET = 256 * 1024
ARENA_BUDGET = 64 * 1024
MACS_BUDGET = 1_000_000


@pytest.fixture(scope="module")
def four_stems(tmp_path_factory):
    """(corpus, float model folder, bundle folder) of a tiny four-stem dualgate-tcn."""
    from convert.export import export_bundle
    from convert.finetune import fine_tune
    from tinysep.data.loaders import load_split
    from tinysep.data.synth import write_corpus
    from tinysep.models import build_model, save_model

    root = tmp_path_factory.mktemp("four-stems")
    corpus = root / "corpus"
    write_corpus(corpus, songs=3, seconds=3.0, seed=5, progress=False, stems=True)
    clips = load_split(corpus, split="train", sources=STEMS, progress=False)
    model = build_model("dualgate-tcn", residual=16, hidden=32, blocks=3, repeats=1,
                        sources=STEMS)
    losses = fine_tune(model, clips, 12, chunk_frames=24, seed=2, freeze_batchnorm=False)
    assert len(losses) == 12 and np.all(np.isfinite(losses))
    folder = save_model(model, root / "model")
    export_bundle(folder, root / "bundle", calibration=clips, calibration_frames=128,
                  edgetpu_compile=False, progress=False)
    return corpus, folder, root / "bundle"


def test_a_hop_of_four_sources_goes_in_parts_that_rejoin():
    rng = np.random.default_rng(0)
    sources = rng.integers(-32768, 32768, (4, 384), dtype=np.int16)
    whole = SeparatedChunk(768, sources, 5000, 3)
    assert len(whole.encode()) == 14 + 2 * 4 * 384
    parts = whole.parts(1024)
    assert [len(p.encode()) for p in parts] == [782] * 4  # (1024 - 14) // 8 = 126 -> 4 x 96
    assert [p.position for p in parts] == [768, 864, 960, 1056]
    assert [(p.invoke_us, p.n_invokes) for p in parts] == [(5000, 3), (0, 0), (0, 0), (0, 0)]
    decoded = [SeparatedChunk.decode(p.encode()) for p in parts]
    np.testing.assert_array_equal(np.concatenate([p.sources for p in decoded], 1), sources)
    # a reply that fits is itself, unchanged: two sources of one hop in 1 KiB
    two = SeparatedChunk(0, sources[:2, :128], 7, 1)
    assert two.parts(1024) == [two] and two.parts(526) == [two]
    assert len(two.parts(525)) == 2


def test_real_time_link_needs_grow_with_the_sources():
    two, four = realtime_link(2), realtime_link(4)
    assert two["bytes_per_s_to_host"] == 65000.0 and two["min_baud"] == 650000
    assert four["pcm_bytes_per_s_to_host"] == 128000 == 4 * 2 * 16000
    assert 128000 < four["bytes_per_s_to_host"] < 131000
    assert four["bytes_per_s_to_board"] < 34000  # the request does not grow
    assert 1_280_000 < four["min_baud"] < 1_320_000
    mcu = realtime_link(4, hops=3, max_payload=1024, max_message=1024)
    assert mcu["reply_parts"] == 4 and mcu["min_baud"] > four["min_baud"]


def test_the_four_stem_bundle_is_within_the_mcu_budgets(four_stems):
    _, _, bundle = four_stems
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["sources"] == STEMS
    assert manifest["output"]["shape"][-1] == 4
    assert (bundle / "model.tflite").stat().st_size <= MODEL_BUDGET
    assert 0 < manifest["arena_bytes_estimate"] <= ARENA_BUDGET
    micro = manifest.get("arena_tflite_micro")
    if micro:
        assert micro["bytes"] <= ARENA_BUDGET
    assert 0 < manifest["model"]["macs_per_hop"] <= MACS_BUDGET


def test_hil_on_the_emulated_cortex_m_board_passes_per_stem(four_stems, tmp_path):
    corpus, model, bundle = four_stems
    argv = ["hil", "--emulate", "--board-profile", "cortex-m", "--bundle", str(bundle),
            "--float", str(model), "--data", str(corpus), "--max-clips", "1", "--plots", "0",
            "--report", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "hil.json").read_text())
    assert report["board"]["limits"]["max_message"] == 1024
    assert report["settings"]["chunk_hops_used"] == 3  # the request bounds it, replies in parts
    assert report["settings"]["reply_parts"] == 4
    assert "each SEPARATED_CHUNK comes back in 4 parts" in report["settings"]["chunk_note"]
    clip = report["clips"][0]
    assert clip["stream"]["chunks"] >= 3.0 * 16000 / 384
    assert clip["stream"]["link"]["bytes_received"] > 2 * 4 * 3 * 16000  # four sources back
    checks = {c["name"]: c for c in report["checks"]}
    for stem in STEMS:
        check = checks[f"sdr_drop_{stem}"]
        assert check["passed"] is True and abs(check["value"]) < 0.5, check["text"]
        assert report["summary"]["scores"]["int8_board"][stem]["sdr"] is not None
    assert report["passed"]
    text = (tmp_path / "hil.md").read_text()
    assert "| source | float | int8 (host) | int8 (board) | board drop | check |" in text
    for stem in STEMS:
        assert f"\n| {stem} | " in text
    assert "voc/dru/bas/oth" in text
    junit = (tmp_path / "hil.junit.xml").read_text()
    assert all(f'name="sdr_drop_{stem}"' in junit for stem in STEMS)


def test_separate_writes_four_stems_that_add_up_to_the_input(four_stems, tmp_path):
    corpus, model, bundle = four_stems
    mixture = sorted(corpus.rglob("*.wav"))[0]
    audio, rate = soundfile.read(str(mixture), dtype="float32", always_2d=True)
    song = tmp_path / "song.wav"
    soundfile.write(str(song), audio[: int(1.5 * rate)], rate, subtype="PCM_16")
    audio, _ = soundfile.read(str(song), always_2d=True)
    for where, extra in (("float", ["--model", str(model)]),
                         ("board", ["--model", str(bundle), "--emulate",
                                    "--board-profile", "cortex-m"])):
        out = tmp_path / where
        assert main(["separate", str(song), "--out", str(out), *extra, "--no-progress"]) == 0
        written = sorted(p.name for p in (out / "song").iterdir())
        assert written == sorted(f"{s}.wav" for s in STEMS), where
        stems = [soundfile.read(str(out / "song" / f"{s}.wav"), always_2d=True)[0]
                 for s in STEMS]
        assert all(s.shape == audio.shape for s in stems)
        # each stem is rounded to int16 once: the sum is within four half-steps of the input
        np.testing.assert_allclose(sum(stems), audio, atol=4.0 / 32768)
        assert all(np.abs(s).max() > 0 for s in stems[:-1]), where
        report = json.loads((out / "separate.json").read_text())
        assert report["sources"] == STEMS


def test_quality_scores_and_sweep_rows_follow_the_separators_sources():
    from convert.quality import record_sources, score_separator, sdr_delta
    from convert.sweep import flat_rows, markdown_table
    from tinysep.data.clip import Clip

    rng = np.random.default_rng(3)
    stems = {s: rng.standard_normal(8000).astype(np.float32) * 0.1 for s in STEMS}
    mixture = sum(stems.values())
    clip = Clip("c", mixture, stems["vocals"], mixture - stems["vocals"],
                stems={s: stems[s] for s in STEMS[1:]}, sources=tuple(STEMS))

    def exact(_mix):
        return dict(stems)

    def noisy(_mix):
        return {s: v + 0.01 * rng.standard_normal(v.size).astype(np.float32)
                for s, v in stems.items()}

    reference = score_separator(exact, [clip])
    other = score_separator(noisy, [clip])
    assert record_sources(reference) == STEMS
    delta = sdr_delta(reference, other)
    assert list(delta) == STEMS and all(d["drop_db"] > 10 for d in delta.values())
    cell = {"id": "base-int8", "variant": {"name": "base"}, "bytes": 2048, "gzip_bytes": None,
            "arena_tflm": None, "macs_per_hop": 1, "host_us_per_hop": 1.0, "sources": delta}
    table = markdown_table(flat_rows([cell]))
    assert all(f"{s} drop" in table for s in STEMS) and "accompaniment" not in table


def test_the_protocol_spec_states_the_link_needs_the_code_computes():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()

    def spaced(value: float) -> str:
        return f"{round(value):,}".replace(",", " ")

    for n, label in ((1, "1"), (2, "2 (vocals, accompaniment)"),
                     (4, "4 (vocals, drums, bass, other)")):
        need = realtime_link(n)
        row = (f"| {label} | {spaced(need['bytes_per_s_to_board'])} | "
               f"{spaced(need['bytes_per_s_to_host'])} | {spaced(need['min_baud'])} |")
        assert row in text, row
