"""The `notify:` list of the agent's config: what each sink type takes, checked.

This is the shape check the config schema runs at load (`file: notify: item N
(type): problem`), kept free of the sinks themselves so `config_schema.py` can
import it; reading the secrets each item names happens when the sinks are
built (agent/notify_sinks.py), with the same `file: key: problem` errors.

    notify:
      - {type: webhook, url_env: SLACK_WEBHOOK_URL}
      - {type: github, repository: owner/name, token_env: GITHUB_TOKEN}
      - {type: gitlab, project: group/name, token_file: /etc/rasa-gitops/gitlab-token,
         api_url: https://gitlab.example.com/api/v4}
"""

from __future__ import annotations

import re
from typing import Any

from agent.secrets import is_secret_name

GITHUB_API = "https://api.github.com"
GITLAB_API = "https://gitlab.com/api/v4"
DEFAULT_CONTEXT = "rasa-gitops/{environment}"

COMMON = {"type", "environments", "target_url"}
# Per type: the secret it needs (given as `<name>_env` or `<name>_file`), the
# plain keys it requires and the plain keys it may have.
TYPES: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {
    "webhook": ("url", frozenset(), frozenset()),
    "github": ("token", frozenset({"repository"}), frozenset({"api_url", "context"})),
    "gitlab": ("token", frozenset({"project"}), frozenset({"api_url", "context"})),
}
HELP = {
    "webhook": "{type: webhook, url_env: VARIABLE} (or url_file: PATH): the incoming "
               "webhook's URL holds its secret",
    "github": "{type: github, repository: OWNER/NAME, token_env: VARIABLE}",
    "gitlab": "{type: gitlab, project: ID or GROUP/NAME, token_env: VARIABLE}",
}
REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
PROJECT = re.compile(r"^(\d+|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+)$")
URL = re.compile(r"^https?://[^/\s]+")


def check_notify(value: Any) -> str | None:
    """The first problem of the `notify` list, or None."""
    for number, item in enumerate(value, start=1):
        problem = _check_item(item)
        if problem:
            kind = item.get("type") if isinstance(item, dict) else None
            return f"item {number}{f' ({kind})' if isinstance(kind, str) else ''}: {problem}"
    return None


def _check_item(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "must be a mapping with a `type`: " + "; ".join(HELP.values())
    kind = item.get("type")
    if kind not in TYPES:
        return f"type {kind!r} is not one of: {', '.join(TYPES)}"
    secret, required, optional = TYPES[kind]
    given = [key for key in (f"{secret}_env", f"{secret}_file") if key in item]
    if secret in item:
        return f"{secret} is never written inline; use {secret}_env: VARIABLE or " \
               f"{secret}_file: PATH"
    if len(given) != 1:
        return (f"needs exactly one of {secret}_env and {secret}_file; e.g. {HELP[kind]}")
    known = COMMON | required | optional | {given[0]}
    for key in item:
        if key not in known:
            inline = " (secrets are never inline)" if is_secret_name(str(key)) else ""
            return f"unknown key {key!r}{inline}; {HELP[kind]}"
    for key in sorted(required):
        if not isinstance(item.get(key), (str, int)) or isinstance(item.get(key), bool):
            return f"needs {key}; e.g. {HELP[kind]}"
    if not isinstance(item[given[0]], str) or not item[given[0]]:
        return f"{given[0]} must name an environment variable or a file"
    return _check_values(item)


def _check_values(item: dict[str, Any]) -> str | None:
    if "repository" in item and not REPOSITORY.match(str(item["repository"])):
        return f"repository {item['repository']!r} is not OWNER/NAME"
    if "project" in item and not PROJECT.match(str(item["project"])):
        return f"project {item['project']!r} is not a project id or GROUP/NAME path"
    for key in ("api_url", "target_url"):
        if key in item and not (isinstance(item[key], str) and URL.match(item[key])):
            return f"{key} {item[key]!r} is not an http(s) URL"
    if "context" in item and not (isinstance(item["context"], str) and item["context"]):
        return "context must be a non-empty string, e.g. rasa-gitops/{environment}"
    for key in ("target_url", "context"):
        if key in item:
            try:
                str(item[key]).format(release=1, commit="0" * 40, environment="production")
            except (KeyError, IndexError, ValueError):
                return (f"{key} {item[key]!r}: the only placeholders are {{release}}, "
                        "{commit} and {environment}")
    envs = item.get("environments")
    if envs is not None and not (isinstance(envs, list) and envs
                                 and all(isinstance(e, str) for e in envs)):
        return "environments must be a list of environment names, e.g. [production]"
    return None
