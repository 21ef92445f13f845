"""zAuth's failed sign-in counter as a pure class: the clock is a number passed in."""

from __future__ import annotations

import unittest

from zCLI.throttle import FailedSignIns


class TestFailedSignIns(unittest.TestCase):
    def test_waits_once_the_limit_is_reached(self) -> None:
        """Below the limit a key may try; at the limit it waits for its oldest failure."""
        counter = FailedSignIns(limit=3, window=60.0)
        for now in (0.0, 10.0):
            counter.fail("ada", now)
        self.assertEqual(counter.wait("ada", 15.0), 0.0)
        counter.fail("ada", 20.0)
        table = [(20.0, 40.0), (59.5, 0.5), (60.0, 0.0), (65.0, 0.0)]
        for now, wait in table:
            with self.subTest(now=now):
                self.assertEqual(counter.wait("ada", now), wait)

    def test_keys_are_counted_apart(self) -> None:
        """One key's failures never make another key wait."""
        counter = FailedSignIns(limit=1, window=60.0)
        counter.fail("ada", 0.0)
        self.assertEqual((counter.wait("ada", 1.0), counter.wait("bo", 1.0)), (59.0, 0.0))

    def test_clear_forgets_a_key(self) -> None:
        """After clear, a key may try again at once."""
        counter = FailedSignIns(limit=1, window=60.0)
        counter.fail("ada", 0.0)
        counter.clear("ada")
        counter.clear("never-seen")
        self.assertEqual((counter.wait("ada", 1.0), len(counter)), (0.0, 0))

    def test_a_key_keeps_only_limit_failures(self) -> None:
        """Failures beyond the limit replace the oldest, so a key's memory stays bounded."""
        counter = FailedSignIns(limit=2, window=60.0)
        for now in range(100):
            counter.fail("ada", float(now))
        # The last two failures (98 and 99) decide: the wait ends 60 s after 98.
        self.assertEqual(counter.wait("ada", 100.0), 58.0)

    def test_expired_keys_are_pruned(self) -> None:
        """A key whose failures all left the window is dropped at the next failure."""
        counter = FailedSignIns(limit=5, window=60.0)
        counter.fail("ada", 0.0)
        counter.fail("bo", 30.0)
        counter.fail("cy", 61.0)
        self.assertEqual(len(counter), 2)
        self.assertEqual(counter.wait("bo", 89.0), 0.0)
        self.assertEqual(len(counter), 2)
        self.assertEqual(counter.wait("bo", 90.0), 0.0)
        self.assertEqual(len(counter), 1)

    def test_tracked_keys_are_capped(self) -> None:
        """At max_keys, a new key pushes out the key whose latest failure is oldest."""
        counter = FailedSignIns(limit=1, window=60.0, max_keys=3)
        for now, key in enumerate(["a", "b", "c"]):
            counter.fail(key, float(now))
        counter.fail("a", 3.0)  # "a" is now the most recent
        counter.fail("d", 4.0)
        self.assertEqual(len(counter), 3)
        waits = {key: counter.wait(key, 5.0) for key in "abcd"}
        self.assertEqual(waits, {"a": 58.0, "b": 0.0, "c": 57.0, "d": 59.0})

    def test_bad_parameters_are_refused(self) -> None:
        """A limit or key cap below 1, or a window of 0, is a programming error."""
        table = [(0, 60.0, 10), (1, 0.0, 10), (1, 60.0, 0)]
        for limit, window, max_keys in table:
            with self.subTest(limit=limit, window=window, max_keys=max_keys):
                with self.assertRaises(ValueError) as caught:
                    FailedSignIns(limit, window, max_keys)
                self.assertEqual(
                    str(caught.exception),
                    "limit and max_keys must be at least 1 and window above 0",
                )
