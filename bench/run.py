#!/usr/bin/env python
"""Benchmark clusterq against RQ, Celery, Dramatiq, Huey and arq: ``python bench/run.py [--quick]``.

See bench/README.md. Run it with an interpreter where clusterq is importable (its venv, or
``PYTHONPATH=src``); the peers are installed into bench/.peers-venv by the bench itself.
"""

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import clusterq  # noqa: F401
except ImportError:  # running from a checkout without installing: use its src/
    sys.path.insert(1, str(BENCH_DIR.parent / "src"))

from benchkit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
