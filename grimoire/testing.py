"""Shared test helpers: named users, authenticated API clients, httpx mocks, running queued jobs.

Used by every app's tests through the fixtures in the root conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from grimoire.services import api_token_create


def make_user(username: str, *, staff: bool = False, superuser: bool = False) -> Any:
    User = get_user_model()
    user = User.objects.create_user(
        username=username, email=f"{username}@example.com", password=f"{username}-password"
    )
    if staff or superuser:
        user.is_staff = True
        user.is_superuser = superuser
        user.save(update_fields=["is_staff", "is_superuser"])
    return user


def api_client(user: Any | None = None, *, scheme: str = "Bearer") -> APIClient:
    """An APIClient authenticated with a real token for `user` (anonymous when None)."""
    client = APIClient()
    if user is not None:
        _, raw = api_token_create(user=user, name="tests")
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw}")
    return client


def json_response(
    status: int = 200, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = json.dumps(body if body is not None else {}).encode()
    return httpx.Response(
        status, content=content, headers={"content-type": "application/json", **(headers or {})}
    )


class RecordingTransport(httpx.MockTransport):
    """An httpx transport answering from `handler`, remembering every request it saw."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        super().__init__(record)


def scripted_transport(responses: Iterable[httpx.Response | Exception]) -> RecordingTransport:
    """Answer requests with `responses` in order (an exception is raised instead of answering)."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if not queue:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return RecordingTransport(handler)


def drain_queue(cluster: str = "default", *, max_tasks: int = 1000) -> int:
    """Run every task waiting in a broker queue in this process, the way a worker would.

    For tests that enqueue with sync off (to check what was queued) and then want it executed.
    Returns the number of tasks run.
    """
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage
    from django_q.worker import worker as _unused  # noqa: F401  (import check: django-q2 present)

    broker = get_broker(cluster)
    ran = 0
    while ran < max_tasks:
        batch = broker.dequeue()
        if not batch:
            break
        for ack_id, payload in batch:
            task = SignedPackage.loads(payload)
            _run_task(task)
            broker.acknowledge(ack_id)
            ran += 1
    return ran


def _run_task(task: dict[str, Any]) -> None:
    from django.utils.module_loading import import_string

    func = task["func"]
    if isinstance(func, str):
        func = import_string(func)
    func(*task.get("args", ()), **task.get("kwargs", {}))
