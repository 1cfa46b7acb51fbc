"""Memory benchmark: the peak RSS of one account's sync, each size in its own process.

The child process runs the sync path the asset and the IO manager run:
``iter_pages`` into ``shape_rows`` into ``ensure_table`` and ``load``, and
reports its peak resident set up to the commit: ``VmHWM``, the high-water
mark of its own memory since it started. (``ru_maxrss`` would not do: Linux
carries it over ``exec`` from the parent that forked the child.) The API
server is another process and is not counted.
"""

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.common import Stopwatch, scratch_database
from bench.serve_synthetic import SyntheticServer, token_for

CHILD_TIMEOUT = 900.0
PACE = 1000.0  # requests a second: memory is measured here, not politeness
MIB = 2**20


@dataclass(frozen=True)
class MemoryResult:
    """One sync in a fresh process."""

    rows: int
    baseline_bytes: int  # peak RSS before the first request: the imports
    peak_bytes: int
    seconds: float

    @property
    def growth_bytes(self) -> int:
        return self.peak_bytes - self.baseline_bytes


def run(sizes: list[int]) -> list[MemoryResult]:
    """One child process per size, one after the other."""
    accounts = {f"memory-{rows}": rows for rows in sizes}
    results = []
    with SyntheticServer(accounts) as server, scratch_database("memory") as database:
        for account, rows in accounts.items():
            command = [
                sys.executable, "-m", "bench.memory", account,
                f"--base-url={server.base_url}", f"--database-url={database.dsn}",
            ]
            child = subprocess.run(
                command, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=True
            )
            result = MemoryResult(**json.loads(child.stdout.splitlines()[-1]))
            print(
                f"  memory {rows:>9,} rows  peak {result.peak_bytes / MIB:7.0f} MiB "
                f"(imports {result.baseline_bytes / MIB:.0f} MiB)  {result.seconds:6.1f} s",
                flush=True,
            )
            results.append(result)

    return results


def main(argv: list[str] | None = None) -> None:
    """The child: sync one account and print what it measured as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("account")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args(argv)

    # Imported here so that the parent, which only starts children, stays small.
    from bis_assets.client import BackInStockClient, ClientSettings
    from bis_assets.transform import shape_rows
    from bis_assets.warehouse import TableName, connect, ensure_table, load

    baseline = _peak_rss()
    watch = Stopwatch()
    settings = ClientSettings(base_url=args.base_url, requests_per_second=PACE)
    with BackInStockClient(args.account, token_for(args.account), settings) as client:
        rows = (row for page in client.iter_pages() for row in page.rows)
        shaped = shape_rows(rows, args.account, f"src-{args.account}", datetime.now(UTC))
    with connect(args.database_url) as connection:
        ensure_table(connection, TableName())
        load(connection, TableName(), shaped.frame, complete_accounts=[args.account])

    measured = MemoryResult(len(shaped.frame), baseline, _peak_rss(), watch.seconds)
    print(json.dumps(measured.__dict__))


def _peak_rss() -> int:
    """This process's peak resident set since it started, in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB

    raise RuntimeError("no VmHWM in /proc/self/status: peak RSS needs Linux")


if __name__ == "__main__":
    main()
