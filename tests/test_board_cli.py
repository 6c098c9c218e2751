"""`tinysep board --emulate` (a real process serving a pseudo-terminal it announces) and
`tinysep flash` (upload, already-current, and a model that does not fit the board's bundle).
"""

from __future__ import annotations

import hashlib
import io
import signal
import subprocess
import sys

import pytest
from board_bundle import copy_bundle, make_bundle
from board_support import ThreadAgent, host_client

from cli.main import main
from firmware_host.bundle import read_bundle
from hil.flash import flash_bundle
from hil.session import BoardSession


def test_board_emulate_prints_a_device_that_serves_the_bundle_until_sigterm():
    bundle = read_bundle(make_bundle())
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "board", "--emulate", "--bundle", bundle.folder],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("emulated board on /dev/"), line
        path = line.split()[3]
        client = host_client(path)
        info = client.info()
        assert info.model_sha256.hex() == bundle.model_sha256 and info.delegate == "cpu"
        client.link.close(close_stream=True)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_flash_uploads_once_then_reports_the_board_current(tmp_path, capsys):
    board_dir = copy_bundle(make_bundle(), tmp_path / "board")
    new = make_bundle(seed=8)
    with ThreadAgent(board_dir) as board:
        assert main(["flash", "--port", board.path, "--bundle", str(new), "--no-progress"]) == 0
        captured = capsys.readouterr()
        size = (new / "model.tflite").stat().st_size
        assert f"flashed {size / 1024:,.1f} KiB ({size:,} B) to " in captured.out
        assert " KiB/s)" in captured.out and captured.err == ""  # --no-progress: quiet
        assert main(["flash", "--port", board.path, "--bundle", str(new), "--no-progress"]) == 0
        assert "already runs" in capsys.readouterr().out
        other = make_bundle(options={"residual": 8, "hidden": 8, "blocks": 1, "repeats": 1})
        assert main(["flash", "--port", board.path, "--bundle", str(other),
                     "--no-progress"]) == 1
        out = capsys.readouterr().err
        # refused before a byte is sent: hil would refuse the board's manifest afterwards
        assert "the board's bundle differs from" in out and "input (index" in out
        assert "copy the whole bundle folder" in out
    data = (new / "model.tflite").read_bytes()
    assert (board_dir / "model.tflite").read_bytes() == data
    assert read_bundle(board_dir).model_sha256 == hashlib.sha256(data).hexdigest()


def test_flash_reports_the_upload_in_kib_as_plain_lines_off_a_terminal(tmp_path):
    board_dir = copy_bundle(make_bundle(), tmp_path / "board")
    new = make_bundle(seed=8)
    size = (new / "model.tflite").stat().st_size
    log = io.StringIO()
    with ThreadAgent(board_dir) as board, BoardSession(port=board.path) as session:
        result = flash_bundle(session, str(new), progress=True, stream=log)
    assert result.uploaded and result.bytes == size
    lines = log.getvalue().splitlines()
    assert 1 < len(lines) <= 11 and "\r" not in log.getvalue()
    total = f"{size / 1024:,.1f}"
    assert lines[-1].startswith(f"flash: {total}/{total} KiB (100 %"), lines
    assert all(line.startswith("flash: ") and " KiB (" in line for line in lines)


def test_an_emulated_cortex_m_board_announces_its_limits_and_flashes_only_its_own_copy(capsys):
    bundle = make_bundle()
    before = (bundle / "model.tflite").read_bytes()
    new = make_bundle(seed=8)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "board", "--emulate", "--profile", "cortex-m",
         "--bundle", str(bundle)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("emulated board on /dev/") and "profile cortex-m" in line, line
        path = line.split()[3]
        client = host_client(path)
        peer = client.link.peer
        assert (peer.max_payload, peer.max_message, peer.window) == (1024, 1024, 1)
        assert client.info().runtime.startswith("tflite_micro")
        client.link.close(close_stream=True)
        assert main(["flash", "--port", path, "--bundle", str(new), "--no-progress"]) == 0
        assert "flashed" in capsys.readouterr().out
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (bundle / "model.tflite").read_bytes() == before  # the user's folder is untouched


def test_flash_to_a_board_that_never_answers_is_a_board_fault(tmp_path, capsys):
    """Nobody on the other end of the line: exit 3 (board fault), not 1 (refused)."""
    from hil.emulator import PtyPair

    with PtyPair() as pair:
        code = main(["flash", "--port", pair.slave_path, "--bundle", str(make_bundle()),
                     "--timeout", "1", "--no-progress"])
    assert code == 3
    assert "board fault" in capsys.readouterr().err


def test_an_emulated_board_refuses_a_broken_bundle_by_the_users_path(tmp_path, capsys):
    from cli.main import main

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{bad")
    assert main(["board", "--emulate", "--bundle", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"{broken / 'manifest.json'} is not valid UTF-8 JSON" in err
    (tmp_path / "afile").write_text("x")
    assert main(["board", "--emulate", "--bundle", str(tmp_path / "afile")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_blank_board_announces_no_upload_and_flash_refuses_before_a_byte(tmp_path, capsys):
    """A board folder with no manifest cannot check an upload, so it does not offer one."""
    from firmware_host.protocol.messages import CAP_UPLOAD

    blank = tmp_path / "blank"
    blank.mkdir()
    new = make_bundle(seed=8)
    with ThreadAgent(blank) as board:
        client = host_client(board.path)
        info = client.info()
        assert not info.capabilities & CAP_UPLOAD and not info.manifest_json
        client.link.close()
        assert main(["flash", "--port", board.path, "--bundle", str(new), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "a blank board" in err and "copy the whole bundle folder" in err
    assert list(blank.iterdir()) == []  # nothing was uploaded


def test_a_cortex_m_board_refuses_an_upload_beyond_its_flash_bank():
    from firmware_host.protocol.codes import ErrorCode
    from firmware_host.protocol.errors import PeerError
    from firmware_host.protocol.messages import Ok, UploadBegin
    from hil.emulator import BOARD_PROFILES, EmulatedBoard

    assert BOARD_PROFILES["cortex-m"].max_upload == 1 << 20
    with EmulatedBoard(str(make_bundle()), profile="cortex-m") as board:
        client = host_client(board.path)
        with pytest.raises(PeerError) as refused:
            client.request(UploadBegin(size=(1 << 20) + 1, sha256=bytes(32)), Ok)
        assert refused.value.code == ErrorCode.UPLOAD_TOO_LARGE
        assert isinstance(client.request(UploadBegin(size=1 << 20, sha256=bytes(32)), Ok), Ok)
        assert client.ping() > 0  # the board answers on
        client.link.close()


def test_a_reply_sent_in_parts_is_joined_by_a_lock_step_separate():
    """A 1 KiB board sends 384 samples of two sources as two parts: one reply to the caller,
    and the link stays in step for the next request."""
    import numpy as np

    from firmware_host.protocol.messages import AudioChunk
    from hil.emulator import EmulatedBoard

    pcm = (np.sin(np.arange(384) / 7.0) * 8000).astype(np.int16)
    with EmulatedBoard(str(make_bundle()), profile="cortex-m") as board:
        client = host_client(board.path)
        client.reset_state()
        reply = client.separate(AudioChunk(0, pcm))
        assert reply.position == 0 and reply.sources.shape == (2, 384)
        assert client.owed == 0 and client.ping() > 0
        again = client.separate(AudioChunk(384, pcm))
        assert again.position == 384 and again.sources.shape == (2, 384)
        client.link.close()
