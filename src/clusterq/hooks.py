"""Public hooks (middleware) around enqueueing and running jobs: ``from clusterq.hooks import Hook,
register``. Documented in :mod:`clusterq.api.hooks`, where they live."""

from clusterq.api.hooks import (
    ENTRY_POINT_GROUP,
    EnqueueInfo,
    Hook,
    HookSet,
    JobInfo,
    decode_headers,
    discover,
    encode_headers,
    load_hook,
    register,
    report,
    unregister,
)

__all__ = ["ENTRY_POINT_GROUP", "EnqueueInfo", "Hook", "HookSet", "JobInfo", "decode_headers", "discover",
           "encode_headers", "load_hook", "register", "report",
           "unregister"]
