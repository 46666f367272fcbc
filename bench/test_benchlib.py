"""Unit tests of the harness's pure helpers (run by ctest as bench_lib)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def run(name, steal):
    return {"_cell": name, "steal_pct": steal, "throughput": 1.0}


class PickRoundTests(unittest.TestCase):
    def test_quiet_round_is_kept_at_once(self):
        a = [[run("jifen", 2.0), run("sqlite", 4.0)]]
        kept, discarded, again = B.pick_round(a, 15.0)
        self.assertEqual((kept, discarded, again), (a[0], [], False))

    def test_stolen_round_is_measured_again(self):
        a = [[run("jifen", 2.0), run("sqlite", 31.0)]]
        self.assertTrue(B.pick_round(a, 15.0)[2])

    def test_least_stolen_attempt_is_kept_and_the_rest_reported(self):
        first = [run("jifen", 20.0), run("sqlite", 40.0)]
        second = [run("jifen", 18.0), run("sqlite", 22.0)]
        third = [run("jifen", 30.0), run("sqlite", 25.0)]
        kept, discarded, again = B.pick_round([first, second, third], 15.0)
        self.assertIs(kept, second)
        self.assertEqual(discarded, first + third)
        self.assertTrue(again)

    def test_unmeasured_steal_never_asks_again(self):
        a = [[{"_cell": "jifen", "throughput": 1.0}]]
        self.assertEqual(B.round_steal(a[0]), None)
        self.assertFalse(B.pick_round(a, 15.0)[2])
        self.assertTrue(B.pick_round([[run("jifen", 0.0)]], -1.0)[2])

    def test_ties_keep_the_earlier_attempt(self):
        first, second = [run("jifen", 20.0)], [run("jifen", 20.0)]
        self.assertIs(B.pick_round([first, second], 15.0)[0], first)


if __name__ == "__main__":
    unittest.main()
