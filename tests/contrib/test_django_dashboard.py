"""The dashboard mounted in the project's URLs, behind Django's login and the staff flag, through the
ASGI bridge; the admin index links to it."""

from __future__ import annotations

import re
import time
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User

from clusterq.contrib.django import conf, get_queue


@pytest.fixture
def cq(settings, url):
    settings.CLUSTERQ = {"URL": url}
    yield url
    conf.reset()


def post(client, path: str, **form: str):
    """A form post as a browser sends it (urlencoded: the dashboard reads no multipart bodies)."""
    return client.post(path, urlencode(form), content_type="application/x-www-form-urlencoded")


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("ops", password="pw-123456", is_staff=True)


def test_anonymous_and_non_staff_users_go_to_the_admin_login(cq, client, db) -> None:
    response = client.get("/jobs/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    User.objects.create_user("plain", password="pw-123456")
    client.login(username="plain", password="pw-123456")
    response = client.get("/jobs/queue?name=x")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_see_the_dashboard_and_act_as_operators(cq, client, staff) -> None:
    queue = get_queue("mail")
    queue.enqueue("djproject.shop.jobs.ship", 1)
    client.login(username="ops", password="pw-123456")
    page = client.get("/jobs/")
    assert page.status_code == 200 and b"mail" in page.content
    assert b'href="/jobs/queue?name=mail' in page.content  # links carry the mount prefix
    assert "script-src" in page["Content-Security-Policy"]
    queue_page = client.get("/jobs/queue", {"name": "mail"})
    assert queue_page.status_code == 200
    token = re.search(rb'name="csrf" value="([0-9a-f]+)"', queue_page.content).group(1).decode()
    assert client.cookies.get("cq_session") is not None  # the dashboard's own session, binding its CSRF token
    done = post(client, "/jobs/action/suspend", csrf=token, queue="mail")
    assert done.status_code == 303 and queue.is_suspended
    refused = post(client, "/jobs/action/resume", csrf="forged", queue="mail")
    assert refused.status_code == 403 and queue.is_suspended
    admin_only = post(client, "/jobs/action/empty", csrf=token, queue="mail")
    assert admin_only.status_code == 403 and b"operator" in admin_only.content and queue.count == 1
    static = client.get("/jobs/static/app.css")
    assert static.status_code in (200, 404)


def test_superusers_are_admins_and_a_role_function_decides(cq, client, settings, db) -> None:
    User.objects.create_superuser("root", password="pw-123456")
    client.login(username="root", password="pw-123456")
    queue = get_queue("mail")
    queue.enqueue("djproject.shop.jobs.ship", 1)
    page = client.get("/jobs/queue", {"name": "mail"})
    token = re.search(rb'name="csrf" value="([0-9a-f]+)"', page.content).group(1).decode()
    assert post(client, "/jobs/action/empty", csrf=token, queue="mail", confirm="mail").status_code == 303
    assert queue.count == 0
    settings.CLUSTERQ = {"URL": cq, "DASHBOARD": {"ROLE": "djproject.roles.nobody"}}
    assert client.get("/jobs/").status_code == 403


def test_the_admin_index_links_to_the_dashboard(cq, client, db) -> None:
    User.objects.create_superuser("root", password="pw-123456")
    client.login(username="root", password="pw-123456")
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b'id="clusterq-dashboard-link"' in index.content and b'href="/jobs/"' in index.content


def test_the_live_counts_stream_through_the_bridge_and_stop_when_the_client_leaves(cq, client, staff) -> None:
    from clusterq.contrib.django import dashboard

    get_queue("mail").enqueue("djproject.shop.jobs.ship", 1)
    client.login(username="ops", password="pw-123456")
    response = client.get("/jobs/events")
    assert response.status_code == 200 and response.streaming
    chunks = iter(response.streaming_content)
    received = b""
    while b"data:" not in received:  # "retry:" first, then a snapshot of the counts
        received += next(chunks)
    assert b"mail" in received
    ticker = dashboard._get_bridge().app.state.ticker
    assert ticker.listeners == 1
    response.close()  # the browser went away: the app sees a disconnect and its stream ends
    for _ in range(100):
        if ticker.listeners == 0:
            break
        time.sleep(0.05)
    assert ticker.listeners == 0
