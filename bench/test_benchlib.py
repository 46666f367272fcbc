"""Unit tests of the harness's pure helpers (run by ctest as bench_lib)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import instructions  # noqa: E402
import report  # noqa: E402


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



METRICS = """# HELP jifen_wal_restarts_total Times the writer copied the whole WAL
# TYPE jifen_wal_restarts_total counter
jifen_wal_restarts_total 6
jifen_wal_restarts_forced_total 4
jifen_wal_restart_seconds_bucket{le="0.0001"} 3
jifen_wal_restart_seconds_sum 0.164724
jifen_wal_restart_seconds_count 38
"""


class WalMetricsTests(unittest.TestCase):
    def test_counters_are_read_and_differenced(self):
        before = B.parse_wal_metrics(METRICS)
        self.assertEqual(before, {"restarts": 6.0, "forced": 4.0, "restart_s": 0.164724})
        after = B.parse_wal_metrics(METRICS.replace(" 6\n", " 9\n")
                                    .replace("0.164724", "0.200724"))
        d = B.wal_delta(before, after)
        self.assertEqual(d["restarts"], 3.0)
        self.assertEqual(d["forced"], 0.0)
        self.assertAlmostEqual(d["restart_s"], 0.036)

    def test_missing_counter_or_reading_gives_none(self):
        self.assertIsNone(B.parse_wal_metrics("jifen_wal_restarts_total 1\n"))
        self.assertIsNone(B.wal_delta(None, B.parse_wal_metrics(METRICS)))


def cell(workload, system, throughput, cpu, conns=64):
    return {"workload": workload, "system": system, "throughput": throughput,
            "cpu_us_per_op": cpu, "conns": conns, "label": f"{workload} {system} {conns}"}


class FloorTargetTests(unittest.TestCase):
    """The W1f floor's lines in the targets: a target the floor misses is out of
    reach whatever the ledger costs; one it meets says only its ratio."""

    def lines(self, floor_tput, floor_cpus):
        res = [cell("W1", "jifen", 10000.0, 60.0), cell("W1", "pg-func", 5000.0, 120.0),
               cell("W1", "sqlite", 2000.0, 70.0)]
        res += [cell("W1f", "jifen", floor_tput * (i + 1) / len(floor_cpus), c, 16 << i)
                for i, c in enumerate(floor_cpus)]
        return {t["name"]: t for t in report.targets({"results": res})}

    def test_a_floor_below_the_target_puts_it_out_of_reach(self):
        t = self.lines(15000.0, [35.0, 30.0])
        pg, lite, cpu = (t["W1 max >= 4x pg-func max"], t["W1 max >= 8x sqlite max"],
                         t["CPU <= 20 us per durable earn"])
        self.assertEqual(pg["status"], "MISS")
        self.assertIn("the floor (W1f) 3.00x" + report.BEYOND, pg["value"])
        self.assertIn("the floor (W1f) 7.50x" + report.BEYOND, lite["value"])
        self.assertIn("the floor (W1f) 30.0 us" + report.BEYOND, cpu["value"])

    def test_a_floor_above_the_target_only_reports_its_ratio(self):
        t = self.lines(50000.0, [18.0])
        pg, lite, cpu = (t["W1 max >= 4x pg-func max"], t["W1 max >= 8x sqlite max"],
                         t["CPU <= 20 us per durable earn"])
        self.assertTrue(pg["value"].endswith("; the floor (W1f) 10.00x"))
        self.assertTrue(lite["value"].endswith("; the floor (W1f) 25.00x"))
        self.assertTrue(cpu["value"].endswith("; the floor (W1f) 18.0 us"))
        self.assertEqual(pg["status"], "MISS")

    def test_the_batch_floor_bounds_w5(self):
        res = [cell("W5", "jifen", 30000.0, 40.0, 4), cell("W5f", "jifen", 120000.0, 9.0, 4)]
        t = {x["name"]: x for x in report.targets({"results": res})}
        self.assertEqual(t["W5 batch >= 500,000 ops/s"]["value"],
                         "30,000 ops/s; the floor (W5f) 120,000 ops/s" + report.BEYOND)
        res[1]["throughput"] = 600000.0
        t = {x["name"]: x for x in report.targets({"results": res})}
        self.assertEqual(t["W5 batch >= 500,000 ops/s"]["value"],
                         "30,000 ops/s; the floor (W5f) 600,000 ops/s")

    def test_without_a_floor_the_lines_are_as_before(self):
        t = {x["name"]: x for x in report.targets({"results": [
            cell("W1", "jifen", 10000.0, 60.0), cell("W1", "pg-func", 5000.0, 120.0)]})}
        self.assertEqual(t["W1 max >= 4x pg-func max"]["value"], "2.00x (10,000 vs 5,000 ops/s)")
        self.assertNotIn("floor", t["CPU <= 20 us per durable earn"]["value"])


class P99FloorTests(unittest.TestCase):
    """The p99 target's line names the floor's p99 at W1o's rate (W1fo)."""

    def target(self, floor_p99):
        w1o = dict(cell("W1o", "jifen", 8000.0, 90.0), p99_ms=8.5, rate=8000)
        res = [cell("W1", "jifen", 16000.0, 80.0), w1o]
        if floor_p99 is not None:
            res.append(dict(cell("W1fo", "jifen", 8000.0, 50.0), p99_ms=floor_p99, rate=8000))
        return {t["name"]: t for t in report.targets({"results": res})}[
            "p99 <= 2 ms at half of W1 max"]

    def test_a_floor_over_the_target_puts_it_out_of_reach(self):
        t = self.target(2.34)
        self.assertEqual((t["status"], t["value"]),
                         ("MISS", "8.50 ms at 8,000/s; the floor (W1fo) 2.34 ms at 8,000/s"
                          + report.BEYOND))

    def test_a_floor_within_it_only_reports_its_p99(self):
        self.assertEqual(self.target(1.5)["value"],
                         "8.50 ms at 8,000/s; the floor (W1fo) 1.50 ms at 8,000/s")
        self.assertEqual(self.target(None)["value"], "8.50 ms at 8,000/s")


class HotTargetTests(unittest.TestCase):
    """W2 against W1: round by round beside it when W1b was measured, else
    against the W1 row's cell measured minutes before."""

    def target(self, w2_runs, w1b_runs):
        w2 = dict(cell("W2", "jifen", sorted(w2_runs)[len(w2_runs) // 2], 50.0),
                  throughput_runs=w2_runs)
        res = [cell("W1", "jifen", 20000.0, 60.0), cell("W1", "jifen", 25000.0, 55.0, 256), w2]
        if w1b_runs is not None:
            res.append(dict(cell("W1b", "jifen", 0.0, 60.0), throughput_runs=w1b_runs))
        return {t["name"]: t for t in report.targets({"results": res})}[
            "W2 hot >= 0.9x W1 (same connections)"]

    def test_a_slow_spell_over_both_rows_is_not_a_miss(self):
        # The machine ran at 80% of its W1 speed during W2's rounds: against
        # the W1 row (20,000) W2 looks 0.80x; beside W1 it is 1.00x.
        t = self.target([16000.0, 15000.0, 17000.0], [16000.0, 15000.0, 17000.0])
        self.assertEqual(t["status"], "ok")
        self.assertEqual(t["value"], "1.00x round by round beside W1 (1.00, 1.00, 1.00); "
                         "against the W1 row's cell 0.80x")

    def test_the_median_of_the_rounds_decides(self):
        t = self.target([8000.0, 17000.0, 9000.0], [10000.0, 17000.0, 11000.0])
        self.assertEqual(t["status"], "MISS")
        self.assertTrue(t["value"].startswith("0.82x round by round beside W1 (0.80, 1.00, 0.82)"))

    def test_without_w1b_the_w1_row_at_the_same_connections_is_used(self):
        t = self.target([16000.0, 15000.0, 17000.0], None)
        self.assertEqual((t["status"], t["value"]), ("MISS", "0.80x"))
        # Rounds that do not pair up (a run lost) fall back the same way.
        t = self.target([16000.0, 15000.0, 17000.0], [16000.0, 15000.0])
        self.assertEqual(t["value"], "0.80x")


class CallgrindTotalTests(unittest.TestCase):
    HEAD = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\nevents: Ir\n"

    def test_summary_line_is_the_total(self):
        text = self.HEAD + "summary: 390083285\n\nfn=(1) main\n0 12\n\ntotals: 390083285\n"
        self.assertEqual(instructions.callgrind_total(text), 390083285)

    def test_totals_line_when_no_summary(self):
        text = self.HEAD + "fn=(1) main\n0 12\n\ntotals: 77\n"
        self.assertEqual(instructions.callgrind_total(text), 77)

    def test_a_cost_line_is_never_taken_for_the_total(self):
        with self.assertRaises(ValueError):
            instructions.callgrind_total(self.HEAD + "fn=(1) main\n0 12\n")


if __name__ == "__main__":
    unittest.main()
