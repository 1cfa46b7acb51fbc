"""Transform benchmark: ``shape_rows`` over synthetic rows, and where its time goes.

``python -m bench.shape --rows 200000 --profile`` prints the functions that
take the time, by cProfile.
"""

import argparse
import cProfile
import gc
import io
import pstats
import time
from dataclasses import dataclass

import pandas as pd

from bench.common import SYNCED_AT, Stopwatch
from bis_assets.api_server import synthetic_rows
from bis_assets.transform import shape_rows

PROFILE_LINES = 25
TIMES = 3  # shaping is all CPU: the best of three is what it costs on a quiet machine


@dataclass(frozen=True)
class ShapeResult:
    """One ``shape_rows`` call over rows already in memory."""

    rows: int
    seconds: float
    cpu_seconds: float


def run(rows: int) -> tuple[ShapeResult, pd.DataFrame]:
    """Shape ``rows`` synthetic rows, best of three; the frame goes on to the load."""
    given = synthetic_rows(rows)
    results = []
    for _ in range(TIMES):
        shaped = None  # the previous frame is freed before the next is timed
        gc.collect()
        watch, cpu = Stopwatch(), time.process_time()
        shaped = shape_rows(given, "bench", "src-bench", SYNCED_AT)
        results.append(ShapeResult(rows, watch.seconds, time.process_time() - cpu))
    best = min(results, key=lambda result: result.seconds)
    print(f"  shape {rows:>9,} rows  {best.seconds:7.2f} s (best of {TIMES})", flush=True)

    return best, shaped.frame


def profile(rows: int) -> str:
    """The cumulative cProfile of one ``shape_rows`` call, its top lines."""
    given = synthetic_rows(rows)
    profiler = cProfile.Profile()
    profiler.runcall(shape_rows, given, "bench", "src-bench", SYNCED_AT)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(PROFILE_LINES)

    return text.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shape")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    args = parser.parse_args(argv)

    print(profile(args.rows) if args.profile else run(args.rows)[0])


if __name__ == "__main__":
    main()
