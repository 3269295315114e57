"""Signing without a server: a signature covers the queue, id, function, payload and options; key
rotation; keys never shown. (Workers refusing unsigned or altered jobs: tests/test_security.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterq import Signer
from clusterq.signing import make_signer, read_key_file

KEY = b"k" * 32


def test_signing_key_must_not_be_empty_and_is_never_shown() -> None:
    with pytest.raises(ValueError):
        Signer(b"")
    with pytest.raises(ValueError):
        Signer([])
    assert "k" * 8 not in repr(Signer(KEY))


FIELDS = ("emails", "job-1", "jobs.add", b"[[1,2],{}]", '{"timeout":5}')


def test_a_signature_verifies_and_any_changed_field_breaks_it() -> None:
    signer = Signer(KEY)
    signature = signer.sign(*FIELDS)
    assert signature.startswith("v1:") and signer.problem(*FIELDS, signature) is None
    assert signer.problem(*FIELDS, signature.encode()) is None  # as read from Redis
    for index, changed in enumerate(("other", "job-2", "os.system", b"[[1,3],{}]", '{"timeout":500}')):
        fields = list(FIELDS)
        fields[index] = changed
        problem = signer.problem(*fields, signature)  # type: ignore[arg-type]
        assert problem is not None and "does not match" in problem, index


def test_fields_cannot_be_shifted_into_each_other() -> None:
    # Length prefixes: "ab" + "c" and "a" + "bc" sign differently.
    signer = Signer(KEY)
    assert signer.sign("q", "ab", "c", b"", "") != signer.sign("q", "a", "bc", b"", "")


def test_unsigned_and_malformed_signatures_say_why() -> None:
    signer = Signer(KEY)
    assert "not signed" in (signer.problem(*FIELDS, "") or "")
    assert "unknown format" in (signer.problem(*FIELDS, "v0:abc") or "")
    assert "unknown format" in (signer.problem(*FIELDS, "v1:") or "")


def test_during_a_key_rotation_the_first_key_signs_and_every_key_verifies() -> None:
    old, new = b"o" * 32, "n" * 32
    by_old = Signer(old).sign(*FIELDS)
    rotating = Signer([new, old])
    assert rotating.problem(*FIELDS, by_old) is None
    assert rotating.sign(*FIELDS) == Signer(new).sign(*FIELDS)
    assert Signer(new).problem(*FIELDS, by_old) is not None  # once the old key is dropped
    assert repr(rotating) == "Signer(2 key(s))"


def test_make_signer_and_key_files(tmp_path: Path) -> None:
    assert make_signer(None) is None
    signer = Signer(KEY)
    assert make_signer(signer) is signer
    path = tmp_path / "key"
    path.write_bytes(b"abc123\n")  # as `openssl rand -hex 32 > key` writes it
    assert read_key_file(path) == b"abc123"
    path.write_bytes(b"\n")
    with pytest.raises(ValueError, match="is empty"):
        read_key_file(path)
