"""The Python-Lua contract: each transition's description (clusterq.state.transitions) against its .lua file.

Pure parsing, no server (the fast tier: ``pytest -m unit``). For every script: the header's ``KEYS[i] name:``
lines, the ``local name = KEYS[i]`` bindings and the description's key names agree, in order; so do the
fixed ARGV, the repeating group (its width, its field names, the step of every loop over ARGV), and the
``local CODE = {...}`` table with the description's IntEnum. The body past the bindings reads only names:
a ``KEYS[n]`` or ``ARGV[n]`` there is an undescribed key or argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clusterq.state import keys as K
from clusterq.state import scripts as S
from clusterq.state import store as T
from clusterq.state import transitions as TR

pytestmark = pytest.mark.unit

SCRIPTS = Path(S.__file__).parent
DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

_KEY_LINE = re.compile(r"^KEYS\[(\d+)\] (\w+):", re.M)
_ARG_LINE = re.compile(r"^ARGV\[(\d+)\] (\w+):", re.M)
_GROUP_LINE = re.compile(r"^ARGV\[([\w+]+)\.\.\] \w+ \((\d+) per \w+\): ([\w, ]+)$", re.M)
_BINDING = re.compile(r"^local (\w+) = .*?\b(KEYS|ARGV)\[(\d+)\]")
_REPLY_LINE = re.compile(r"^\s+[\w ]+ \((\d+) (?:per \w+|values)\): ([\w, ]+)$", re.M)
_CODE_TABLE = re.compile(r"^local CODE = \{(.*)\}$", re.M)
_ARGV_LOOP = re.compile(r"\bfor (\w+) = [^,]+, #ARGV(?:[^,]*), (-?\d+) do\b|\bfor (\w+) = [^,]+, #ARGV do\b")


def _strip_comment(line: str) -> str:
    # No script has "--" inside a string, so a comment starts at the first "--".
    return line.split("--", 1)[0].rstrip()


@dataclass
class Parsed:
    header: str
    keys: dict[int, str] = field(default_factory=dict)  # from the header
    args: dict[int, str] = field(default_factory=dict)
    group: tuple[str, ...] = ()
    group_start: str = ""
    bound_keys: dict[int, str] = field(default_factory=dict)
    bound_args: dict[int, str] = field(default_factory=dict)
    body: list[str] = field(default_factory=list)  # code lines past the header, bindings left out
    codes: dict[str, int] | None = None


def parse(text: str) -> Parsed:
    header = text[text.index("--[[") : text.index("]]")]
    parsed = Parsed(header)
    parsed.keys = {int(i): name for i, name in _KEY_LINE.findall(header)}
    parsed.args = {int(i): name for i, name in _ARG_LINE.findall(header)}
    groups = _GROUP_LINE.findall(header)
    assert len(groups) <= 1, "at most one repeating ARGV group"
    if groups:
        start, width, names = groups[0]
        parsed.group_start = start
        parsed.group = tuple(n.strip() for n in names.split(","))
        assert int(width) == len(parsed.group), f"the group says {width} per item but names {len(parsed.group)}"
    for line in text[text.index("]]") + 2 :].splitlines():
        code = _strip_comment(line)
        binding = _BINDING.match(code)
        if binding and code.count("[") == 1:
            name, kind, index = binding.groups()
            target = parsed.bound_keys if kind == "KEYS" else parsed.bound_args
            assert int(index) not in target, f"{kind}[{index}] bound twice"
            target[int(index)] = name
            continue
        table = _CODE_TABLE.match(code)
        if table:
            parsed.codes = {name: int(value) for name, value in re.findall(r"(\w+) = (-?\d+)", table.group(1))}
            continue
        if code.strip():
            parsed.body.append(code)
    return parsed


def problems(transition: TR.Transition, text: str) -> list[str]:
    """Every way ``text`` (a script's source, includes not expanded) disagrees with ``transition``."""
    found: list[str] = []
    p = parse(text)
    keys = tuple(p.keys[i] for i in sorted(p.keys))
    if sorted(p.keys) != list(range(1, len(p.keys) + 1)):
        found.append(f"header KEYS are not numbered 1..n: {sorted(p.keys)}")
    if keys != transition.keys:
        found.append(f"header KEYS {keys} != described {transition.keys}")
    if p.bound_keys != dict(enumerate(transition.keys, 1)):
        found.append(f"bound KEYS {p.bound_keys} != described {dict(enumerate(transition.keys, 1))}")
    args = tuple(p.args[i] for i in sorted(p.args))
    if args != transition.args:
        found.append(f"header ARGV {args} != described {transition.args}")
    if p.bound_args != dict(enumerate(transition.args, 1)):
        found.append(f"bound ARGV {p.bound_args} != described {dict(enumerate(transition.args, 1))}")
    if p.group != transition.group:
        found.append(f"header ARGV group {p.group} != described {transition.group}")
    if p.group and p.group_start.isdigit() and int(p.group_start) != len(transition.args) + 1:
        found.append(f"the group starts at ARGV[{p.group_start}], after {len(transition.args)} fixed values")
    width = len(transition.group)
    for line in p.body:
        if "KEYS[" in line:
            found.append(f"undescribed key (bind it by name at the top): {line.strip()}")
        if re.search(r"ARGV\[\d", line):
            found.append(f"undescribed argument (bind it by name at the top): {line.strip()}")
        for match in _ARGV_LOOP.finditer(line):
            step = abs(int(match.group(2) or 1))
            if step != width:
                found.append(f"a loop over ARGV steps by {step}, the described group is {width} wide")
        for offset in re.findall(r"ARGV\[\w+ \+ (\d+)\]", line):
            if int(offset) >= width:
                found.append(f"ARGV[i + {offset}] is past the described group of {width}: {line.strip()}")
    replies = _REPLY_LINE.findall(p.header[p.header.index("Returns:") :]) if "Returns:" in p.header else []
    named = [tuple(n.strip() for n in names.split(",")) for width, names in replies
             if int(width) == len(names.split(","))]
    if len(named) != len(replies):
        found.append("the header's reply line gives a count that is not the number of names it lists")
    if tuple(named[0] if named else ()) != transition.reply:
        found.append(f"the header's reply values {named} != described {transition.reply}")
    described = None if transition.codes is None else {m.name: m.value for m in transition.codes}
    if p.codes != described:
        found.append(f"Lua CODE table {p.codes} != described {described}")
    body = "\n".join(p.body)
    used = set(re.findall(r"\bCODE\.(\w+)", body))
    if p.codes is not None:
        if used != set(p.codes):
            found.append(f"CODE members used {sorted(used)} != declared {sorted(p.codes)}")
        for bare in re.findall(r"return \{?-?\d+\b|out\[#out \+ 1\] = -?\d+\b", body):
            found.append(f"a bare return code (use CODE.<NAME>): {bare}")
        returns = p.header[p.header.index("Returns:") :]
        found.extend(f"the header's Returns does not name {name}" for name in p.codes if name not in returns)
    elif used:
        found.append(f"CODE.{sorted(used)} used without a CODE table")
    return found


def _source(transition: TR.Transition) -> str:
    return (SCRIPTS / f"{transition.name}.lua").read_text()


# --- every description against its script ----------------------------------------------------------

def test_every_script_is_described_once() -> None:
    assert sorted(t.name for t in TR.ALL) == sorted(s.name for s in S.ALL)
    assert sorted(p.stem for p in SCRIPTS.glob("*.lua")) == sorted(s.name for s in S.ALL)


@pytest.mark.parametrize("transition", TR.ALL, ids=lambda t: t.name)
def test_the_script_matches_its_description(transition: TR.Transition) -> None:
    assert problems(transition, _source(transition)) == []


@pytest.mark.parametrize("part", sorted(SCRIPTS.glob("lib/*.lua")), ids=lambda p: p.stem)
def test_library_parts_take_keys_and_arguments_only_as_parameters(part: Path) -> None:
    code = "\n".join(_strip_comment(line) for line in part.read_text().split("]]", 1)[1].splitlines())
    assert "KEYS" not in code and "ARGV" not in code


# --- the check catches each kind of drift -------------------------------------------------------------

def _mutated(transition: TR.Transition, old: str, new: str) -> list[str]:
    text = _source(transition)
    assert old in text
    return problems(transition, text.replace(old, new, 1))


def test_an_undescribed_key_used_in_the_body_is_caught() -> None:
    found = _mutated(TR.ENQUEUE, "return created", 'redis.call("DEL", KEYS[6])\nreturn created')
    assert any("undescribed key" in p for p in found)


def test_a_key_bound_but_not_described_is_caught() -> None:
    found = _mutated(TR.EXTEND, "local job_prefix = KEYS[2]\n", "local job_prefix = KEYS[2]\nlocal extra = KEYS[3]\n")
    assert any("bound KEYS" in p for p in found)


def test_keys_out_of_order_are_caught() -> None:
    found = _mutated(TR.STOP, "local active = KEYS[2]\nlocal wake_channel = KEYS[3]",
                     "local active = KEYS[3]\nlocal wake_channel = KEYS[2]")
    assert any("bound KEYS" in p for p in found)


def test_a_wrong_group_width_is_caught() -> None:
    assert any("steps by 7" in p for p in _mutated(TR.COMPLETE, "for i = 1, #ARGV, 8 do", "for i = 1, #ARGV, 7 do"))
    assert any("past the described group" in p for p in _mutated(TR.EXTEND, "ARGV[i + 1]", "ARGV[i + 2]"))


def test_an_undescribed_argument_is_caught() -> None:
    found = _mutated(TR.STOP, 'redis.call("HSET", key, "sp", reason)', 'redis.call("HSET", key, "sp", ARGV[3])')
    assert any("undescribed argument" in p for p in found)


def test_a_return_code_missing_from_the_enum_is_caught() -> None:
    found = _mutated(TR.STOP, "NOT_RUNNING = -1}", "NOT_RUNNING = -1, GONE = 5}")
    assert any("CODE table" in p for p in found)
    assert any("bare return code" in p for p in _mutated(TR.STOP, "return CODE.NO_SUCH_JOB", "return 0"))


# --- builders and parsers (pure) ------------------------------------------------------------------------

def test_calls_are_built_from_names() -> None:
    qk = K.QueueKeys("orders")
    call = T.cancel_call(qk, "j1", 5000, "ok")
    assert call.keys == tuple(getattr(qk, n) for n in TR.CANCEL.keys)
    assert dict(zip(TR.CANCEL.args, call.args)) == {"job_id": "j1", "keep_ms": 5000, "dependents": "ok"}
    job = T.NewJob("a", "m.f")
    assert len(job.argv()) == len(TR.JOB_FIELDS)
    assert len(T.Outcome("a", 1, "finished", b"", 0).argv()) == len(TR.OUTCOME_FIELDS)
    call = T.enqueue_call(qk, [job, job])
    assert len(call.args) == len(TR.ENQUEUE.args) + 2 * len(TR.ENQUEUE.group)


def test_a_call_missing_a_name_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match="job_id"):
        TR.STOP.call(K.QueueKeys("q"), reason="r")
    with pytest.raises(TypeError, match="no value for key 'debounce'"):
        TR.DEBOUNCE.call(K.QueueKeys("q"))
    with pytest.raises(TypeError, match="2 values"):
        TR.EXTEND.call(K.QueueKeys("q"), [("id",)], lease_ms=1)


def test_replies_parse_into_named_results() -> None:
    assert TR.parse_complete([1, 2, 0, 3]) == [TR.CompleteCode.RECORDED, TR.CompleteCode.NOTIFY,
                                               TR.CompleteCode.LEASE_LOST, TR.CompleteCode.AGAIN]
    assert TR.parse_schedule([5, 1, -1]) == TR.ScheduleReply(5, [TR.Created.CREATED, TR.Created.DUPLICATE])
    assert TR.parse_cron_tick([3, 10, -1]) == TR.CronTickReply(TR.CronTickCode.EARLY, 10, -1)
    assert TR.parse_promote_reply([2, 1500, 1000]).due_in_s == 0.5
    assert TR.parse_take("q", "j", []) is None
    lease = TR.parse_lease_reply("q", [3, 0, b"j", 2, b"m.f", b"", b"", b"", b"", 0])
    assert lease.remaining == 3 and lease.jobs[0].id == "j" and lease.jobs[0].token == 2
    assert TR.parse_recover([1, 2, 1500, b"a", b"b"]) == TR.RecoverReply(1, 2, 1500, ["a", "b"])
    assert TR.CANCEL.code(-1) is TR.CancelCode.ALREADY_ENDED


def test_lease_and_take_replies_fill_each_named_field() -> None:
    values = {"id": "j", "token": 2, "func": "m.f", "payload": b"[1]", "options": b"{}", "signature": b"v1:x",
              "headers": b'{"a":"b"}', "retries": 3}
    job = TR.parse_lease_reply("q", [0, 0, *(values[name] for name in TR.LEASED_FIELDS)]).jobs[0]
    assert {name: getattr(job, name) for name in TR.LEASED_FIELDS} == values
    taken = TR.parse_take("q", "j", [values[name] for name in TR.TAKEN_FIELDS])
    assert taken is not None
    assert {name: getattr(taken, name) for name in TR.TAKEN_FIELDS} == {n: values[n] for n in TR.TAKEN_FIELDS}


def test_a_reply_value_missing_from_the_header_is_caught() -> None:
    found = _mutated(TR.LEASE, "headers, retries\n", "headers\n")
    assert any("reply line" in p or "reply values" in p for p in found)


# --- the docs' transitions table ----------------------------------------------------------------------

def _doc_rows() -> dict[str, list[str]]:
    text = DOCS.read_text()
    table = text[text.index("## Transitions") :]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(\w+)\.lua`", cells[0]) if line.startswith("|") else None
        if match:
            rows[match.group(1)] = cells
    return rows


@pytest.mark.parametrize("transition", TR.ALL, ids=lambda t: t.name)
def test_the_architecture_table_lists_each_scripts_keys_and_codes(transition: TR.Transition) -> None:
    rows = _doc_rows()
    assert transition.name in rows, f"docs/architecture.md has no row for {transition.name}.lua"
    _, keys, _what, returns = rows[transition.name]
    assert keys == ", ".join(transition.keys), "the KEYS column names the described keys, in order"
    for member in transition.codes or ():
        assert member.name in returns, f"the Returns column names {member.name}"
    for name in transition.reply:
        assert name in returns, f"the Returns column names the reply's {name}"


# --- scripts check before they write --------------------------------------------------------------------

READ_ONLY = {"results", "outbox_due", "gauges"}


@pytest.mark.parametrize("transition", [t for t in TR.ALL if t.name not in READ_ONLY], ids=lambda t: t.name)
def test_every_writing_script_checks_its_keys_before_writing_and_says_so(transition: TR.Transition) -> None:
    text = _source(transition)
    assert "--!include check_types" in text, "check the keys' types before the first write (lib/check_types.lua)"
    assert "\nErrors" in parse(text).header, "the header lists what the script refuses (an Errors: section)"


def test_a_wrong_type_refusal_is_read_back_by_name() -> None:
    lua = (SCRIPTS / "lib" / "check_types.lua").read_text()
    for piece in ('"WRONGTYPE "', '": key "', '" holds a "', '", not a "', '"; nothing was written"'):
        assert piece in lua, "transitions.broken_key reads the message check_types.lua writes"
    message = "WRONGTYPE lease: key cq:{a b}:active holds a string, not a zset; nothing was written"
    assert TR.broken_key(message) == TR.BrokenKey("lease", "cq:{a b}:active", "string", "zset")
    assert TR.broken_key("WRONGTYPE Operation against a key holding the wrong kind of value") is None


def test_the_history_expiry_in_lua_is_the_documented_retention() -> None:
    part = (SCRIPTS / "lib" / "count_minute.lua").read_text()
    assert f'"EXPIRE", key, {K.HISTORY_RETENTION_S})' in part
    assert K.QueueKeys("q").counts(5).startswith(K.QueueKeys("q").base + ":")
    call = T.enqueue_call(K.QueueKeys("q"), [T.NewJob("a", "m.f")])
    assert K.key_slot(call.keys[TR.ENQUEUE.keys.index("counts")]) == K.queue_slot("q")
