"""Extract benchmark: concurrent paging against sequential, within a request budget.

Our API server runs in a process of its own with ``latency`` seconds per
request. The request rate is read from the server's own log: the most
requests that started within any one second.
"""

import bisect
from dataclasses import dataclass

from bench.common import Stopwatch
from bench.serve_synthetic import SyntheticServer, token_for
from bis_assets.api_server import iter_synthetic_rows
from bis_assets.client import BackInStockClient, ClientSettings

ACCOUNT = "extract"
PER_PAGE = 250


@dataclass(frozen=True)
class ExtractResult:
    """One way of paging through the account."""

    mode: str
    max_in_flight: int
    budget: float  # requests_per_second
    seconds: float
    rows: int
    pages: int
    requests: int
    busiest_second: int  # most requests that started within one second

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def run(rows: int, latency: float, modes: list[tuple[str, int, float]]) -> list[ExtractResult]:
    """Each ``(mode, max_in_flight, requests_per_second)`` once, in order."""
    expected = [row["variant_no"] for row in iter_synthetic_rows(rows)]
    results = []
    with SyntheticServer({ACCOUNT: rows}, latency=latency, max_per_page=PER_PAGE) as server:
        server.take_log()
        for mode, in_flight, budget in modes:
            result = _page_through(server, mode, in_flight, budget, expected)
            print(
                f"  extract {mode:<28} {result.seconds:7.2f} s  {result.rows_per_second:9,.0f}"
                f" rows/s  busiest second {result.busiest_second} requests",
                flush=True,
            )
            results.append(result)

    return results


def _page_through(
    server: SyntheticServer, mode: str, in_flight: int, budget: float, expected: list[int]
) -> ExtractResult:
    settings = ClientSettings(
        base_url=server.base_url,
        per_page=PER_PAGE,
        max_in_flight=in_flight,
        requests_per_second=budget,
    )
    numbers, variants = [], []
    with BackInStockClient(ACCOUNT, token_for(ACCOUNT), settings) as client:
        watch = Stopwatch()
        for page in client.iter_pages():
            numbers.append(page.number)
            variants.extend(row["variant_no"] for row in page.rows)
        seconds = watch.seconds

    assert numbers == list(range(1, len(numbers) + 1)), "pages came out of order"
    assert variants == expected, "rows came out of page order"
    starts = sorted(request.time for request in server.take_log())

    return ExtractResult(
        mode, in_flight, budget, seconds, len(variants), len(numbers), len(starts),
        busiest_second(starts),
    )


def busiest_second(starts: list[float]) -> int:
    """The most of the sorted ``starts`` within any window [t, t + 1 s)."""
    return max(
        (bisect.bisect_left(starts, start + 1.0) - first for first, start in enumerate(starts)),
        default=0,
    )
