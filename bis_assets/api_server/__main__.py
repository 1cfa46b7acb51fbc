"""Serve the three storefront catalogs locally: ``python -m bis_assets.api_server``."""

import argparse
import threading

from bis_assets.api_server.catalog import storefront_names, storefront_rows
from bis_assets.api_server.server import BackInStockServer


def main(argv: list[str] | None = None) -> None:
    """Start the server with one demo account per storefront until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m bis_assets.api_server")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0, help="notification figures")
    args = parser.parse_args(argv)

    server = BackInStockServer(port=args.port).start()
    for name in storefront_names():
        # Local fake tokens, safe to show: they open nothing but this server.
        token = f"demo-{name}"
        server.add_account(token, storefront_rows(name, args.seed), name=name)
        print(f"{name}: token {token}")
    print(f"Serving {server.base_url}/api/variants (Ctrl-C to stop)", flush=True)

    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
