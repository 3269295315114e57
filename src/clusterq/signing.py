"""Optional HMAC signing of jobs, so a worker runs only jobs written by a holder of the key.

Without signing, whoever can write to Redis can make a worker run any function its allowlist permits
with any arguments (and, with the pickle serializer, any code at all). With a key, the producer stores
an HMAC-SHA256 of what the job runs in the record (field ``sg``) and the worker checks it before it
imports the function or decodes the payload; a job that is unsigned or badly signed fails with a
:class:`~clusterq.exceptions.SignatureError` reason and nothing of it runs.

The signature covers the queue name, the job id, the function path, the payload, the options and the
headers hooks added (when there are any; see :mod:`clusterq.api.hooks`), each length-prefixed, so a
signed payload cannot be moved to another job, queue or function, and its time limit, retry policy or
headers cannot be changed. It does not cover ``meta`` (written by ``save_meta`` after
the job is created, and never passed to the function) nor the bookkeeping fields the scripts write.

Several keys may be given: the first signs, every one verifies, which lets a key be rotated without
stopping (give workers ``[new, old]``, then producers ``new``, then drop ``old``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Union

SIGNATURE_FIELD = "sg"
"""The job hash field holding the signature."""

KEY_ENV = "CLUSTERQ_SIGNING_KEY"
"""Environment variable the ``clusterq`` command reads a signing key from (the key itself)."""

_VERSION = "v1"
_DOMAIN = b"clusterq-job-v1"

SigningKey = Union[bytes, str, Sequence[Union[bytes, str]]]
"""One key (bytes, or str encoded as UTF-8) or several (the first signs, all verify)."""


def _as_bytes(value: bytes | str | bytearray | memoryview) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def _message(queue: str, job_id: str, func: str, payload: bytes, options: bytes | str,
             headers: bytes | str = b"") -> bytes:
    parts: tuple[bytes, ...] = (_DOMAIN, _as_bytes(queue), _as_bytes(job_id), _as_bytes(func), _as_bytes(payload),
                                 _as_bytes(options))
    if headers:  # a job without headers signs as before headers existed: old signatures stay valid
        parts = (*parts, _as_bytes(headers))
    # Length prefixes: no two different field tuples give the same message.
    return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


class Signer:
    """Signs and verifies job records with one or more HMAC keys."""

    def __init__(self, key: SigningKey) -> None:
        keys = [key] if isinstance(key, (bytes, str, bytearray)) else list(key)
        self.keys = [_as_bytes(k) for k in keys]
        if not self.keys or not all(self.keys):
            raise ValueError("a signing key must be non-empty bytes or str")

    def __repr__(self) -> str:  # never the key itself
        return f"Signer({len(self.keys)} key(s))"

    def sign(self, queue: str, job_id: str, func: str, payload: bytes, options: bytes | str,
             headers: bytes | str = b"") -> str:
        digest = hmac.new(self.keys[0], _message(queue, job_id, func, payload, options, headers), hashlib.sha256)
        return f"{_VERSION}:{digest.hexdigest()}"

    def problem(self, queue: str, job_id: str, func: str, payload: bytes, options: bytes | str,
                signature: bytes | str, headers: bytes | str = b"") -> str | None:
        """None if ``signature`` is valid under one of the keys, else why the job must not run."""
        text = _as_bytes(signature).decode("ascii", "replace")
        if not text:
            return "SignatureError: the job is not signed and this worker only runs signed jobs"
        version, _, given = text.partition(":")
        if version != _VERSION or not given:
            return f"SignatureError: the job's signature has an unknown format ({text[:16]!r}...)"
        message = _message(queue, job_id, func, payload, options, headers)
        for key in self.keys:
            expected = hmac.new(key, message, hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, given):
                return None
        return ("SignatureError: the job's signature does not match its queue, id, function, arguments, "
                "options and headers under this worker's key(s): it was written or changed by someone without "
                "the key")


def make_signer(key: SigningKey | Signer | None) -> Signer | None:
    """A :class:`Signer` for ``key`` (None stays None: signing off)."""
    if key is None or isinstance(key, Signer):
        return key
    return Signer(key)


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """A key from a file: its bytes, less a trailing newline (``openssl rand -hex 32 > key`` adds one)."""
    with open(path, "rb") as handle:
        key = handle.read().rstrip(b"\r\n")
    if not key:
        raise ValueError(f"signing key file {os.fspath(path)!r} is empty")
    return key


__all__ = ["KEY_ENV", "SIGNATURE_FIELD", "Signer", "SigningKey", "make_signer", "read_key_file"]
