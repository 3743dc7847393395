"""PostgreSQL restarts during a burst of signed GitHub webhooks.

gunicorn (the Procfile's web line) and both worker clusters run against a PostgreSQL server of the
test's own (initdb in a temp dir, on a free port: restarting the machine's shared server would
break whatever else is using it). While 300 signed `issues` deliveries arrive at a steady pace
from 8 concurrent clients, the server is restarted twice: a fast restart, then a crash
(immediate stop) with 2 s of downtime and crash recovery.

Every delivery must get an answer (no hang), either a 2xx, after which it is stored, or a 5xx,
never a 4xx (a 4xx says the delivery itself is bad, so nobody would send it again). GitHub does
not redeliver on its own; the 5xx ones are redelivered as a person or a redelivery script would:
after that every delivery is stored exactly once, and the workers, which saw the same outage,
process every one of them (the sweeper re-queues what the outage dropped).

Also here, because it is about deliveries processed side by side: GitHub sends `issues` opened and
`issues` edited for a new issue moments apart, and two workers process them at once.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import hmac
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .conftest import Stack, free_port, stack_on, wait_for

pytestmark = pytest.mark.system

DELIVERIES = 300
RATE = 40.0  # deliveries per second, all clients together
CLIENTS = 8
SECRET = "system-test-webhook-secret"
HANG = 20.0  # seconds: an answer slower than this is a hang


class PrivatePostgres:
    """A throwaway PostgreSQL server: initdb in a temp dir, listening on 127.0.0.1:<port>."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="grimoire-sys-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.runas: list[str] = []
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            owner = pwd.getpwnam("postgres")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self.runas = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    @property
    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.runas, str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} "
            "-c max_connections=200 -c fsync=off"
        )

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60",
            "-o", self._options(), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60",
            "-m", mode, "-o", self._options(), "restart",
        )  # fmt: skip

    def running(self) -> bool:
        result = subprocess.run(
            [*self.runas, str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def _bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to drop privileges for initdb")
    try:
        server = PrivatePostgres(bindir)
        server.start()
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot start a private PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def stack_pg(
    private_pg: PrivatePostgres, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    with stack_on(private_pg.admin_url, tmp_path, request) as world:
        yield world
        # Whatever the test did to the server, it is up again before the database is dropped.
        if not private_pg.running():
            private_pg.start()


@dataclass
class Delivery:
    id: str
    body: bytes
    status: int | None = None
    error: str = ""
    seconds: float = 0.0

    @classmethod
    def issue_opened(cls, number: int, action: str = "opened") -> Delivery:
        payload = {
            "action": action,
            "issue": {
                "number": number,
                "title": f"CI fails on step {number}: ImportError ({action})",
                "body": f"Since commit {number:07x} the test job fails with ImportError.",
                "html_url": f"https://github.com/acme/app/issues/{number}",
                "user": {"login": "octocat"},
                "labels": [],
                "state": "open",
            },
            "repository": {"full_name": "acme/app"},
            "sender": {"login": "octocat"},
        }
        return cls(id=str(uuid.uuid4()), body=json.dumps(payload).encode())

    def send(self, client: httpx.Client, url: str) -> None:
        signature = "sha256=" + hmac.new(SECRET.encode(), self.body, hashlib.sha256).hexdigest()
        start = time.monotonic()
        try:
            response = client.post(
                f"{url}/webhooks/github/",
                content=self.body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "issues",
                    "X-GitHub-Delivery": self.id,
                    "X-Hub-Signature-256": signature,
                    "User-Agent": "GitHub-Hookshot/system-test",
                },
                timeout=HANG,
            )
            self.status, self.error = response.status_code, ""
        except httpx.HTTPError as exc:
            self.status, self.error = None, f"{type(exc).__name__}: {exc}"
        self.seconds = time.monotonic() - start


def _burst(url: str, deliveries: list[Delivery]) -> None:
    """Send every delivery at its slot (a steady RATE per second) from CLIENTS threads."""
    start = time.monotonic() + 0.2
    index = iter(range(len(deliveries)))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client() as http:
            while True:
                with lock:
                    i = next(index, None)
                if i is None:
                    return
                delay = start + i / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                deliveries[i].send(http, url)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_webhooks_survive_a_database_restart(stack_pg: Stack, private_pg: PrivatePostgres) -> None:
    stack = stack_pg
    stack.set(
        GITHUB_WEBHOOK_SECRET=SECRET,
        # The sweeper re-queues deliveries and jobs the outage dropped; shortened for the test.
        STUCK_AFTER_SECONDS=20,
        Q_TIMEOUT=15,
        Q_RETRY=25,
        Q_WORKERS=2,
        Q_WORKERS_HIGH=2,
        DB_CONNECT_TIMEOUT=5,
    )
    stack.migrate()
    url = stack.start_gunicorn(workers=2, threads=4)
    stack.start_qcluster("qcluster-default")
    stack.start_qcluster("qcluster-high", cluster="high")

    deliveries = [Delivery.issue_opened(n) for n in range(1, DELIVERIES + 1)]
    sender = threading.Thread(target=_burst, args=(url, deliveries))
    sender.start()
    outage_error: list[BaseException] = []
    try:
        time.sleep(DELIVERIES / RATE * 0.25)
        private_pg.restart("fast")
        time.sleep(DELIVERIES / RATE * 0.25)
        private_pg.stop("immediate")  # a crash: no checkpoint, recovery at start
        time.sleep(2.0)
    except BaseException as exc:  # still bring the server back and let the burst finish
        outage_error.append(exc)
    finally:
        if not private_pg.running():
            private_pg.start()
        sender.join(DELIVERIES / RATE + 4 * HANG)
    assert not outage_error, outage_error
    assert not sender.is_alive(), "the burst did not finish: requests hang"

    # Every delivery got an answer, in time: a 2xx or a 5xx, never a 4xx.
    unanswered = [d for d in deliveries if d.status is None]
    assert not unanswered, [(d.id, d.error) for d in unanswered[:5]]
    assert max(d.seconds for d in deliveries) < HANG
    statuses = sorted({d.status for d in deliveries})
    assert set(statuses) <= {200, 202, 500, 502, 503, 504}, statuses
    accepted = [d for d in deliveries if 200 <= d.status < 300]
    refused = [d for d in deliveries if d.status >= 500]
    print(
        f"{len(accepted)} deliveries accepted, {len(refused)} refused with a 5xx during the "
        f"outage; slowest answer {max(d.seconds for d in deliveries):.2f}s"
    )
    assert refused, "no delivery met the outage: the test proved nothing"
    assert accepted

    # Every 2xx is stored.
    stored = {row[0] for row in stack.sql("SELECT delivery_id FROM spells_webhookdelivery")}
    lost = [d.id for d in accepted if d.id not in stored]
    assert not lost, f"{len(lost)} deliveries answered 2xx were lost: {lost[:5]}"

    # The 5xx ones are redelivered (same delivery ids): now all are accepted, each stored once.
    with httpx.Client() as http:
        for delivery in refused:
            delivery.send(http, url)
    assert all(d.status in (200, 202) for d in refused), sorted({d.status for d in refused})
    rows = stack.sql(
        "SELECT delivery_id, count(*) FROM spells_webhookdelivery GROUP BY delivery_id"
    )
    assert {r[0] for r in rows} == {d.id for d in deliveries}
    assert all(n == 1 for _, n in rows)

    # No work lost: the workers (through the outage, with the sweeper's help) process every
    # delivery, and each GitHub issue exists once.
    def all_processed() -> bool:
        return stack.sql(
            "SELECT count(*) FROM spells_webhookdelivery WHERE status = 'processed'"
        ) == [(DELIVERIES,)]

    before = stack.sql("SELECT status, count(*) FROM spells_webhookdelivery GROUP BY status")
    wait_for(
        all_processed,
        timeout=180,
        interval=2,
        what=f"every delivery processed (statuses before waiting: {before})",
    )
    assert stack.sql(
        "SELECT count(*), count(DISTINCT github_number) FROM issues_issue "
        "WHERE github_repository = 'acme/app'"
    ) == [(DELIVERIES, DELIVERIES)]


def test_opened_and_edited_deliveries_of_a_new_issue_processed_at_once_both_succeed(
    stack: Stack,
) -> None:
    stack.set(GITHUB_WEBHOOK_SECRET=SECRET, Q_WORKERS_HIGH=4, Q_WORKERS=1)
    stack.migrate()
    url = stack.start_gunicorn()
    stack.start_qcluster("qcluster-high", cluster="high")
    pairs = 30
    with httpx.Client() as http:
        for number in range(1, pairs + 1):
            for action in ("opened", "edited"):
                delivery = Delivery.issue_opened(number, action)
                delivery.send(http, url)
                assert delivery.status == 202

    def finished() -> list[tuple[str, int]] | None:
        rows = stack.sql("SELECT status, count(*) FROM spells_webhookdelivery GROUP BY status")
        # Handled means out of both received and processing (a worker may still be on the
        # last one when the others are done).
        pending = {"received", "processing"} & set(dict(rows))
        return None if pending else rows

    statuses = dict(wait_for(finished, timeout=60, what="every delivery handled"))
    errors = stack.sql("SELECT error FROM spells_webhookdelivery WHERE status = 'failed' LIMIT 1")
    assert statuses == {"processed": 2 * pairs}, (statuses, errors)
    assert stack.sql("SELECT count(*) FROM issues_issue") == [(pairs,)]
