"""The emulated board: the real agent on one end of a pseudo-terminal pair, a serial device path
(``/dev/pts/N``) on the other for the harness to open with pyserial.

``EmulatedBoard`` runs the agent as a subprocess (``python -m firmware_host.board --fd N``) so
harness and agent use separate cores and the board can be killed, restarted or frozen
(SIGSTOP) mid-stream like a real one; the pseudo-terminal outlives the agent, so the host keeps
its port open across a restart. ``serve_in_foreground`` runs the agent in this process instead
(``tinysep board --emulate``).

Both work on a private copy of the bundle folder (``private_copy``), like a board's own flash:
an upload to the emulated board never writes into the user's folder.

``BOARD_PROFILES`` name emulated board classes: ``host`` (the agent as it runs on a Linux
board) and ``cortex-m`` (a microcontroller: 1 KiB messages, a window of one message, TensorFlow
Lite Micro's kernels in the arena the manifest measured; pace it like a UART with a baud).
The Python agent has no option for its max message, so a profile that sets one runs the agent
through this module (``python -m hil.emulator --max-message N AGENT-ARGS``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from firmware_host.protocol.upload import DEFAULT_MAX_UPLOAD
from firmware_host.transport import FdStream, ThrottledStream, make_raw

REPO_ROOT = Path(__file__).resolve().parents[1]
AGENT_MODULE = "firmware_host.board"
EMULATOR_MODULE = "hil.emulator"


class PtyPair:
    """A real pseudo-terminal pair in raw mode: one end for the board agent, one for the host.

    ``slave_path`` can be opened like a serial device (pyserial or ``open_tty``); the pair keeps
    its own descriptor on it so the master never sees a hang-up while the host reopens the port.
    """

    def __init__(self) -> None:
        self.master_fd, self.slave_fd = os.openpty()
        make_raw(self.slave_fd)
        self.slave_path = os.ttyname(self.slave_fd)

    def master_stream(self) -> FdStream:
        """The master end as a byte stream (closed with the pair)."""
        return FdStream(self.master_fd, close_fd=False)

    def slave_stream(self) -> FdStream:
        """The slave end as a byte stream (closed with the pair)."""
        return FdStream(self.slave_fd, close_fd=False)

    def close(self) -> None:
        """Close both descriptors."""
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass(frozen=True)
class BoardProfile:
    """A class of emulated board: what its agent announces and which runtime it uses."""

    name: str
    runtime: str = "auto"
    max_payload: int | None = None  # None: the agent's default
    max_message: int | None = None
    window: int | None = None
    max_upload: int | None = None  # bytes; None: the agent's default
    description: str = ""

    def agent_args(self) -> list:
        """Agent options for this profile (``--max-message`` only the emulator entry takes)."""
        args = []
        if self.runtime != "auto":
            args += ["--runtime", self.runtime]
        if self.max_payload is not None:
            args += ["--max-payload", str(self.max_payload)]
        if self.window is not None:
            args += ["--window", str(self.window)]
        if self.max_upload is not None:
            args += ["--max-upload", str(self.max_upload)]
        if self.max_message is not None:
            args += ["--max-message", str(self.max_message)]
        return args


BOARD_PROFILES = {
    "host": BoardProfile("host", description="the agent as on a Linux board (LiteRT, 8 KiB "
                         "frames, 1 MiB messages, window 8)"),
    "cortex-m": BoardProfile(
        "cortex-m",
        runtime="tflite_micro",
        max_payload=1024,
        max_message=1024,
        window=1,
        max_upload=1 << 20,
        description="a microcontroller: TFLite Micro in the measured arena, 1 KiB messages, "
        "window 1, uploads up to 1 MiB (its flash bank)",
    ),
}


def board_profile(name: str | None) -> BoardProfile:
    """The profile called ``name`` (None: ``host``); ValueError names the known ones."""
    if name is None:
        return BOARD_PROFILES["host"]
    if name not in BOARD_PROFILES:
        raise ValueError(f"unknown board profile {name!r}; known: {', '.join(BOARD_PROFILES)}")
    return BOARD_PROFILES[name]


def private_bundle_copy(bundle: str | Path) -> tuple:
    """(temporary folder, copy of ``bundle`` inside it): the emulated board's own flash."""
    source = Path(bundle).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"bundle folder {source} does not exist")
    folder = Path(tempfile.mkdtemp(prefix="tinysep-emulated-board-"))
    copy = folder / source.name
    shutil.copytree(source, copy)
    return folder, copy


def agent_command(
    where: int | str,
    bundle: str | Path,
    python: str | None = None,
    throttle_baud: int | None = None,
    extra_args=(),
    interpreter=None,
) -> list[str]:
    """The command line that runs the agent on an inherited descriptor (int) or a device path.

    ``interpreter`` (a command list, e.g. qemu-user running an ARM root's Python) replaces
    ``python``.
    """
    target = ["--fd", str(where)] if isinstance(where, int) else ["--port", str(where)]
    runner = list(interpreter) if interpreter else [python or sys.executable]
    module = EMULATOR_MODULE if "--max-message" in [str(a) for a in extra_args] else AGENT_MODULE
    command = runner + ["-m", module] + target
    command += ["--bundle", str(bundle)]
    if throttle_baud:
        command += ["--throttle-baud", str(int(throttle_baud))]
    return command + [str(a) for a in extra_args]


class EmulatedBoard:
    """A pseudo-terminal pair with the agent subprocess on its master end.

    ``path`` is the device the host opens. ``baud`` paces the agent's link like a UART.
    ``extra_args`` go to the agent (e.g. ``--ack-timeout 0.05``); ``python`` picks the
    interpreter (another virtual environment, e.g. one with tflite_runtime). With ``port``
    the agent opens that device instead (e.g. the board end of a fault-injecting relay) and
    no pseudo-terminal pair is made. ``interpreter`` (a command list) and ``env`` (variables
    added to the agent's environment) run it elsewhere, e.g. on an emulated ARM board
    (``hil.emulated_arm.agent_launcher``).
    """

    def __init__(
        self,
        bundle: str | Path,
        baud: int | None = None,
        python: str | None = None,
        extra_args=(),
        log_path: str | Path | None = None,
        start: bool = True,
        port: str | None = None,
        interpreter=None,
        env: dict | None = None,
        profile: str | None = None,
        private_copy: bool = True,
    ) -> None:
        self.source_bundle = Path(bundle).resolve()  # the agent runs in another working folder
        if not self.source_bundle.is_dir():
            raise FileNotFoundError(f"bundle folder {self.source_bundle} does not exist")
        self.profile = board_profile(profile)
        self.workdir = None
        self.bundle = self.source_bundle
        if private_copy:
            self.workdir, self.bundle = private_bundle_copy(self.source_bundle)
        extra_args = self.profile.agent_args() + list(extra_args)
        self.baud = baud
        self.python = python
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else None
        self.port = port
        self.interpreter = list(interpreter) if interpreter else None
        self.env = dict(env or {})
        self.pair = PtyPair() if port is None else None
        self.path = self.pair.slave_path if self.pair is not None else None
        self.process = None
        self.starts = 0
        if start:
            self.start()

    def start(self) -> None:
        """Start the agent (again) on the master end."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the emulated board's agent is already running")
        where = self.pair.master_fd if self.pair is not None else self.port
        command = agent_command(where, self.bundle, self.python, self.baud, self.extra_args,
                                interpreter=self.interpreter)
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        stderr = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path = self.log_path.resolve()
            stderr = open(self.log_path, "ab")  # noqa: SIM115 (closed after Popen below)
        try:
            self.process = subprocess.Popen(
                command,
                pass_fds=(self.pair.master_fd,) if self.pair is not None else (),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                cwd=str(REPO_ROOT),
            )
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Kill the agent at once (a board losing power): no goodbye on the line."""
        if self.running:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Kill the agent and start a fresh one (a board reset mid-stream)."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """Freeze the agent (SIGSTOP): a stalled board that answers nothing."""
        if self.running:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused agent run again (SIGCONT)."""
        if self.running:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the agent politely (SIGTERM, then SIGKILL after 5 s)."""
        if self.running:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def close(self) -> None:
        """Stop the agent, close the pseudo-terminal and remove the private bundle copy."""
        self.stop()
        if self.pair is not None:
            self.pair.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> EmulatedBoard:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def serve_in_foreground(
    bundle: str | Path,
    baud: int | None = None,
    announce_path=None,
    runtime: str = "auto",
    should_stop=None,
    profile: str | None = None,
    private_copy: bool = True,
) -> int:
    """Open a pseudo-terminal pair and serve the agent on it in this process until stopped.

    ``announce_path(path, bundle_copy)`` is called with the device path the harness should
    open and the folder the board works in (a private copy unless ``private_copy`` is off).
    ``profile`` sets the limits the board announces and, unless ``runtime`` is given, its
    runtime.
    """
    from firmware_host.board.agent import BoardAgent
    from firmware_host.board.runtime import load_runtime
    from firmware_host.protocol.link import Link, board_config

    chosen = board_profile(profile)
    if runtime == "auto":
        runtime = chosen.runtime
    workdir = None
    folder = Path(bundle)
    if private_copy:
        workdir, folder = private_bundle_copy(bundle)
    limits = dict(
        (key, value)
        for key, value in (
            ("max_payload", chosen.max_payload),
            ("max_message", chosen.max_message),
            ("window", chosen.window),
        )
        if value is not None
    )
    try:
        agent = BoardAgent(str(folder), load_runtime(runtime),
                           max_upload=chosen.max_upload or DEFAULT_MAX_UPLOAD)
        with PtyPair() as pair:
            stream = pair.master_stream()
            if baud:
                stream = ThrottledStream(stream, baud)
            link = Link(stream, board_config(baud=baud, **limits), name="board")
            try:
                link.announce()
                if announce_path is not None:
                    announce_path(pair.slave_path, str(folder))
                agent.serve(link, should_stop=should_stop)
            finally:
                link.close()
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _agent_main(argv: list) -> int:
    """The agent's command line plus ``--max-message N`` (set through the link config)."""
    from firmware_host.board import __main__ as agent

    argv = list(argv)
    max_message = None
    if "--max-message" in argv:
        at = argv.index("--max-message")
        try:
            max_message = int(argv[at + 1])
        except (IndexError, ValueError):
            sys.stderr.write("hil.emulator: --max-message needs a number of bytes\n")
            return 2
        del argv[at : at + 2]
    if max_message is not None:
        make_config = agent.board_config

        def board_config_with_max_message(**overrides):
            overrides["max_message"] = max_message
            return make_config(**overrides)

        agent.board_config = board_config_with_max_message
    return agent.main(argv)


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(_agent_main(sys.argv[1:]))
