"""Shared by several test modules (moved from test_dashboard_web.py)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from dashboard.web import create_app
from testkit.mosquitto import free_port

STAFF_PASSWORD = "correct horse battery"


@contextmanager
def serving(engine, auth_enabled: bool = True) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine, auth_enabled=auth_enabled),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Browser:
    """urllib with cookies, no automatic redirects (so a test sees each 303)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            return None

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), self._NoRedirect)

    def request(self, path: str, form: dict | None = None,
                headers: dict | None = None) -> tuple[int, dict, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self._opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def login(self, name: str, password: str) -> str:
        """Log in through the form; returns where the answer redirects."""
        _, _, page = self.request("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        status, headers, _ = self.request("/login", {"username": name, "password": password,
                                                     "csrf": csrf})
        assert status == 303
        return headers["location"]


def staff_page(engine, path: str) -> tuple[int, str]:  # noqa: ANN001
    """A page as a newly added staff member sees it after logging in: (status, HTML)."""
    from sqlalchemy.orm import Session

    from dashboard import auth

    with Session(engine) as session:
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        session.commit()
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        status, _, page = nurse.request(path)
    return status, page


def api_get(base: str, path: str, key: str):  # noqa: ANN202
    request = urllib.request.Request(base + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
