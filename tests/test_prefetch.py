"""The batch prefetcher: same items in the same order, errors handed to the consumer, and a
worker that stops when closed."""

import itertools
import threading
import time

import numpy as np
import pytest

from tinysep.data.synth import synthetic_clips
from tinysep.training.data import batches_from, prefetched_batches
from tinysep.training.prefetch import PrefetchedBatches


def workers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "batch-prefetch" and t.is_alive()]


def test_items_come_in_order_and_the_end_is_seen():
    assert list(PrefetchedBatches(iter(range(7)), depth=2)) == list(range(7))


def test_an_error_arrives_after_the_items_made_before_it():
    def source():
        yield "a"
        yield "b"
        raise OSError("Input/output error")

    made = PrefetchedBatches(source())
    assert [next(made), next(made)] == ["a", "b"]
    with pytest.raises(OSError, match="Input/output error"):
        next(made)
    with pytest.raises(StopIteration):  # nothing more after the error
        next(made)


def test_close_stops_a_worker_blocked_on_a_full_queue():
    produced = itertools.count()
    made = PrefetchedBatches(produced, depth=1)
    assert next(made) == 0
    time.sleep(0.2)  # the worker fills the queue and blocks
    made.close()
    assert not workers_alive()
    ahead = next(produced)
    time.sleep(0.3)
    assert next(produced) == ahead + 1  # nobody draws from the source any more
    with pytest.raises(StopIteration):
        next(made)


def test_a_with_block_closes_it():
    with PrefetchedBatches(itertools.count()) as made:
        next(made)
    assert not workers_alive()


def test_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth must be at least 1, got 0"):
        PrefetchedBatches(iter(()), depth=0)


def test_training_batches_are_the_ones_the_seed_and_step_decide():
    clips = synthetic_clips(3, 2.0, seed=5)
    augment = {"speed_probability": 0.5, "eq_probability": 0.5}
    direct = batches_from(clips, 4, 11, 2, 8000, augment)
    with prefetched_batches(clips, 4, 11, 2, 8000, augment) as made:
        for _ in range(3):
            want, got = next(direct), next(made)
            for a, b in zip(want, got, strict=True):
                np.testing.assert_array_equal(a, b)
    other = next(batches_from(clips, 5, 11, 2, 8000, augment))
    assert not np.array_equal(other[0], want[0])  # a different step draws another batch
