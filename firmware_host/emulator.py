"""The emulated board: the real agent on one end of a pseudo-terminal pair, a serial device path
(``/dev/pts/N``) on the other for the harness to open with pyserial.

``EmulatedBoard`` runs the agent as a subprocess (``python -m firmware_host.board --fd N``) so
harness and agent use separate cores and the board can be killed, restarted or frozen
(SIGSTOP) mid-stream like a real one; the pseudo-terminal outlives the agent, so the host keeps
its port open across a restart. ``serve_in_foreground`` runs the agent in this process instead
(``tinysep board --emulate``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from firmware_host.transport import PtyPair, ThrottledStream

REPO_ROOT = Path(__file__).resolve().parents[1]


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
    command = runner + ["-m", "firmware_host.board"] + target
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
    (``firmware_host.emulated_arm.agent_launcher``).
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
    ) -> None:
        self.bundle = Path(bundle).resolve()  # the agent runs in another working folder
        if not self.bundle.is_dir():
            raise FileNotFoundError(f"bundle folder {self.bundle} does not exist")
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
        """Stop the agent and close the pseudo-terminal."""
        self.stop()
        if self.pair is not None:
            self.pair.close()

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
) -> int:
    """Open a pseudo-terminal pair and serve the agent on it in this process until stopped.

    ``announce_path(path)`` is called with the device path the harness should open.
    """
    from firmware_host.board.agent import BoardAgent
    from firmware_host.board.runtime import load_runtime
    from firmware_host.protocol.link import Link, board_config

    agent = BoardAgent(str(bundle), load_runtime(runtime))
    with PtyPair() as pair:
        stream = pair.master_stream()
        if baud:
            stream = ThrottledStream(stream, baud)
        link = Link(stream, board_config(baud=baud), name="board")
        try:
            link.announce()
            if announce_path is not None:
                announce_path(pair.slave_path)
            agent.serve(link, should_stop=should_stop)
        finally:
            link.close()
    return 0


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
