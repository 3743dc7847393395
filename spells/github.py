"""A small GitHub REST client: PR files and diff, Actions job logs, PR comments.

httpx only. Pagination follows the Link header; rate limits (403/429 with no remaining quota,
or secondary limits with Retry-After) raise RateLimitedError carrying when to try again, so the
calling job can be retried later instead of hammering the API.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

MAX_FILES = 3000  # GitHub's own cap on PR files
MAX_DIFF_BYTES = 1_000_000
MAX_LOG_BYTES = 200 * 1024 * 1024
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
_REPO = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")


class GitHubError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimitedError(GitHubError):
    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


@dataclass
class GitHub:
    token: str = ""
    base_url: str = ""
    client: httpx.Client | None = None

    def __post_init__(self) -> None:
        self.token = self.token or settings.GITHUB_API_TOKEN
        self.base_url = (self.base_url or settings.GITHUB_API_URL).rstrip("/")
        if self.client is None:
            self.client = httpx.Client(
                timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=True
            )

    def _headers(self, accept: str = "application/vnd.github+json") -> dict[str, str]:
        headers = {"Accept": accept, "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "grimoire"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    @staticmethod
    def check_repo(repo: str) -> str:
        if not _REPO.match(repo) or ".." in repo:
            raise GitHubError(f"not a repository name: {repo!r}")
        return repo

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        remaining = response.headers.get("x-ratelimit-remaining")
        if response.status_code in (403, 429) and (
            remaining == "0" or "retry-after" in response.headers
        ):
            if "retry-after" in response.headers:
                wait = float(response.headers["retry-after"])
            else:
                wait = max(
                    1.0,
                    float(response.headers.get("x-ratelimit-reset", time.time() + 60))
                    - time.time(),
                )
            raise RateLimitedError(f"GitHub rate limit; retry in {wait:.0f}s", retry_after=wait)
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = response.text[:200]
        raise GitHubError(f"GitHub {response.status_code}: {message}", status=response.status_code)

    def _get(
        self, url: str, *, accept: str = "application/vnd.github+json", params: dict | None = None
    ) -> httpx.Response:
        if not url.startswith("http"):
            url = f"{self.base_url}{url}"
        response = self.client.get(url, headers=self._headers(accept), params=params)  # type: ignore[union-attr]
        self._raise_for(response)
        return response

    def _paginate(self, path: str, *, limit: int) -> Iterator[Any]:
        url: str | None = f"{self.base_url}{path}"
        params: dict | None = {"per_page": 100}
        count = 0
        while url and count < limit:
            response = self._get(url, params=params)
            params = None  # the next link carries them
            for item in response.json():
                yield item
                count += 1
                if count >= limit:
                    return
            found = _NEXT.search(response.headers.get("link", ""))
            url = found.group(1) if found else None

    def pr_files(self, repo: str, number: int) -> list[str]:
        self.check_repo(repo)
        return [
            f["filename"]
            for f in self._paginate(f"/repos/{repo}/pulls/{int(number)}/files", limit=MAX_FILES)
        ]

    def pr_diff(self, repo: str, number: int) -> str:
        self.check_repo(repo)
        response = self._get(
            f"/repos/{repo}/pulls/{int(number)}", accept="application/vnd.github.diff"
        )
        return response.content[:MAX_DIFF_BYTES].decode("utf-8", errors="replace")

    def run_jobs(self, repo: str, run_id: int) -> list[dict[str, Any]]:
        self.check_repo(repo)
        jobs: list[dict[str, Any]] = []
        url: str | None = f"{self.base_url}/repos/{repo}/actions/runs/{int(run_id)}/jobs"
        params: dict | None = {"per_page": 100, "filter": "latest"}
        while url and len(jobs) < 1000:
            response = self._get(url, params=params)
            params = None
            jobs.extend(response.json().get("jobs", []))
            found = _NEXT.search(response.headers.get("link", ""))
            url = found.group(1) if found else None
        return jobs

    def job_log(self, repo: str, job_id: int) -> Iterator[bytes]:
        """The job's log, streamed (GitHub redirects to a short-lived blob URL; httpx drops the
        Authorization header when the redirect leaves the API host)."""
        self.check_repo(repo)
        url = f"{self.base_url}/repos/{repo}/actions/jobs/{int(job_id)}/logs"
        with self.client.stream("GET", url, headers=self._headers()) as response:  # type: ignore[union-attr]
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            total = 0
            for block in response.iter_bytes():
                total += len(block)
                if total > MAX_LOG_BYTES:
                    return
                yield block

    def comment(self, repo: str, number: int, body: str) -> None:
        self.check_repo(repo)
        response = self.client.post(  # type: ignore[union-attr]
            f"{self.base_url}/repos/{repo}/issues/{int(number)}/comments",
            headers=self._headers(),
            json={"body": body[:60_000]},
        )
        self._raise_for(response)
