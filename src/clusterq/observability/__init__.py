"""Operating clusterq in production: Prometheus metrics (and, later, tracing, error reporting, health).

A layer between the worker and the dashboard/CLI: everything here is built on the public hooks
(:mod:`clusterq.api.hooks`) and the public query API; nothing monkeypatches clusterq's internals. The
optional libraries (``prometheus-client`` for the ``metrics`` extra) are imported by the module that needs
them, so ``import clusterq`` never requires them.
"""
