"""Byte streams under the wire protocol: serial ports and URLs, raw ttys, ptys, UART pacing.

A byte stream has ``read(max_bytes)`` (returns the bytes available now, or b"" after a short
wait), ``write(data)`` (writes everything), ``write_some(data, timeout)`` (writes what the line
takes within ``timeout`` and says how much: the link's writer never blocks longer than that, so
its timers keep running while a peer stops reading) and ``close()``. A stream closed or failing
under a read or write raises ``StreamClosed`` naming the port. ``open_port`` opens any pyserial URL
(``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://host:port``, ``loop://``); without pyserial
(a bare board) it opens device paths with termios. ``ThrottledStream`` paces a stream to
N baud like a UART.

Board-safe: only the standard library at import time (pyserial is imported when used).
"""

from __future__ import annotations

import errno
import os
import select
import termios
import threading
import time
from urllib.parse import urlsplit

DEFAULT_POLL_INTERVAL = 0.02  # longest a read waits before returning b""
BITS_PER_BYTE = 10  # UART 8N1: start bit, 8 data bits, stop bit
DEFAULT_BAUD = 921600  # line speed of a serial port when none is given


class StreamClosed(ConnectionError):
    """A byte stream that was closed or failed under a read or write (names the port and what
    it was doing). The link turns it into the protocol's ``LinkClosed``."""


class ByteStream:
    """The byte-stream interface the link uses (documentation base class)."""

    def read(self, max_bytes: int) -> bytes:
        """Bytes available now (at most ``max_bytes``), or b"" after at most ~20 ms."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Write all of ``data`` (blocking while the other side is slow)."""
        raise NotImplementedError

    def write_some(self, data: bytes, timeout: float) -> int:
        """Write what the line takes within ``timeout`` seconds; returns the bytes written.

        0 means the line took nothing in that time (the peer is not reading). This default
        writes everything, blocking; the streams below override it to return in time.
        """
        self.write(data)
        return len(data)

    def close(self) -> None:
        """Release the underlying file descriptor or port."""


def write_some(stream, data: bytes, timeout: float) -> int:
    """``stream.write_some(data, timeout)``, or a whole blocking write for streams without it."""
    method = getattr(stream, "write_some", None)
    if method is None:
        stream.write(data)
        return len(data)
    return method(data, timeout)


def write_all(stream, data: bytes, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
    """Write all of ``data`` through ``write_some``, waiting while the line is full."""
    view = memoryview(bytes(data))
    while view:
        view = view[write_some(stream, view, poll_interval) :]


class FdStream(ByteStream):
    """A byte stream over a file descriptor (tty, pty end, pipe, socket).

    Writes are non-blocking (the descriptor gets ``O_NONBLOCK`` while this stream writes to it;
    ``close`` restores its flags), so ``write_some`` returns within its timeout.
    """

    def __init__(
        self, fd: int, poll_interval: float = DEFAULT_POLL_INTERVAL, close_fd: bool = True
    ) -> None:
        self.fd = fd
        self.poll_interval = poll_interval
        self._close_fd = close_fd
        self._closed = False
        self._was_blocking = None  # the descriptor's mode before this stream changed it

    def _closed_error(self, action: str, cause=None) -> Exception:
        text = f"fd {self.fd} was closed while {action}"
        if cause is not None:
            text += f" ({type(cause).__name__}: {cause})"
        return StreamClosed(text)

    def read(self, max_bytes: int) -> bytes:
        if self._closed:
            raise self._closed_error("reading")
        try:
            ready, _, _ = select.select([self.fd], [], [], self.poll_interval)
        except (OSError, ValueError) as exc:
            if self._closed:
                raise self._closed_error("reading", exc) from None
            raise
        if not ready:
            return b""
        try:
            data = os.read(self.fd, max_bytes)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if self._closed:
                raise self._closed_error("reading", exc) from None
            if exc.errno == errno.EIO:  # pty whose other side is closed
                raise ConnectionResetError(
                    f"fd {self.fd}: the other end of the terminal closed"
                ) from None
            raise
        if not data:
            raise ConnectionResetError(f"fd {self.fd}: end of stream")
        return data

    def write_some(self, data: bytes, timeout: float) -> int:
        if self._closed:
            raise self._closed_error("writing")
        if not data:
            return 0
        try:
            if os.get_blocking(self.fd):
                if self._was_blocking is None:
                    self._was_blocking = True
                os.set_blocking(self.fd, False)
            _, ready, _ = select.select([], [self.fd], [], max(0.0, timeout))
            if not ready:
                return 0
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except (OSError, ValueError) as exc:
            if self._closed:
                raise self._closed_error("writing", exc) from None
            raise

    def write(self, data: bytes) -> None:
        write_all(self, data, self.poll_interval)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                if self._was_blocking:
                    os.set_blocking(self.fd, True)  # the descriptor may be shared: as found
                if self._close_fd:
                    os.close(self.fd)
            except OSError:
                pass  # already closed by its owner


class SerialStream(ByteStream):
    """Adapts a pyserial port (any URL) to read-what-is-available semantics.

    The port is switched to non-blocking reads (``timeout = 0``); waiting happens in ``select``
    on its file descriptor, or by polling ``in_waiting`` for ports without one (``loop://``).
    Ports with a descriptor also write without blocking (``write_timeout = 0`` after ``select``
    says the line has room), so ``write_some`` returns within its timeout; ports without one
    (``loop://``, ``rfc2217://``) write whole pieces. A port closed or failing under a read or
    write raises ``StreamClosed`` naming the port, never pyserial's internal errors.
    """

    def __init__(self, port, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        self.port = port
        self.poll_interval = poll_interval
        self.name = getattr(port, "port", None) or getattr(port, "name", None) or repr(port)
        self._closed = False
        port.timeout = 0
        try:
            self._fileno = port.fileno()
        except Exception:  # loop:// and rfc2217:// have no descriptor to select on
            self._fileno = None
        if self._fileno is not None:
            port.write_timeout = 0  # one non-blocking os.write per call, returning its count

    def _failed(self, action: str, exc: BaseException) -> Exception:
        """The error for a port that was closed (or failed) while ``action`` was under way."""
        if self._closed or not getattr(self.port, "is_open", True):
            text = f"serial port {self.name} was closed while {action}"
        else:
            text = f"serial port {self.name} failed while {action}"
        return StreamClosed(f"{text} ({type(exc).__name__}: {exc})")

    def read(self, max_bytes: int) -> bytes:
        if self._closed:
            raise StreamClosed(f"serial port {self.name} is closed: cannot read")
        try:
            if self._fileno is not None:
                ready, _, _ = select.select([self._fileno], [], [], self.poll_interval)
                if not ready:
                    return b""
                return bytes(self.port.read(max_bytes))
            deadline = time.monotonic() + self.poll_interval
            while not self.port.in_waiting:
                if time.monotonic() >= deadline:
                    return b""
                time.sleep(0.001)
            return bytes(self.port.read(max_bytes))
        except (OSError, TypeError, ValueError, AttributeError) as exc:
            raise self._failed("reading", exc) from None

    def write_some(self, data: bytes, timeout: float) -> int:
        if self._closed:
            raise StreamClosed(f"serial port {self.name} is closed: cannot write")
        if not data:
            return 0
        try:
            if self._fileno is None:
                self.port.write(data)
                return len(data)
            _, ready, _ = select.select([], [self._fileno], [], max(0.0, timeout))
            if not ready:
                return 0
            return self.port.write(data) or 0
        except (OSError, TypeError, ValueError, AttributeError) as exc:
            raise self._failed(f"writing {len(data)} bytes", exc) from None

    def write(self, data: bytes) -> None:
        write_all(self, data, self.poll_interval)

    def close(self) -> None:
        self._closed = True
        self.port.close()


class ThrottledStream(ByteStream):
    """Paces both directions of a stream to ``baud`` (10 bits per byte), like a UART line.

    Writes leave at most baud/10 bytes per second; reads hand out at most as many (the rest
    waits in the OS buffer, so the writer on the other side blocks as it would on a full line).
    """

    def __init__(self, inner, baud: int, bits_per_byte: int = BITS_PER_BYTE) -> None:
        if baud <= 0:
            raise ValueError(f"baud must be positive, got {baud!r}")
        self.inner = as_byte_stream(inner)
        self.baud = baud
        self.byte_time = float(bits_per_byte) / baud
        self.piece = max(16, int(baud / bits_per_byte / 200))  # about 5 ms of line time
        self._tx_clock = 0.0
        self._rx_clock = 0.0
        self._tx_lock = threading.Lock()

    def _pace(self, clock: float, size: int) -> float:
        now = time.monotonic()
        start = max(now, clock)
        finish = start + size * self.byte_time
        if finish > now:
            time.sleep(finish - now)
        return finish

    def write_some(self, data: bytes, timeout: float) -> int:
        view = memoryview(bytes(data))
        deadline = time.monotonic() + timeout
        written = 0
        with self._tx_lock:
            while written < len(view):
                piece = view[written : written + self.piece]
                count = write_some(self.inner, piece, max(0.0, deadline - time.monotonic()))
                if count:
                    self._tx_clock = self._pace(self._tx_clock, count)
                    written += count
                if not count or time.monotonic() >= deadline:
                    break
        return written

    def write(self, data: bytes) -> None:
        write_all(self, data)

    def read(self, max_bytes: int) -> bytes:
        data = self.inner.read(min(max_bytes, self.piece))
        if data:
            self._rx_clock = self._pace(self._rx_clock, len(data))
        return data

    def close(self) -> None:
        self.inner.close()


def as_byte_stream(obj) -> ByteStream:
    """Wrap a pyserial port into a SerialStream; pass byte streams through unchanged."""
    if isinstance(obj, ByteStream):
        return obj
    if hasattr(obj, "in_waiting") and hasattr(obj, "read") and hasattr(obj, "write"):
        return SerialStream(obj)
    if hasattr(obj, "read") and hasattr(obj, "write") and hasattr(obj, "close"):
        return obj
    raise TypeError(f"expected a pyserial port or a byte stream with read/write/close, got {obj!r}")


def make_raw(fd: int, baudrate: int | None = None) -> None:
    """Put a terminal in raw 8N1 mode (no echo, no line editing, no flow control, no signals)."""
    attrs = termios.tcgetattr(fd)
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
        | termios.IXANY
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | getattr(termios, "CRTSCTS", 0))
    cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
    cc = list(cc)
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    if baudrate is not None:
        speed = getattr(termios, f"B{baudrate}", None)
        if speed is None:
            raise ValueError(f"baud rate {baudrate} has no termios constant on this system")
        ispeed = ospeed = speed
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def open_tty(path: str, baudrate: int = 115200) -> FdStream:
    """Open a serial device with termios only (the board-side fallback when pyserial is missing)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open serial device {path}: {exc.strerror}") from None
    try:
        make_raw(fd, baudrate)
    except Exception:
        os.close(fd)
        raise
    return FdStream(fd)


NETWORK_SCHEMES = ("socket", "rfc2217")  # pyserial URLs of a port behind host:PORT


def check_network_url(url: str) -> None:
    """OSError naming ``url`` when a socket:// or rfc2217:// URL lacks a host:PORT with PORT
    from 1 to 65535 (pyserial's own message for it says nothing of the port)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in NETWORK_SCHEMES:
        return
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port outside 0-65535 or not a number
        port = None
    if not port or not parts.hostname:
        raise OSError(f"cannot open serial port {url}: a {scheme}:// URL needs HOST:PORT "
                      "with PORT from 1 to 65535")


def open_port(url: str, baudrate: int = 115200) -> ByteStream:
    """Open a device path or pyserial URL as a byte stream (pyserial if present, else termios)."""
    try:
        import serial
    except ImportError:
        if "://" in url:
            raise RuntimeError(
                f"pyserial is needed to open {url}; install pyserial or give a device path"
            ) from None
        return open_tty(url, baudrate)
    check_network_url(url)
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=0)
    except (serial.SerialException, ValueError) as exc:
        raise OSError(f"cannot open serial port {url}: {exc}") from None
    return SerialStream(port)
