"""Our API server with synthetic accounts, in a process of its own.

As a program (``python -m bench.serve_synthetic --account NAME:ROWS ...``) it
serves the accounts on 127.0.0.1, prints one JSON line with its address, and
then obeys lines on stdin: ``log`` prints the request log since the last
``log`` as one JSON line, ``stop`` (or the end of stdin) stops it. It stops
by itself after ``--lifetime`` seconds whatever happens. ``SyntheticServer``
is the handle the benchmarks use; the tokens are local fakes.
"""

import argparse
import json
import subprocess
import sys
import threading
from dataclasses import dataclass

from bis_assets.api_server import BackInStockServer, iter_synthetic_rows

DEFAULT_LIFETIME = 1800.0


def token_for(account: str) -> str:
    """The local fake token of a synthetic account."""
    return f"bench-{account}"


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server logged it (its start, in the server's clock)."""

    time: float
    page: int | None
    status: int | None
    account: str | None


class SyntheticServer:
    """A ``serve_synthetic`` process: start it, read its log, stop it.

    ``accounts`` maps each account to its number of rows; the n-th account's
    rows are ``iter_synthetic_rows(rows, seed=n)``.
    """

    def __init__(
        self,
        accounts: dict[str, int],
        latency: float = 0.0,
        max_per_page: int = 250,
        lifetime: float = DEFAULT_LIFETIME,
    ) -> None:
        command = [sys.executable, "-m", "bench.serve_synthetic"]
        command += [
            f"--account={name}:{rows}:{seed}"
            for seed, (name, rows) in enumerate(accounts.items())
        ]
        command += [f"--latency={latency}", f"--max-per-page={max_per_page}"]
        command += [f"--lifetime={lifetime}"]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.base_url = json.loads(self._process.stdout.readline())["base_url"]

    def take_log(self) -> list[LoggedRequest]:
        """The requests served since the last call, oldest first."""
        self._process.stdin.write("log\n")
        self._process.stdin.flush()

        return [LoggedRequest(*entry) for entry in json.loads(self._process.stdout.readline())]

    def stop(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.write("stop\n")
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()  # only the process this handle started
                self._process.wait()

    def __enter__(self) -> "SyntheticServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_synthetic")
    parser.add_argument("--account", action="append", default=[], help="NAME:ROWS[:SEED]")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--max-per-page", type=int, default=250)
    parser.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME)
    args = parser.parse_args(argv)

    server = BackInStockServer(max_per_page=args.max_per_page, latency=args.latency)
    for spec in args.account:
        name, rows, *seed = spec.split(":")
        rows_of = iter_synthetic_rows(int(rows), int(seed[0]) if seed else 0)
        server.add_account(token_for(name), list(rows_of), name=name)
    server.start()
    print(json.dumps({"base_url": server.base_url}), flush=True)

    stopped = threading.Event()
    deadline = threading.Timer(args.lifetime, stopped.set)
    deadline.daemon = True
    deadline.start()
    threading.Thread(target=_obey, args=(server, stopped), daemon=True).start()
    stopped.wait()
    server.stop()
    sys.exit(0)


def _obey(server: BackInStockServer, stopped: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() != "log":
            break
        records = server.requests  # asked between runs, when no request is in flight
        server.reset_log()
        entries = [[r.time, r.page, r.status, r.account] for r in records]
        print(json.dumps(entries), flush=True)
    stopped.set()


if __name__ == "__main__":
    main()
