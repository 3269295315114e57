"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright, against the
dashboard on uvicorn on loopback, a real worker and real servers in each topology."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

import control_jobs
from clusterq import CronScheduler, JobStatus, Periodic, Queue, Worker
from clusterq.dashboard import AuthConfig, User, create_app, hash_password
from dashboard_support import screenshot, serving, wait_for
from worker_thread import running

XSS = "<img src=x onerror=window.__x=1>"
COUNT_JS = """([q, s, n]) => Array.from(document.querySelectorAll('[data-s]'))
    .some(el => el.dataset.q === q && el.dataset.s === s && el.textContent.trim() === String(n))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the browser tests: Debian's, never a downloaded build."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "the dashboard's browser tests need Debian's chromium (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    opened.on("dialog", lambda dialog: dialog.accept())  # the confirmation prompts: say yes
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture
def standalone_url(clusterq_standalone: Any) -> str:
    clusterq_standalone.flush()
    return str(clusterq_standalone.url)


def worker(q: Queue | str, url: str, **options: Any) -> Worker:
    return Worker([q], url, pool="thread", concurrency=2, install_signal_handlers=False, **options)


def test_counts_go_live_and_a_failed_job_is_retried_from_its_page(url: str, qname: str, page: Page,
                                                                 clusterq_topology: Any) -> None:
    q = Queue(qname, url)
    with serving(create_app(url, live_interval_s=0.5)) as base:
        page.goto(base + "/")
        page.evaluate("window.__same = 1")  # gone if the page reloads
        for _ in range(3):
            q.enqueue("jobs.add", 1, 2)
        page.wait_for_function(COUNT_JS, arg=[qname, "waiting", 3], timeout=2000)
        failing = q.enqueue("jobs.fail", "it broke")
        with running(worker(q, url)):
            wait_for(lambda: failing.get_status() == JobStatus.FAILED, "the job to fail")
            page.wait_for_function(COUNT_JS, arg=[qname, "failed", 1], timeout=2000)
            wait_for(lambda: q.count == 0, "the queue to drain")
        assert page.evaluate("window.__same") == 1, "the counts changed without a reload"
        topology = type(clusterq_topology).__name__.lower()
        screenshot(page, f"dashboard-overview-{topology}")

        page.goto(base + "/queue?" + _qs(name=qname, state="failed"))
        assert page.locator("table.jobs tbody tr").count() == 1
        screenshot(page, f"dashboard-queue-{topology}")
        page.click("table.jobs tbody a")
        traceback = page.locator("#traceback").inner_text()
        assert "ValueError" in traceback and "it broke" in traceback
        screenshot(page, f"dashboard-job-{topology}")
        page.click("button[data-action=requeue]")
        page.wait_for_selector(".flash")
        assert failing.get_status() == JobStatus.QUEUED
        assert q.failed_job_registry.count == 0


def test_requeue_all_failed_of_a_function_counts_then_requeues_exactly_those(url: str, qname: str,
                                                                             page: Page) -> None:
    q = Queue(qname, url)
    for _ in range(3):
        q.enqueue("jobs.fail", "x")
    for _ in range(2):
        q.enqueue("jobs.no_such_function")
    with running(worker(q, url)):
        wait_for(lambda: q.failed_job_registry.count == 5, "five failures")
    with serving(create_app(url)) as base:
        page.goto(base + "/queue?" + _qs(name=qname, state="failed"))
        page.fill("input[name=func]", "jobs.fail")
        page.click("button[data-action=requeue-failed-dry]")
        assert page.inner_text("#dry-run-count") == "3"
        assert q.failed_job_registry.count == 5, "a dry run changes nothing"
        page.click("button[data-action=requeue-failed]")
        page.wait_for_selector(".flash")
        assert "requeued 3" in page.inner_text(".flash")
    assert q.count == 3 and q.failed_job_registry.count == 2
    assert {j.func_name for j in q.get_jobs()} == {"jobs.fail"}


def test_suspend_keeps_a_new_job_waiting_resume_runs_it_and_stop_ends_a_running_job(
        url: str, qname: str, page: Page, tmp_path: Path) -> None:
    q, other = Queue(qname, url), Queue(qname + "-other", url)
    served = Worker([q, other], url, pool="thread", concurrency=1, lease_s=5, install_signal_handlers=False)
    with serving(create_app(url)) as base, running(served):
        page.goto(base + "/queue?" + _qs(name=qname))
        page.click("button[data-action=suspend]")
        page.wait_for_selector(".badge.warn")
        assert q.is_suspended
        job = q.enqueue("jobs.noop")
        # The worker serves q first; once it has run a job of the other queue, it had q's job in reach
        after = other.enqueue("jobs.noop")
        wait_for(lambda: after.get_status() == JobStatus.FINISHED, "the other queue's job to run")
        assert job.get_status() == JobStatus.QUEUED
        page.click("button[data-action=resume]")
        wait_for(lambda: job.get_status() == JobStatus.FINISHED, "the job to run after resume")

        started = tmp_path / "started"
        long = q.enqueue(control_jobs.progress_then_wait, str(started), 120)
        wait_for(started.exists, "the long job to start")
        page.goto(base + "/job?" + _qs(h=long.handle))
        assert page.locator("button[data-action=stop]").count() == 1
        page.click("button[data-action=stop]")
        wait_for(lambda: long.get_status() == JobStatus.STOPPED, "the job to be stopped within its lease",
                 timeout_s=5 + 5)
    assert "stopped from the dashboard" in (long.exc_info or "")


def test_a_script_in_arguments_exception_text_and_names_never_runs(url: str, qname: str, page: Page) -> None:
    name = qname + XSS
    q = Queue(name, url)
    job = q.enqueue("jobs.fail", XSS, meta={"note": XSS})
    with running(worker(q, url)):
        wait_for(lambda: job.get_status() == JobStatus.FAILED, "the job to fail")
    with serving(create_app(url)) as base:
        pages = ["/", "/queue?" + _qs(name=name, state="failed"), "/job?" + _qs(h=job.handle), "/workers",
                 "/audit", "/search?" + _qs(queue=name, state="failed")]
        for path in pages:
            page.goto(base + path)
            page.wait_for_load_state("load")
            assert page.evaluate("typeof window.__x") == "undefined", path
        page.goto(base + "/job?" + _qs(h=job.handle))
        assert XSS in page.inner_text("#args") and XSS in page.inner_text("#traceback")
        assert XSS in page.inner_text("h1") or XSS in page.inner_text("table.kv")
        page.click("button[data-action=requeue]")  # the action's own page and flash message too
        page.wait_for_selector(".flash")
        assert page.evaluate("typeof window.__x") == "undefined"


def test_a_form_posted_from_another_origin_is_refused_and_changes_nothing(standalone_url: str, qname: str,
                                                                          page: Page) -> None:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    q = Queue(qname, standalone_url)
    q.enqueue("jobs.noop")
    with serving(create_app(standalone_url)) as base:
        evil_page = f"""<html><body><form id=f method=post action="{base}/action/suspend">
            <input name=queue value="{qname}"><input name=csrf value=guessed></form>
            <script>document.getElementById('f').submit()</script></body></html>"""

        async def evil(request: Any) -> HTMLResponse:
            return HTMLResponse(evil_page)

        with serving(Starlette(routes=[Route("/", evil)])) as attacker:
            page.goto(base + "/")  # the victim has a session with the dashboard
            with page.expect_response(lambda r: "/action/" in r.url) as posted:
                page.goto(attacker + "/")
            assert posted.value.status == 403
    assert not q.is_suspended and q.count == 1


def test_a_viewer_sees_no_buttons_and_gets_403_on_a_direct_post(standalone_url: str, qname: str,
                                                                page: Page) -> None:
    q = Queue(qname, standalone_url)
    job = q.enqueue("jobs.fail")
    with running(worker(q, standalone_url)):
        wait_for(lambda: job.get_status() == JobStatus.FAILED, "the job to fail")
    auth = AuthConfig(users=[User("vera", hash_password("v-pass"), "viewer"),
                             User("ada", hash_password("a-pass"), "admin")])
    with serving(create_app(standalone_url, auth=auth)) as base:
        page.goto(base + "/job?" + _qs(h=job.handle))
        assert "/login" in page.url
        page.fill("input[name=user]", "vera")
        page.fill("input[name=password]", "v-pass")
        page.click("form.login button")
        page.wait_for_selector("#traceback")
        assert page.locator("button[data-action]").count() == 0
        csrf = page.input_value("input[name=csrf]")  # the logout form's: a valid token of this session
        reply = page.request.post(base + "/action/requeue", form={"csrf": csrf, "job": job.handle},
                                  headers={"Origin": base})
        assert reply.status == 403
        assert job.get_status() == JobStatus.FAILED
        page.click("button.link")  # log out
        page.goto(base + "/job?" + _qs(h=job.handle))
        page.fill("input[name=user]", "ada")
        page.fill("input[name=password]", "a-pass")
        page.click("form.login button")
        page.wait_for_selector("#traceback")
        assert page.locator("button[data-action=requeue]").count() == 1


def _qs(**params: str) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


# --- single sign-on against a real OpenID provider on loopback -----------------------------------------

@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """oidc-provider-mock (Authlib's server parts on Flask) on a free loopback port: its issuer URL."""
    import oidc_provider_mock

    with oidc_provider_mock.run_server_in_thread() as server:
        issuer = f"http://127.0.0.1:{server.server_port}"
        for sub, claims in {
            "ada": {"email": "ada@example.com", "email_verified": True},
            "vera": {"email": "vera@corp.example", "email_verified": True},
            "mallory": {"email": "ada@example.com", "email_verified": False},
            "gus": {"email": "gus@elsewhere.example", "email_verified": True, "groups": ["ops"]},
        }.items():
            assert httpx.put(f"{issuer}/users/{sub}", json=claims, timeout=10).status_code == 204
        yield issuer


def sso_app(url: str, issuer: str) -> Any:
    from clusterq.dashboard.oidc import OIDCConfig

    oidc = OIDCConfig(issuer, "clusterq-dashboard", "its-secret", emails={"ada@example.com": "admin"},
                      domains={"corp.example": "viewer"}, groups={"ops": "operator"})
    return create_app(url, auth=AuthConfig(oidc=oidc))


def sign_on(page: Page, base: str, sub: str, path: str = "/") -> Any:
    """Open ``path``, follow the login to the provider, authorize as ``sub``; returns the callback's response."""
    page.goto(base + path)
    page.click("#sso")
    page.fill("input[name=sub]", sub)
    with page.expect_response(lambda r: "/auth/callback" in r.url) as callback:
        page.click("button[type=submit]:not([name])")
    page.wait_for_load_state("load")
    return callback.value


def test_single_sign_on_admits_by_exact_claims_and_gives_each_its_role(standalone_url: str, qname: str,
                                                                     page: Page, provider: str) -> None:
    q = Queue(qname, standalone_url)
    job = q.enqueue("jobs.fail")
    with running(worker(q, standalone_url)):
        wait_for(lambda: job.get_status() == JobStatus.FAILED, "the job to fail")
    with serving(sso_app(standalone_url, provider)) as base:
        authorize = {}
        page.on("request", lambda r: authorize.setdefault("url", r.url) if "/oauth2/authorize" in r.url else None)
        sign_on(page, base, "ada", "/job?" + _qs(h=job.handle))
        assert "code_challenge_method=S256" in authorize["url"] and "nonce=" in authorize["url"]
        assert page.locator("#traceback").count() == 1, "back on the page asked for"
        assert "ada@example.com" in page.inner_text(".who") and "admin" in page.inner_text(".who")
        assert page.locator("button[data-action=requeue]").count() == 1

        viewer = page.context.browser.new_context()
        vpage = viewer.new_page()
        sign_on(vpage, base, "vera", "/job?" + _qs(h=job.handle))
        assert "viewer" in vpage.inner_text(".who") and vpage.locator("button[data-action]").count() == 0
        csrf = vpage.get_attribute("meta[name=csrf-token]", "content")
        reply = vpage.request.post(base + "/action/requeue", form={"csrf": csrf or "", "job": job.handle},
                                   headers={"Origin": base})
        assert reply.status == 403 and job.get_status() == JobStatus.FAILED
        viewer.close()

        for sub, status in (("mallory", 403), ("gus", 200)):  # unverified email; admitted by group
            other = page.context.browser.new_context()
            opage = other.new_page()
            sign_on(opage, base, sub)
            assert ("Not admitted" in opage.inner_text("h1")) == (status == 403), sub
            other.close()


def authorized_elsewhere(page: Page, base: str, sub: str) -> str:
    """Start a sign-on in the browser (its pending cookie is set), authorize ``sub`` at the provider with
    another client, and return the callback URL the provider would send the browser to."""
    page.goto(base + "/")
    with page.expect_request(lambda r: "/oauth2/authorize" in r.url) as authorize:
        page.click("#sso")
    reply = httpx.post(authorize.value.url, data={"sub": sub}, follow_redirects=False, timeout=10)
    assert reply.status_code in (302, 303), reply.text[:300]
    return str(reply.headers["location"])


def test_a_tampered_state_and_a_replayed_code_are_refused(standalone_url: str, page: Page, provider: str) -> None:
    with serving(sso_app(standalone_url, provider)) as base:
        callback = authorized_elsewhere(page, base, "ada")
        refused = page.goto(re.sub(r"state=[^&]+", "state=forged", callback))
        assert refused is not None and refused.status == 400
        assert "state does not match" in page.inner_text("p.message")
        page.goto(base + "/")
        assert "/login" in page.url, "a refused sign-on logs nobody in"

        callback = authorized_elsewhere(page, base, "ada")
        pending = [c for c in page.context.cookies() if c["name"] == "cq_sso"]
        first = page.goto(callback)
        assert first is not None and first.ok and "admin" in page.inner_text(".who")
        page.context.clear_cookies()
        page.context.add_cookies(pending)  # an attacker holding the code and this browser's pending cookie
        replay = page.goto(callback)
        assert replay is not None and replay.status == 400
        assert "refused the code" in page.inner_text("p.message")
        page.goto(base + "/")
        assert "/login" in page.url


def test_history_charts_limits_and_dependents_in_the_browser(url: str, qname: str, page: Page,
                                                            clusterq_topology: Any) -> None:
    q = Queue(qname, url)
    for i in range(6):
        q.enqueue("jobs.add", i, 1)
    q.enqueue("jobs.fail", "charted")
    worker(q, url).work(burst=True)
    parent = q.enqueue("jobs.add", 1, 1)
    child = q.enqueue("jobs.add", 2, 2, depends_on=parent)
    topology = type(clusterq_topology).__name__.lower()
    with serving(create_app(url)) as base:
        page.goto(base + "/")
        assert page.locator("svg.chart").count() == 2
        ended = "svg.chart g[data-series=ended]"
        assert page.locator(f"{ended} polyline, {ended} circle").count() >= 1
        assert page.locator("#history-totals [data-total=finished]").inner_text() == "6"
        screenshot(page, f"dashboard-overview-history-{topology}")
        page.click("a[data-window=week]")
        page.wait_for_selector("a.on[data-window=week]")
        assert page.locator("#history-totals [data-total=failed]").inner_text() == "1"

        page.goto(base + "/queue?" + _qs(name=qname))
        assert page.locator("#oldest-age").inner_text().endswith(" s")
        page.click("#limits summary")
        page.fill("input[name=rate_jobs]", "10")
        page.fill("input[name=rate_per_s]", "1")
        page.fill("input[name=concurrency]", "3")
        page.click("button[data-action=limits]")
        page.wait_for_selector(".flash")
        assert q.rate_limit == (10, 1.0) and q.concurrency_limits == {None: 3}
        screenshot(page, f"dashboard-queue-history-{topology}")

        page.goto(base + "/job?" + _qs(h=parent.handle))
        page.click(f"#dependents a:text('{child.handle}')")
        page.wait_for_url(re.compile(r"/job\?"))
        assert parent.handle in page.content()
        screenshot(page, f"dashboard-job-dependents-{topology}")


def test_run_now_in_the_browser_makes_two_schedulers_enqueue_one_run(standalone_url: str, qname: str,
                                                                     page: Page) -> None:
    q = Queue(qname, standalone_url)
    job = Periodic("jobs.echo", cron="0 0 1 1 *", queue=qname, name="yearly", args=("x",))
    schedulers = [CronScheduler(standalone_url, [job], install_signal_handlers=False) for _ in range(2)]
    schedulers[0].run_once()  # declared before the page is opened
    threads = [threading.Thread(target=s.run, daemon=True) for s in schedulers]
    with serving(create_app(standalone_url)) as base:
        page.goto(base + "/periodic")
        for thread in threads:
            thread.start()
        try:
            page.click("button[data-action=run-now]")
            page.wait_for_selector(".flash")
            assert "asked for a run of 'yearly' now" in page.inner_text(".flash")
            ids = wait_for(lambda: q.get_job_ids(0, 100), "the requested run")
            wait_for(lambda: not q.connection.exists(q.keys.cron_run_now("yearly")), "the request to be taken")
        finally:
            for s in schedulers:
                s.stop()
            for thread in threads:
                thread.join(60)
        for s in schedulers:
            s.run_once()
        assert q.get_job_ids(0, 100) == ids and len(ids) == 1 and ids[0].startswith("cron:yearly:manual:")
        assert sum(s.enqueued for s in schedulers) == 1
        page.goto(base + "/periodic")
        assert page.locator("button[data-action=run-now]").count() == 1
        assert page.locator(".status.s-queued").count() == 1, "the run is listed among the recent runs"
