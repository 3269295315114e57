"""The dashboard over plain HTTP (httpx against uvicorn on loopback, real servers): pages on every
topology, bounded pages on bad input, CSRF and Origin checks, 405 on GET to an action, the audit log,
basic/bearer/session auth and roles, read-only mode, CSP with nonces, one ticker for every stream, the
CLI command and mounting inside another Starlette app."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from clusterq import CronScheduler, JobStatus, Periodic, Queue
from clusterq.dashboard import AuthConfig, Token, User, create_app, hash_password, hash_token
from clusterq.dashboard.actions import AUDIT_KEEP, audit_log
from clusterq.dashboard.auth import verify_password
from clusterq.dashboard.serve import check_bind
from clusterq.state import keys as K
from dashboard_support import serving, wait_for

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)


@pytest.fixture
def standalone_url(clusterq_standalone: Any) -> str:
    clusterq_standalone.flush()
    return str(clusterq_standalone.url)


@pytest.fixture
def http(standalone_url: str) -> Iterator[httpx.Client]:
    with serving(create_app(standalone_url)) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def csrf_of(client: httpx.Client, path: str = "/") -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert match, "no CSRF token on the page"
    return match.group(1)


def test_every_page_renders_on_each_topology_with_counts_slot_and_primary(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 1, 2)
    with serving(create_app(url)) as base, httpx.Client(base_url=base, timeout=30) as client:
        overview = client.get("/")
        assert overview.status_code == 200
        assert f">{K.queue_slot(qname)}<" in overview.text
        assert "maxmemory-policy" in overview.text
        for path, params in [("/queue", {"name": qname}), ("/queue", {"name": qname, "state": "failed"}),
                             ("/job", {"h": job.handle}), ("/workers", {}), ("/periodic", {}), ("/audit", {}),
                             ("/search", {"queue": qname, "state": "waiting", "func": "jobs.add"})]:
            reply = client.get(path, params=params)
            assert reply.status_code == 200, (path, reply.text[:300])
        assert job.id in client.get("/queue", params={"name": qname}).text
        counts = client.get("/api/counts").json()
        assert counts["queues"][qname]["waiting"] == 1


def test_a_get_on_an_action_is_405_and_a_post_without_token_or_from_elsewhere_is_403(
        http: httpx.Client, standalone_url: str, qname: str) -> None:
    q = Queue(qname, standalone_url)
    q.enqueue("jobs.noop")
    assert http.get("/action/suspend", params={"queue": qname}).status_code == 405
    token = csrf_of(http)
    assert http.post("/action/suspend", data={"queue": qname}).status_code == 403
    assert http.post("/action/suspend", data={"queue": qname, "csrf": "x" + token[1:]}).status_code == 403
    assert http.post("/action/suspend", data={"queue": qname, "csrf": token},
                     headers={"Origin": "http://evil.example"}).status_code == 403
    assert http.post("/action/suspend", data={"queue": qname, "csrf": token},
                     headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    with httpx.Client(base_url=str(http.base_url), timeout=30) as other:  # another browser: its own session
        assert other.post("/action/suspend", data={"queue": qname, "csrf": token}).status_code == 403
    assert not q.is_suspended and audit_log(q.connection) == []
    done = http.post("/action/suspend", data={"queue": qname, "csrf": token},
                     headers={"Origin": str(http.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 303 and q.is_suspended
    [entry] = audit_log(q.connection)
    assert (entry["who"], entry["action"], entry["target"]) == ("local", "suspend", qname)


def test_emptying_needs_the_queue_name_typed_and_the_audit_log_stays_bounded(
        http: httpx.Client, standalone_url: str, qname: str) -> None:
    q = Queue(qname, standalone_url)
    for _ in range(3):
        q.enqueue("jobs.noop")
    token = csrf_of(http)
    refused = http.post("/action/empty", data={"queue": qname, "state": "waiting", "confirm": "yes", "csrf": token})
    assert refused.status_code == 400 and q.count == 3
    done = http.post("/action/empty", data={"queue": qname, "state": "waiting", "confirm": qname, "csrf": token})
    assert done.status_code == 303 and q.count == 0
    assert audit_log(q.connection)[0]["count"] == 3
    for _ in range(AUDIT_KEEP + 5):
        http.post("/action/resume", data={"queue": qname, "csrf": token})
    assert q.connection.llen(K.AUDIT) == AUDIT_KEEP
    waiting = q.enqueue("jobs.noop")
    refused = http.post("/action/stop", data={"job": waiting.handle, "csrf": token})
    assert refused.status_code == 400 and "not running" in refused.text
    entry = audit_log(q.connection)[0]
    assert (entry["action"], entry["target"], entry["ok"]) == ("stop", waiting.handle, False)


def test_bad_input_gives_clear_pages_not_tracebacks(http: httpx.Client, standalone_url: str, qname: str) -> None:
    q = Queue(qname, standalone_url)
    big = q.enqueue("jobs.echo", "x" * (10 * 1024 * 1024))
    garbage = q.enqueue("jobs.noop")
    q.connection.hset(q.keys.job(garbage.id), mapping={"s": "nonsense", "c": "not-a-time", "p": "\x00garbage",
                                                       "n": "many", "o": "{"})
    page = http.get("/job", params={"h": big.handle})
    assert page.status_code == 200 and "the rest is not shown" in page.text and len(page.text) < 200_000
    assert http.get("/queue", params={"name": qname}).status_code == 200
    broken = http.get("/job", params={"h": garbage.handle})
    assert broken.status_code == 200 and "unreadable" in broken.text
    assert http.get("/job", params={"h": "no-slash"}).status_code == 404
    assert http.get("/job", params={"h": f"{qname}/missing"}).status_code == 404
    assert http.get("/queue", params={"name": qname, "state": "everything"}).status_code == 400
    assert http.get("/queue", params={"name": qname, "page": "-3"}).status_code == 200
    http.cookies.set("cq_session", "tampered.value")
    assert http.get("/").status_code == 200  # a new session, not an error
    for reply in (broken, page):
        assert "Traceback" not in reply.text


def test_a_search_stops_at_its_budget_and_says_where_to_go_on(http: httpx.Client, standalone_url: str,
                                                              qname: str) -> None:
    from clusterq.dashboard import data as D

    q = Queue(qname, standalone_url)
    q.enqueue_many([Queue.prepare_data("jobs.noop") for _ in range(D.SCAN_BUDGET + 10)])
    q.enqueue("jobs.add", 1, 1)
    first = http.get("/search", params={"queue": qname, "state": "waiting", "func": "jobs.add"})
    assert "stopped early" in first.text and "Continue" in first.text
    offset = re.search(r"offset=(\d+)", first.text)
    assert offset and int(offset.group(1)) == D.SCAN_BUDGET
    second = http.get("/search", params={"queue": qname, "state": "waiting", "func": "jobs.add",
                                         "offset": offset.group(1)})
    assert "reached the end" in second.text and second.text.count("jobs.add</td>") == 1
    found = http.get("/search", params={"q": q.get_job_ids(0, 1)[0]}, follow_redirects=False)
    assert found.status_code == 303 and "/job?h=" in found.headers["location"]


def test_pages_carry_a_nonce_csp_and_no_inline_script(http: httpx.Client) -> None:
    reply = http.get("/")
    csp = reply.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert f'nonce="{nonce.group(1)}"' in reply.text
    assert not INLINE_SCRIPT.search(reply.text)
    assert not re.search(r"<[^>]+\son[a-z]+=", reply.text), "an inline event handler"
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert http.get("/static/dashboard.js").status_code == 200


def test_basic_bearer_and_session_auth_with_roles(standalone_url: str, qname: str) -> None:
    q = Queue(qname, standalone_url)
    q.enqueue("jobs.noop")
    auth = AuthConfig(users=[User("op", hash_password("op-pass"), "operator"),
                             User("view", hash_password("view-pass"), "viewer")],
                      tokens=[Token("ci", hash_token("t0ken-ci"), "operator")])
    with serving(create_app(standalone_url, auth=auth)) as base, httpx.Client(base_url=base, timeout=30) as c:
        assert c.get("/api/counts").status_code == 401
        assert c.get("/", headers={"Accept": "text/html"}).status_code == 303
        assert c.get("/api/counts", auth=("op", "wrong")).status_code == 401
        assert c.get("/api/counts", auth=("nobody", "op-pass")).status_code == 401
        assert c.get("/api/counts", auth=("view", "view-pass")).status_code == 200
        assert c.get("/api/counts", headers={"Authorization": "Bearer nope"}).status_code == 401
        bearer = {"Authorization": "Bearer t0ken-ci"}
        assert c.post("/action/suspend", data={"queue": qname}, headers=bearer).status_code == 303
        assert q.is_suspended
        assert c.post("/action/empty", data={"queue": qname, "confirm": qname}, headers=bearer).status_code == 403
        token = csrf_of(c, "/login")
        assert c.post("/login", data={"user": "view", "password": "bad", "csrf": token}).status_code == 401
        assert c.post("/login", data={"user": "view", "password": "view-pass", "csrf": token}).status_code == 303
        token = csrf_of(c, "/")  # a new session id at login, so a new token
        assert 'data-action="resume"' not in c.get("/queue", params={"name": qname}).text
        assert c.post("/action/resume", data={"queue": qname, "csrf": token}).status_code == 403
        assert q.is_suspended
        assert c.post("/logout", data={"csrf": token}).status_code == 303
        assert c.get("/api/counts").status_code == 401


def test_read_only_hides_every_action_and_refuses_them(standalone_url: str, qname: str) -> None:
    q = Queue(qname, standalone_url)
    q.enqueue("jobs.noop")
    with serving(create_app(standalone_url, read_only=True)) as base, httpx.Client(base_url=base, timeout=30) as c:
        page = c.get("/queue", params={"name": qname})
        assert "data-action" not in page.text
        token = csrf_of(c, "/")
        assert c.post("/action/suspend", data={"queue": qname, "csrf": token}).status_code == 403
    assert not q.is_suspended


def test_one_ticker_feeds_every_stream(standalone_url: str, qname: str) -> None:
    Queue(qname, standalone_url).enqueue("jobs.noop")
    app = create_app(standalone_url, live_interval_s=0.2)

    async def read_events(base: str, n: int) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c, c.stream("GET", "/events") as stream:
            events = []
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == n:
                        return events
            return events

    async def three_tabs(base: str) -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(*(read_events(base, 4) for _ in range(3))))

    with serving(app) as base:
        tabs = asyncio.run(three_tabs(base))
    assert all(len(events) == 4 and events[0]["queues"][qname]["waiting"] == 1 for events in tabs)
    # Three tabs for four ticks each: one read per tick (plus the tick a late tab joined), never three
    assert app.state.ticker.reads <= 4 + 2


def test_the_cli_serves_and_refuses_other_addresses_without_auth(standalone_url: str,
                                                                 subprocess_env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="without a login"):
        check_bind("0.0.0.0", AuthConfig(), insecure=False)
    check_bind("0.0.0.0", AuthConfig(), insecure=True)
    refused = subprocess.run([sys.executable, "-m", "clusterq", "dashboard", "-u", standalone_url, "--host",
                              "0.0.0.0"], env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "without a login" in refused.stderr
    hashed = subprocess.run([sys.executable, "-m", "clusterq", "dashboard", "--hash-password"], input="s3cret\n",
                            env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert hashed.returncode == 0 and verify_password("s3cret", hashed.stdout.strip())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "clusterq", "dashboard", "-u", standalone_url, "--port",
                             str(port)], env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(up, "clusterq dashboard to answer")
    finally:
        proc.terminate()
        proc.wait(30)


def test_mounted_inside_another_app_every_link_and_form_carries_the_prefix(standalone_url: str,
                                                                           qname: str) -> None:
    q = Queue(qname, standalone_url)
    job = q.enqueue("jobs.fail")
    q.connection.hset(q.keys.job(job.id), "s", JobStatus.FAILED.value)
    outer = Starlette(routes=[Mount("/ops/jobs", create_app(standalone_url))])
    with serving(outer) as base, httpx.Client(base_url=base, timeout=30) as c:
        page = c.get("/ops/jobs/")
        assert page.status_code == 200
        links = re.findall(r'\s(?:href|action|src)="([^"]+)"', page.text)
        assert links and all(link.startswith("/ops/jobs/") for link in links), links
        assert c.get("/ops/jobs/static/dashboard.css").status_code == 200
        token = csrf_of(c, "/ops/jobs/")
        done = c.post("/ops/jobs/action/suspend", data={"queue": qname, "csrf": token})
        assert done.status_code == 303 and done.headers["location"].startswith("/ops/jobs/queue")
    assert q.is_suspended


def test_history_charts_oldest_age_dependents_and_group_are_shown(http: httpx.Client, standalone_url: str,
                                                                   qname: str) -> None:
    from clusterq import Group, Worker

    q = Queue(qname, standalone_url)
    q.enqueue("jobs.add", 1, 2)
    q.enqueue("jobs.fail", "broke")
    Worker([q], standalone_url, pool="thread", install_signal_handlers=False).work(burst=True)
    parent = q.enqueue("jobs.add", 2, 3)
    child = q.enqueue("jobs.add", 3, 4, depends_on=parent)
    group = Group.create(q)
    member = group.enqueue(q, "jobs.add", 4, 5)
    overview = http.get("/")
    assert overview.text.count('<svg class="chart"') == 2
    assert re.search(r'data-total="finished">1<', overview.text) and re.search(r'data-total="failed">1<', overview.text)
    assert re.search(r'data-total="enqueued">4<', overview.text)  # the deferred child is not counted
    for window in ("day", "week", "nonsense"):
        assert http.get("/", params={"window": window}).status_code == 200
    page = http.get("/queue", params={"name": qname, "window": "day"})
    assert page.text.count('<svg class="chart"') == 2 and 'class="on" data-window="day"' in page.text
    assert re.search(r'id="oldest-age">\d+ s<', page.text)
    assert "none waiting" in http.get("/queue", params={"name": qname + "-empty"}).text
    shown = http.get("/job", params={"h": parent.handle}).text
    assert child.handle in shown.split('id="dependents"')[1]
    assert group.handle in http.get("/job", params={"h": member.handle}).text.split('id="groups"')[1]
    assert parent.handle in http.get("/job", params={"h": child.handle}).text


def test_limits_are_changed_by_an_admin_only_and_audited(standalone_url: str, qname: str) -> None:
    q = Queue(qname, standalone_url)
    q.enqueue("jobs.noop")
    auth = AuthConfig(users=[User("op", hash_password("op-pass"), "operator"),
                             User("boss", hash_password("boss-pass"), "admin")])
    with serving(create_app(standalone_url, auth=auth)) as base, httpx.Client(base_url=base, timeout=30) as c:
        token = csrf_of(c, "/login")
        c.post("/login", data={"user": "op", "password": "op-pass", "csrf": token})
        token = csrf_of(c, "/")
        assert 'id="limits"' not in c.get("/queue", params={"name": qname}).text
        form = {"queue": qname, "rate_jobs": "5", "rate_per_s": "2", "csrf": token}
        assert c.post("/action/limits", data=form).status_code == 403
        assert q.rate_limit is None
        c.post("/logout", data={"csrf": token})
        token = csrf_of(c, "/login")
        c.post("/login", data={"user": "boss", "password": "boss-pass", "csrf": token})
        token = csrf_of(c, "/")
        assert 'id="limits"' in c.get("/queue", params={"name": qname}).text
        form.update(csrf=token, concurrency_key="tenant-a", concurrency="2")
        assert c.post("/action/limits", data=form).status_code == 303
        assert q.rate_limit == (5, 2.0) and q.concurrency_limits == {"tenant-a": 2}
        refused = c.post("/action/limits", data={**form, "rate_jobs": "many"})
        assert refused.status_code == 400 and "must be a number" in refused.text
        assert c.post("/action/limits", data={"queue": qname, "csrf": token, "concurrency_key": "tenant-a",
                                              "concurrency": ""}).status_code == 303
        assert q.rate_limit is None and q.concurrency_limits == {}
    entries = audit_log(q.connection)
    assert [(e["who"], e["action"], e["ok"]) for e in entries[:3]] == [
        ("boss", "limits", True), ("boss", "limits", False), ("boss", "limits", True)]


def test_a_role_scoped_to_some_queues_acts_only_on_them(standalone_url: str, qname: str, tmp_path: Any) -> None:
    mine, other = Queue(qname + "-billing-eu", standalone_url), Queue(qname + "-mail", standalone_url)
    job = other.enqueue("jobs.fail", "x")
    mine.enqueue("jobs.noop")
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"users": [{"name": "bill", "password_hash": hash_password("pw"),
                                                "role": "operator", "queues": [qname + "-billing-*"]}]}))
    auth = AuthConfig.from_file(str(auth_file))
    with serving(create_app(standalone_url, auth=auth)) as base, httpx.Client(base_url=base, timeout=30) as c:
        token = csrf_of(c, "/login")
        c.post("/login", data={"user": "bill", "password": "pw", "csrf": token})
        token = csrf_of(c, "/")
        assert 'data-action="suspend"' in c.get("/queue", params={"name": mine.name}).text
        assert 'data-action="suspend"' not in c.get("/queue", params={"name": other.name}).text
        assert 'data-action="suspend"' not in c.get("/").text  # suspend all: every queue, out of scope
        assert c.post("/action/suspend", data={"queue": mine.name, "csrf": token}).status_code == 303
        refused = c.post("/action/suspend", data={"queue": other.name, "csrf": token})
        assert refused.status_code == 403 and "on " + other.name in refused.text
        assert c.post("/action/suspend", data={"csrf": token}).status_code == 403
        assert c.post("/action/cancel", data={"job": job.handle, "csrf": token}).status_code == 403
        assert c.get("/job", params={"h": job.handle}).status_code == 200  # still a viewer there
    assert mine.is_suspended and not other.is_suspended and job.get_status() == JobStatus.QUEUED
    with pytest.raises(ValueError, match="queue names or 'prefix"):
        AuthConfig(users=[User("x", hash_password("pw"), "operator", queues="billing")])  # type: ignore[arg-type]


def test_run_now_is_an_operators_post_a_scheduler_takes_once_and_it_is_audited(standalone_url: str,
                                                                               qname: str) -> None:
    q = Queue(qname, standalone_url)
    job = Periodic("jobs.echo", cron="0 0 1 1 *", queue=qname, name="yearly", args=("x",))
    scheduler = CronScheduler(standalone_url, [job], install_signal_handlers=False)
    scheduler.run_once()  # declares it; no tick is due
    auth = AuthConfig(users=[User("op", hash_password("op-pass"), "operator"),
                             User("view", hash_password("view-pass"), "viewer")])
    request_key = K.QueueKeys(qname).cron_run_now("yearly")
    form = {"queue": qname, "periodic": "yearly"}
    with serving(create_app(standalone_url, auth=auth)) as base, httpx.Client(base_url=base, timeout=30) as c:
        token = csrf_of(c, "/login")
        c.post("/login", data={"user": "view", "password": "view-pass", "csrf": token})
        token = csrf_of(c, "/")
        assert 'data-action="run-now"' not in c.get("/periodic").text
        assert c.post("/action/run-now", data={**form, "csrf": token}).status_code == 403
        assert c.get("/action/run-now", params=form).status_code == 405
        assert not q.connection.exists(request_key)
        c.post("/logout", data={"csrf": token})
        token = csrf_of(c, "/login")
        c.post("/login", data={"user": "op", "password": "op-pass", "csrf": token})
        token = csrf_of(c, "/")
        assert 'data-action="run-now"' in c.get("/periodic").text
        assert c.post("/action/run-now", data=form).status_code == 403, "no CSRF token"
        assert not q.connection.exists(request_key)
        done = c.post("/action/run-now", data={**form, "csrf": token}, follow_redirects=True)
        assert done.status_code == 200 and "if none runs, the request waits for one" in done.text
        assert "waiting for a scheduler" in done.text, "no scheduler runs: the page says the request waits"
        assert 'data-action="run-now"' not in done.text
        again = c.post("/action/run-now", data={**form, "csrf": token}, follow_redirects=True)
        assert "already requested" in again.text
        wrong = c.post("/action/run-now", data={"queue": qname, "periodic": "nope", "csrf": token})
        assert wrong.status_code == 400 and "no periodic job is named" in wrong.text
        scheduler.run_once()
        ids = q.get_job_ids(0, 100)
        assert len(ids) == 1 and ids[0].startswith("cron:yearly:manual:")
        fetched = q.fetch_job(ids[0])
        assert fetched is not None and fetched.args == ["x"]
        assert 'data-action="run-now"' in c.get("/periodic").text
    entries = audit_log(q.connection)
    assert [(e["who"], e["action"], e["target"], e["count"], e["ok"]) for e in entries[:3]] == [
        ("op", "run-now", "nope", 0, False), ("op", "run-now", "yearly", 0, True), ("op", "run-now", "yearly", 1, True)]
