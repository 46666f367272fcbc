#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_tz (corpus/tz/): synthetic TZif files (RFC 8536), each after
the 8 bytes of an instant the harness starts its checks from.  Synthetic rather than copies of
/usr/share/zoneinfo, so that the repository holds no third-party data.  Run it from anywhere;
it rewrites the files."""

import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "tz")


def block(times, idxs, types, chars, width):
    fmt = ">q" if width == 8 else ">i"
    out = b"".join(struct.pack(fmt, t) for t in times)
    out += bytes(idxs)
    for off, dst, ci in types:
        out += struct.pack(">iBB", off, dst, ci)
    return out + chars


def tzif(version, transitions, types, footer):
    chars, types_ci = b"", []
    for off, dst, abbr in types:
        types_ci.append((off, dst, len(chars)))
        chars += abbr.encode() + b"\0"
    times = [t for t, _ in transitions]
    idxs = [i for _, i in transitions]
    counts = struct.pack(">6I", 0, 0, 0, len(times), len(types), len(chars))
    head = b"TZif" + version + b"\0" * 15 + counts
    if version == b"\0":
        return head + block(times, idxs, types_ci, chars, 4)
    v1 = b"TZif" + version + b"\0" * 15 + struct.pack(">6I", 0, 0, 0, 0, 1, 4)
    v1 += block([], [], [(types_ci[0][0], 0, 0)], b"LMT\0", 4)
    return (v1 + head + block(times, idxs, types_ci, chars, 8) + b"\n" + footer.encode()
            + b"\n")


SEEDS = {
    # A fixed offset, version 1 and version 2.
    "fixed_v1": (1893456000000, tzif(b"\0", [], [(28800, 0, "CST")], "")),
    "fixed_v2": (1893456000000, tzif(b"2", [], [(28800, 0, "CST")], "CST-8")),
    # New York's rules: a table to 2007, then the footer.
    "new_york": (1710054000000, tzif(b"2", [
        (-2717650800, 1), (1162105200, 2), (1173596400, 1), (1194156000, 2)],
        [(-17762, 0, "LMT"), (-14400, 1, "EDT"), (-18000, 0, "EST")],
        "EST5EDT,M3.2.0,M11.1.0")),
    # Southern hemisphere, a half-hour shift, and a quoted numeric name.
    "lord_howe": (1712419200000, tzif(b"2", [(1199000000, 1)],
        [(37800, 0, "+1030"), (39600, 1, "+11")], "<+1030>-10:30<+11>-11/0:30,M10.1.0,M4.1.0")),
    # Crossing the date line: a whole day skipped (Samoa, 2011).
    "date_line": (1325239200000, tzif(b"2", [(1325239200, 1)],
        [(-36000, 0, "-10"), (50400, 0, "+14")], "<+14>-14")),
    # The wall clock set back a whole day, as Alaska's was in 1867.
    "day_back": (1325257201000, tzif(b"2", [(1325257200, 1)],
        [(50400, 0, "+14"), (-36000, 0, "-10")], "<-10>10")),
    # Julian-day rules and a transition time beyond 24 hours.
    "julian": (1893456000000, tzif(b"3", [],
        [(7200, 0, "EET"), (10800, 1, "EEST")], "EET-2EEST,J60/26,J300/-1")),
    # Permanent daylight time written as an all-year rule (version 3).
    "all_year": (1893456000000, tzif(b"3", [],
        [(-18000, 1, "EDT")], "EST5EDT,0/0,J365/25")),
}

if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for name, (ms, data) in SEEDS.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(struct.pack("<q", ms) + data)
    print("wrote %d seeds to %s" % (len(SEEDS), HERE))
