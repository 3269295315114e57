"""Queue names that would break a careless hash tag, and every key of a queue: shared by the key tests
without a server (tests/unit/test_key_slots.py) and against a cluster (tests/test_keys.py)."""

from __future__ import annotations

import random
import string

from clusterq.state import keys as K

HOSTILE_NAMES = [
    "{", "}", "}{", "{}", "{{}}", "a{b}c", "{a}", "}a{", "%", "%7B", "%7D", "%25", "{%7B}",
    "emails", "队列-🚀", "ñandú", "tab\tand\nnewline", "sp ace", ":", "cq:{x}:pending", " ",
    "x" * 1024, "{" * 1024, "}" * 1024, "é" * 512,
]


def random_names(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "{}%:-_ /\\" + "é中🚀"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(count)]


def all_keys(name: str) -> list[str]:
    qk = K.QueueKeys(name)
    return [qk.pending, qk.active, qk.finished, qk.failed, qk.canceled, qk.stats, qk.wake_channel,
            qk.job("some-id"), qk.job("{evil}"), qk.job("}{"), qk.job_prefix]
