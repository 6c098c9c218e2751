"""The emulated board takes paths relative to the folder the user is in, not the kit's."""

from __future__ import annotations

import os

from board_bundle import copy_bundle, make_bundle
from board_support import FAST_AGENT_ARGS, host_client

from hil.emulator import REPO_ROOT, EmulatedBoard


def test_a_relative_bundle_path_is_read_from_the_current_folder(tmp_path, monkeypatch):
    bundle = copy_bundle(make_bundle(), tmp_path / "bundles" / "tcn")
    monkeypatch.chdir(tmp_path)
    assert os.getcwd() != str(REPO_ROOT)
    log = "agent.log"
    with EmulatedBoard("bundles/tcn", extra_args=FAST_AGENT_ARGS, log_path=log) as board:
        client = host_client(board.path)
        try:
            info = client.info()
        finally:
            client.link.close()
    assert info.has_model
    assert info.model_size == (bundle / "model.tflite").stat().st_size
    assert (tmp_path / log).exists()
