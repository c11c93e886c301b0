"""Where notifications go: a chat webhook, GitHub or GitLab commit statuses.

A sink is anything with a stable, secret-free `key` (its cursor's name in the
journal), `wants(notice)` and `send(notice, timeout)`; `SINKS` maps a config
`type` to its builder, so a new kind of sink is one class and one line (as
pre-commit maps hook languages). `send` raises `SendFailed`, which says whether
trying again may help (a 5xx, a timeout) or not (a 4xx: a bad token, a wrong
repository), and whose reason never holds a secret: the URL and the token are
not in it, and the notifier passes every line through the Redactor anyway.

The request shapes follow the documented APIs only:
- webhook: POST JSON with `text` (what Slack and Mattermost incoming webhooks
  show) plus structured fields;
- GitHub: POST {api}/repos/{owner}/{repo}/statuses/{sha}, `Authorization:
  Bearer`, state pending|success|failure|error, context, description, target_url;
- GitLab: POST {api}/projects/{id or url-encoded path}/statuses/{sha},
  `PRIVATE-TOKEN`, state pending|running|success|failed|canceled, name,
  description, target_url.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from agent.config import AgentConfig, ConfigError
from agent.notify_config import DEFAULT_CONTEXT, GITHUB_API, GITLAB_API, TYPES, URL
from agent.secrets import Secret

DESCRIPTION_MAX = 140  # GitHub's limit on a status description; GitLab's is longer


@dataclass(frozen=True)
class Status:
    """One commit status to set: on `commit`, in our words (pending, running,
    success, failure, canceled); each sink maps them to its API's."""

    commit: str
    state: str
    description: str


@dataclass(frozen=True)
class Notice:
    """What one journal event tells people."""

    event_id: int
    event: str  # promoted, failed, rolled_back, staged, superseded, started, ...
    environment: str
    release_id: int | None
    commit: str
    reason: str
    actor: str
    at: float
    text: str
    chat: bool  # worth a chat message (a release starting is a status only)
    statuses: tuple[Status, ...] = ()


class SendFailed(Exception):
    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason, self.transient = reason, transient


class Sink(Protocol):
    key: str
    secrets: tuple[str, ...]

    def address(self) -> tuple[str, int]: ...

    def wants(self, notice: Notice) -> bool: ...

    def send(self, notice: Notice, timeout: float) -> None: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 30x as a GET, with the token header, to wherever it
    # points, and take that GET's 200 for a delivered status: a 30x is an error.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, payload: Mapping[str, Any], headers: Mapping[str, str],
              timeout: float) -> None:
    """POST `payload` as JSON; raise SendFailed (never naming the URL) unless 2xx;
    a redirect is never followed (a refusal: check the configured URL)."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "rasa-gitops-agent",
                 **headers})
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read(65536)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection
        # 408/429 and 5xx pass; any other 4xx (or a 30x) will never be taken.
        raise SendFailed(f"HTTP {exc.code} {exc.reason}",
                         exc.code >= 500 or exc.code in (408, 429)) from None
    except urllib.error.URLError as exc:
        raise SendFailed(f"cannot connect: {exc.reason}", True) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # a timeout, a reset
        raise SendFailed(f"{type(exc).__name__}: {exc}", True) from None


class _Base:
    def __init__(self, item: Mapping[str, Any], secret: Secret) -> None:
        self.item = item
        self.secret = secret
        self.secrets: tuple[str, ...] = (secret.reveal(),)
        envs = item.get("environments")
        self.environments = frozenset(envs) if envs else None

    def _for(self, notice: Notice) -> bool:
        return self.environments is None or notice.environment in self.environments

    def _url(self) -> str:
        raise NotImplementedError

    def address(self) -> tuple[str, int]:
        """The host and port requests go to (`agent doctor`); never the URL's secret path."""
        parts = urlsplit(self._url())
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)

    def target_url(self, notice: Notice) -> str | None:
        template = self.item.get("target_url")
        if not template:
            return None
        return str(template).format(release=notice.release_id or "", commit=notice.commit,
                                    environment=notice.environment)


class WebhookSink(_Base):
    """A chat's incoming webhook: one JSON message per notice worth a message."""

    def __init__(self, item: Mapping[str, Any], secret: Secret) -> None:
        super().__init__(item, secret)
        self.key = f"webhook:{secret.origin}"

    def _url(self) -> str:
        return self.secret.reveal()

    def wants(self, notice: Notice) -> bool:
        return notice.chat and self._for(notice)

    def send(self, notice: Notice, timeout: float) -> None:
        post_json(self.secret.reveal(), {
            "text": notice.text, "event": notice.event, "environment": notice.environment,
            "release": notice.release_id, "commit": notice.commit, "reason": notice.reason,
            "actor": notice.actor, "at": notice.at, "url": self.target_url(notice),
        }, {}, timeout)


class _StatusSink(_Base):
    """A commit status per environment; the subclass names the API's words."""

    NAME = ""  # the field that tells this status from other systems' on the commit
    STATES: Mapping[str, str] = {}
    DEFAULT_API = ""
    WHERE = ""  # the config key naming the repository or project

    def __init__(self, item: Mapping[str, Any], secret: Secret) -> None:
        super().__init__(item, secret)
        self.api = str(item.get("api_url", self.DEFAULT_API)).rstrip("/")
        self.key = f"{item['type']}:{self.api}/{item[self.WHERE]}"

    def _url(self) -> str:
        return self.api

    def wants(self, notice: Notice) -> bool:
        return bool(notice.statuses) and self._for(notice)

    def context(self, notice: Notice) -> str:
        return str(self.item.get("context", DEFAULT_CONTEXT)).format(
            environment=notice.environment)

    def send(self, notice: Notice, timeout: float) -> None:
        for status in notice.statuses:  # setting one twice is harmless: same state
            body: dict[str, Any] = {"state": self.STATES[status.state],
                                    self.NAME: self.context(notice),
                                    "description": status.description[:DESCRIPTION_MAX]}
            url = self.target_url(notice)
            if url:
                body["target_url"] = url
            post_json(self.status_url(status.commit), body, self.headers(), timeout)

    def status_url(self, commit: str) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError


class GitHubSink(_StatusSink):
    NAME, DEFAULT_API, WHERE = "context", GITHUB_API, "repository"
    STATES = {"pending": "pending", "running": "pending", "success": "success",
              "failure": "failure", "canceled": "error"}

    def status_url(self, commit: str) -> str:
        return f"{self.api}/repos/{self.item['repository']}/statuses/{commit}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret.reveal()}",
                "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitLabSink(_StatusSink):
    NAME, DEFAULT_API, WHERE = "name", GITLAB_API, "project"
    STATES = {"pending": "pending", "running": "running", "success": "success",
              "failure": "failed", "canceled": "canceled"}

    def status_url(self, commit: str) -> str:
        project = quote(str(self.item["project"]), safe="")  # group/name -> group%2Fname
        return f"{self.api}/projects/{project}/statuses/{commit}"

    def headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.secret.reveal()}


SINKS: dict[str, Callable[[Mapping[str, Any], Secret], Sink]] = {
    "webhook": WebhookSink, "github": GitHubSink, "gitlab": GitLabSink,
}


def load_sinks(config: AgentConfig) -> list[Sink]:
    """The sinks of `notify`, with the secrets the config read for them
    (agent.config: `notify[N].url` / `.token`); `file: notify[N].key: problem`
    when an item names an unknown environment or a webhook secret is no URL."""
    sinks: list[Sink] = []
    known = {env.name for env in config.environments}
    for number, item in enumerate(config["notify"] or (), start=1):
        secret_name = TYPES[item["type"]][0]
        for unknown in sorted(set(item.get("environments") or ()) - known):
            raise ConfigError(config.path, f"notify[{number}].environments",
                              f"no environment {unknown!r} (known: {', '.join(sorted(known))})")
        key = f"{secret_name}_env" if f"{secret_name}_env" in item else f"{secret_name}_file"
        secret = config.secret(f"notify[{number}].{secret_name}")
        if secret is None:  # a config built without load_config
            raise ConfigError(config.path, f"notify[{number}].{key}", "was not read")
        if item["type"] == "webhook" and not URL.match(secret.reveal()):
            raise ConfigError(config.path, f"notify[{number}].{key}",
                              f"{secret.origin} does not hold an http(s) URL")
        sinks.append(SINKS[item["type"]](item, secret))
    return sinks
