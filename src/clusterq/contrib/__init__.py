"""Framework integrations: :mod:`clusterq.contrib.django`, :mod:`clusterq.contrib.flask` and
:mod:`clusterq.contrib.fastapi` (each needs its extra: ``pip install 'clusterq[django]'``...).

This package sits at the top of the layering, next to the CLI: it may use anything in clusterq, and
nothing in clusterq imports it.
"""
