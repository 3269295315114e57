"""Job functions of the benchmark, one module per system; imported by dotted path in the workers.

Every no-op job bumps a per-process counter in a memory-mapped file (no Redis traffic), so the bench can
tell when a system without a "burst" mode has run every job, and check that burst-mode systems did.
"""
