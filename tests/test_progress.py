"""Progress in a log: a few plain lines, never a redrawn bar; native runtime lines hidden."""

from __future__ import annotations

import io

from tinysep.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_per_tenth_and_the_postfix():
    log = io.StringIO()
    with Progress(40, "eval", unit="clip", stream=log) as bar:
        for n in range(40):
            bar.postfix(f"clip {n}")
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 10  # 10 %, 20 %, ... 90 % and the closing line
    assert lines[0].startswith("eval: 4/40 clip (10 %") and lines[0].endswith("; clip 3")
    assert lines[-1].startswith("eval: 40/40 clip (100 %")


def test_fractional_amounts_keep_a_decimal_and_disabled_prints_nothing():
    log = io.StringIO()
    bar = Progress(3.0, "audio", unit="s", stream=log, line_every=1.0)
    bar.update(1.25)
    bar.close()
    assert log.getvalue().startswith("audio: 1.2/3 s (42 %")
    quiet = io.StringIO()
    with Progress(5, "x", stream=quiet, enabled=False) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_bar():
    screen = _Terminal()
    with Progress(5, "train", unit="step", stream=screen) as bar:
        bar.postfix("loss 0.1")
        bar.update(5)
    assert "train" in screen.getvalue() and "\r" in screen.getvalue()


def test_native_runtime_lines_are_hidden_unless_the_block_fails(capfd):
    import os

    import pytest

    from tinysep.quiet import quiet_runtime

    with quiet_runtime():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        print("kept: the kit's own message")
    out, err = capfd.readouterr()
    assert "XNNPACK" not in err and "kept: the kit's own message" in out
    with pytest.raises(RuntimeError, match="conversion failed"):
        with quiet_runtime():
            os.write(2, b"native explanation of the failure\n")
            raise RuntimeError("conversion failed")
    assert "native explanation of the failure" in capfd.readouterr().err
