"""``python -m clusterq.cli``: the command line."""

from clusterq.cli.main import main

raise SystemExit(main())
