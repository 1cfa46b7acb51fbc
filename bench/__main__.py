"""``python -m bench [--quick]``: run every benchmark and write the report."""

from bench.run_all import main

raise SystemExit(main())
