"""The notify sinks' own rules (agent/notify_sinks.py, agent/notify_config.py):
a bad `notify:` item refused at start-up naming file and key, secrets read
with the config's others, and a redirect never followed with a token.
No GitHub, GitLab or chat here: the redirect is made by a local HTTP server.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.notify_sinks import SendFailed, load_sinks, post_json
from tests.support.agent_config import agent_config

GH_TOKEN = "ghp_fakeGithubToken123"


@pytest.mark.parametrize(("item", "problem"), [
    ({"type": "webhook", "url": "https://hooks.slack.com/services/x"},
     "notify: item 1 (webhook): url is never written inline; use url_env"),
    ({"type": "github", "token_env": "GH_TOKEN"}, "item 1 (github): needs repository"),
    ({"type": "github", "repository": "nope", "token_env": "GH_TOKEN"},
     "repository 'nope' is not OWNER/NAME"),
    ({"type": "gitlab", "project": 7, "token": "abc"}, "token is never written inline"),
    ({"type": "teams", "url_env": "X"}, "type 'teams' is not one of: webhook, github, gitlab"),
    ({"type": "webhook", "url_env": "HOOK_URL", "channel": "#ops"}, "unknown key 'channel'"),
    ({"type": "github", "repository": "a/b", "token_env": "T", "api_url": "ftp://x"},
     "api_url 'ftp://x' is not an http(s) URL"),
    ({"type": "gitlab", "project": "g/p", "token_env": "T", "target_url": "https://x/{id}"},
     "target_url 'https://x/{id}': the only placeholders are {release}, {commit} and"),
])
def test_a_bad_notify_item_is_refused_at_start_up_naming_file_and_key(
    tmp_path: Path, item: dict[str, object], problem: str,
) -> None:
    path = agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git", notify=[item])
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).startswith(f"{path}: notify: ")
    assert problem in str(refused.value)


def test_an_unreadable_secret_or_unknown_environment_is_refused_when_sinks_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_HOOK", raising=False)
    path = agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                        notify=[{"type": "webhook", "url_env": "NO_SUCH_HOOK"}])
    with pytest.raises(ConfigError, match=r"notify\[1\]\.url_env: environment variable "
                       "NO_SUCH_HOOK is not set"):
        load_sinks(load_config(path))
    monkeypatch.setenv("NO_SUCH_HOOK", "http://127.0.0.1:9/hooks/x")
    path = agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                        notify=[{"type": "webhook", "url_env": "NO_SUCH_HOOK",
                                 "environments": ["staging"]}])
    with pytest.raises(ConfigError, match=r"notify\[1\]\.environments: no environment "
                       "'staging'"):
        load_sinks(load_config(path))
    monkeypatch.setenv("NO_SUCH_HOOK", "hooks.slack.com/services/T1/B2/zzzSecret")
    path = agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                        notify=[{"type": "webhook", "url_env": "NO_SUCH_HOOK"}])
    with pytest.raises(ConfigError, match=r"notify\[1\]\.url_env: \$NO_SUCH_HOOK does not "
                       "hold an http\\(s\\) URL") as refused:
        load_sinks(load_config(path))
    assert "zzzSecret" not in str(refused.value)


def test_a_redirect_is_a_refusal_and_the_token_never_follows_it() -> None:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SendFailed) as refused:
            post_json(f"http://127.0.0.1:{port}/statuses/abc", {"state": "success"},
                      {"Authorization": f"Bearer {GH_TOKEN}"}, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert refused.value.reason.startswith("HTTP 302") and not refused.value.transient
    assert seen == []  # not followed: no GET, no token sent on
