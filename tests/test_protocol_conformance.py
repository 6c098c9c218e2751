"""Conformance vectors: the file matches its generator, and the real agent passes every case it
meets the requirements of, replayed over a real pseudo-terminal as a C firmware would be; a
four-source board's replies in parts join into exactly the host's int8 output, and a board that
reorders, drops or alters parts fails."""

from __future__ import annotations

import copy
import json
import pathlib

import numpy as np
import pytest
from board_support import ThreadAgent

from firmware_host.transport import open_port
from hil.conformance import (
    VECTORS_FILE,
    Replayer,
    build_vectors,
    bundle_reference,
    load_vectors,
    main,
    match_pattern,
    vectors_text,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEMS = ["vocals", "drums", "bass", "other"]
FOUR = "separated-chunk-parts-four-sources"


@pytest.fixture(scope="module")
def four_source_bundle():
    """A small untrained four-source dualgate-tcn, exported to an int8 bundle (cached)."""
    from board_bundle import SMALL_TCN, make_bundle

    return make_bundle(options=dict(SMALL_TCN, sources=STEMS))


def test_vectors_file_matches_the_generator():
    on_disk = (ROOT / VECTORS_FILE).read_text()
    assert on_disk == vectors_text(), (
        "regenerate with: python -m hil.conformance --write " + VECTORS_FILE
    )
    vectors = json.loads(on_disk)
    largest = max(
        len(step["send"]["payload"].split())
        for case in vectors["cases"]
        for step in case["steps"]
        if "send" in step
    )
    assert f"largest request payload in the file is {largest} bytes" in (
        ROOT / "docs" / "protocol.md"
    ).read_text().replace("\n  ", " ")
    names = [case["name"] for case in vectors["cases"]]
    assert len(names) == len(set(names)) >= 15
    for case in vectors["cases"]:
        for step in case["steps"]:
            assert {"send", "expect", "expect_none", "expect_joined"} & set(step), step
            if "send" in step:
                wire = bytes.fromhex(step["wire"].replace(" ", ""))
                assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]


def test_patterns_match_bytes_wildcards_and_runs():
    assert match_pattern("01 ?? 03", b"\x01\xff\x03")
    assert not match_pattern("01 ?? 03", b"\x01\xff\x04")
    assert not match_pattern("01 ??", b"\x01")
    assert match_pattern("01 00 *", b"\x01\x00")
    assert match_pattern("01 00 *", b"\x01\x00hello")
    assert match_pattern("01 * 03", b"\x01\x02\x02\x03")
    assert not match_pattern("01 * 03", b"\x01\x02")
    assert match_pattern("", b"") and not match_pattern("", b"\x00")


def _replay(board, vectors=None, reference=None, names=None, kept=None):
    port = open_port(board.path)
    try:
        replayer = Replayer(port, reference=reference)
        if kept is not None:
            kept.append(replayer)
        return replayer.run(vectors or load_vectors(str(ROOT / VECTORS_FILE)), names)
    finally:
        port.close()


def test_the_agent_without_a_model_passes_every_case_it_qualifies_for(tmp_path):
    with ThreadAgent(tmp_path) as board:
        results = _replay(board)
    status = dict((name, (state, detail)) for name, state, detail in results)
    failed = [(name, detail) for name, (state, detail) in status.items() if state == "fail"]
    assert not failed, failed
    assert status["no-model"][0] == "pass" and status["bad-requests"][0] == "pass"
    assert status["model-state-rules"] == ("skip", "requires model")
    assert status["separated-chunk-parts"][0] == status[FOUR][0] == "skip"
    # no manifest to check an upload against: the board offers none (docs/protocol.md, 5)
    assert status["upload-dropped-with-its-session"] == ("skip", "requires upload")
    assert sum(state == "pass" for state, _ in status.values()) == len(status) - 4
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no upload file left behind


def test_a_board_that_answers_wrongly_is_reported_with_the_step_and_the_bytes(tmp_path):
    vectors = copy.deepcopy(build_vectors())
    case = next(c for c in vectors["cases"] if c["name"] == "bad-requests")
    step = next(s for s in case["steps"] if s.get("expect", {}).get("type") == 0x16)
    step["expect"]["payload"] = "03 00 7e 00 *"  # pretend MESSAGE_TOO_LARGE were expected
    vectors["cases"] = [case]
    with ThreadAgent(tmp_path) as board:
        results = _replay(board, vectors)
    ((name, state, detail),) = results
    assert (name, state) == ("bad-requests", "fail")
    assert "step 3 (ERROR UNKNOWN_TYPE to type 0x7e)" in detail
    assert "payload 02 00 7e 00" in detail and "does not match 03 00 7e 00 *" in detail


def test_the_agent_with_a_model_passes_the_model_cases(tmp_path):
    from board_bundle import copy_bundle, make_bundle

    bundle_dir = copy_bundle(make_bundle(), tmp_path / "bundle")
    inside = sorted(p.name for p in bundle_dir.iterdir())
    with ThreadAgent(bundle_dir) as board:
        results = _replay(board)
    status = dict((name, (state, detail)) for name, state, detail in results)
    failed = [(name, detail) for name, (state, detail) in status.items() if state == "fail"]
    assert not failed, failed
    assert status["model-state-rules"][0] == "pass"
    assert status["separated-chunk-parts"][0] == "pass"  # a reply over 512 bytes, in parts
    assert "not compared (no host reference given)" in status["separated-chunk-parts"][1]
    assert status[FOUR] == ("skip", "requires four_sources")
    assert status["no-model"] == ("skip", "requires no_model")
    assert sorted(p.name for p in bundle_dir.iterdir()) == inside


def test_the_command_line_replays_a_port_and_writes_the_file(tmp_path, capsys):
    out = tmp_path / "vectors.json"
    assert main(["--write", str(out)]) == 0
    assert out.read_text() == vectors_text()
    with ThreadAgent(tmp_path) as board:
        code = main([board.path, "--vectors", str(out), "--case", "ping", "--case", "handshake"])
    printed = capsys.readouterr().out
    assert code == 0 and "2 passed, 0 failed, 0 skipped" in printed
    with pytest.raises(SystemExit):
        main([])


def test_a_board_with_microcontroller_limits_passes_and_skips_what_it_leaves_out(tmp_path):
    """1 KiB frames and messages, window 1: no reassembly, no pipelining; every other case
    passes."""
    import threading

    from test_link_support import fast_board_config

    from firmware_host.board.agent import BoardAgent
    from firmware_host.board.runtime import load_runtime
    from firmware_host.protocol.link import Link
    from hil.emulator import PtyPair

    pair = PtyPair()
    agent = BoardAgent(str(tmp_path), load_runtime(), log=lambda text: None)
    config = fast_board_config(max_payload=1024, max_message=1024, window=1)
    link = Link(pair.master_stream(), config, name="board")
    stopping = []
    thread = threading.Thread(target=agent.serve, args=(link, lambda: bool(stopping)))
    thread.start()
    port = open_port(pair.slave_path)
    try:
        results = Replayer(port).run(load_vectors(str(ROOT / VECTORS_FILE)))
    finally:
        port.close()
        stopping.append(True)
        thread.join(5.0)
        link.close()
        pair.close()
    status = dict((name, (state, detail)) for name, state, detail in results)
    failed = [(name, detail) for name, (state, detail) in status.items() if state == "fail"]
    assert not failed, failed
    assert status["fragmented-request"] == ("skip", "requires reassembly")
    assert status["pipelined-requests"] == ("skip", "requires window3")
    assert status["bad-requests"][0] == status["hello-max-payload-63"][0] == "pass"


def test_a_four_source_board_sends_parts_that_join_into_the_host_int8_output(
    four_source_bundle, tmp_path
):
    from convert.runtime import BundleRunner
    from firmware_host.bundle import read_bundle

    bundle_dir = copy_bundle_for(four_source_bundle, tmp_path)
    kept = []
    with ThreadAgent(bundle_dir) as board:
        results = _replay(board, reference=bundle_reference(str(bundle_dir)), kept=kept)
    status = dict((name, (state, detail)) for name, state, detail in results)
    failed = [(name, detail) for name, (state, detail) in status.items() if state == "fail"]
    assert not failed, failed
    assert status[FOUR] == ("pass", "2048 samples equal the host's int8 output")
    assert status["separated-chunk-parts"] == ("skip", "requires two_sources")
    assert status["model-state-rules"][0] == "pass"
    # independently: the whole-clip host stream of the same audio, aligned by the delay D
    case = next(c for c in load_vectors(str(ROOT / VECTORS_FILE))["cases"] if c["name"] == FOUR)
    sent = [bytes.fromhex(s["send"]["payload"].replace(" ", "")) for s in case["steps"]
            if s.get("send", {}).get("type") == 0x20]
    assert len(sent) == 4
    signal = np.concatenate([np.frombuffer(p[8:], "<i2") for p in sent])
    joined = kept[0].separated[FOUR]
    assert joined.shape == (4, 512) and joined.dtype == np.int16
    delay = read_bundle(str(bundle_dir)).delay_samples
    assert 0 < delay < 512
    runner = BundleRunner(str(bundle_dir))
    aligned = runner.stream(signal, 128)
    np.testing.assert_array_equal(joined[:, delay:], aligned[:, : 512 - delay])
    assert all(np.abs(joined[s, delay:]).max() > 0 for s in range(4))  # real audio, not silence


def copy_bundle_for(bundle, tmp_path):
    """A private copy (the upload cases write into the board's folder)."""
    from board_bundle import copy_bundle

    return copy_bundle(bundle, tmp_path / "bundle")


class _Misordered:
    """SEPARATED_CHUNK replies whose parts a faulty board sends reversed, one short or with
    two sources swapped."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def __call__(self, agent) -> None:
        from firmware_host.protocol.messages import SeparatedChunk

        fault = self.fault

        class Faulty(SeparatedChunk):
            def parts(self, max_message: int) -> list:
                parts = SeparatedChunk.parts(self, max_message)
                if fault == "reversed":
                    return parts[::-1]
                if fault == "dropped":
                    return parts[:1] + parts[2:]
                return parts

        separate = agent.separate

        def faulty(chunk):
            reply = separate(chunk)
            sources = reply.sources[[0, 2, 1, 3]] if fault == "swapped" else reply.sources
            return Faulty(reply.position, sources, reply.invoke_us, reply.n_invokes)

        agent.separate = faulty


@pytest.mark.parametrize(
    "fault, expected",
    [
        ("reversed", "step 5 (part 1 of 3: position 0, 42 samples of 4 sources"),
        ("dropped", "step 6 (part 2 of 3: position 42, 43 samples of 4 sources"),
        ("swapped", "samples differ from the host's int8 output; the first: source 1,"),
    ],
)
def test_a_four_source_board_that_reorders_drops_or_alters_parts_fails(
    four_source_bundle, fault, expected
):
    reference = bundle_reference(str(four_source_bundle))
    with ThreadAgent(four_source_bundle, adapt=_Misordered(fault)) as board:
        results = _replay(board, reference=reference, names=[FOUR])
    ((name, state, detail),) = results
    assert (name, state) == (FOUR, "fail"), detail
    assert expected in detail, detail
