"""Subprocess side of the benchmark: one module per system, run as ``python -m peer_drivers.main``.

Standard library only outside each system's own module, since peers run in their own venv.
"""
