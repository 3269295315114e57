"""A job module that cannot be imported: a worker must fail its jobs with a reason, not crash."""

raise RuntimeError("broken_module is broken on purpose")


def never_reached():  # pragma: no cover
    return None
