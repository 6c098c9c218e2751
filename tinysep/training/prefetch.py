"""Make training batches on a worker thread while the model trains on the last one.

A plain thread and a bounded queue: numpy releases the interpreter lock in its heavy calls
and TensorFlow releases it while a step runs, so the two overlap. Making the batches inside
a ``tf.data`` generator dataset instead slows the steps themselves (`tinysep bench --section
train_step` compares the two).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

DEFAULT_DEPTH = 2  # batches made ahead of the step that will take them
_POLL_SECONDS = 0.1  # how often a blocked worker checks whether it was closed


class _Failed:
    """What the worker raised, carried to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


class _Exhausted:
    """The source iterator ended."""


class PrefetchedBatches:
    """An iterator over ``source``'s items, made ``depth`` ahead on a daemon thread, in the
    same order. An error the source raises is raised again by the ``next`` call that would
    have returned its item; ``close`` (or leaving a ``with`` block) stops the worker."""

    def __init__(self, source: Iterator, depth: int = DEFAULT_DEPTH):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._done = False
        self._worker = threading.Thread(target=self._fill, name="batch-prefetch", daemon=True)
        self._worker.start()

    def _put(self, item) -> bool:
        """Queue ``item`` unless closed first; whether it was queued."""
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self) -> None:
        while not self._closed.is_set():
            try:
                item = next(self._source)
            except StopIteration:
                self._put(_Exhausted())
                return
            except BaseException as exc:  # handed to the consumer, which decides
                self._put(_Failed(exc))
                return
            if not self._put(item):
                return

    def __iter__(self) -> PrefetchedBatches:
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _Exhausted):
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.error
        return item

    def close(self) -> None:
        """Stop the worker (it finishes the batch it is making) and drop what it made."""
        self._closed.set()
        self._done = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._worker.join(timeout=5.0)

    def __enter__(self) -> PrefetchedBatches:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
