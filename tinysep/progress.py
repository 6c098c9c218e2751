"""Progress for long work: a live bar on a terminal, a few plain lines in a log file.

A bar redraws many times a second, which turns a log file into megabytes of carriage
returns; when stderr is not a terminal the same progress is printed as one line each
time another ``line_every`` fraction of the work is done (and at the end).
"""

from __future__ import annotations

import sys
import time

LINE_EVERY = 0.1  # plain-line mode: one line per 10 % of the work


def _number(value: float) -> str:
    """``12`` for whole counts (clips, steps), ``12.5`` otherwise (seconds of audio)."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


class Progress:
    """``update(n)`` as work is done, ``close()`` at the end (or use ``with``)."""

    def __init__(self, total: float, desc: str, unit: str = "", enabled: bool = True,
                 stream=None, line_every: float = LINE_EVERY) -> None:
        self.total = float(total)
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0.0
        self.line_every = line_every
        self._next_line = line_every
        self._start = time.monotonic()
        self._bar = None
        self._postfix = ""
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            whole = self.total.is_integer()  # a count shows as 14/14, not 14.0/14.0
            self._bar = tqdm(total=int(self.total) if whole else self.total, desc=desc,
                             unit=unit, file=self.stream, dynamic_ncols=True, bar_format=None)

    def update(self, amount: float) -> None:
        """Another ``amount`` of the work is done."""
        self.update_to(self.done + amount)

    def update_to(self, done: float) -> None:
        """``done`` of the work is done so far (for callers that count in absolute terms,
        such as bytes sent or a fraction of a clip; no rounding piles up)."""
        amount, self.done = done - self.done, float(done)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(int(amount) if float(amount).is_integer() else amount)
            return
        fraction = self.done / self.total if self.total > 0 else 1.0
        if fraction + 1e-12 >= self._next_line and fraction < 1.0:
            self._line(fraction)
            while self._next_line <= fraction + 1e-12:
                self._next_line += self.line_every

    def postfix(self, text: str) -> None:
        """A short status after the bar (or at the end of the next plain line)."""
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def _line(self, fraction: float) -> None:
        elapsed = time.monotonic() - self._start
        tail = f"; {self._postfix}" if self._postfix else ""
        print(f"{self.desc}: {_number(self.done)}/{_number(self.total)} {self.unit} "
              f"({100 * fraction:.0f} %, {elapsed:.1f} s){tail}", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self._line(self.done / self.total if self.total > 0 else 1.0)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
