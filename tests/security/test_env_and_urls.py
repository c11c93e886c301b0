"""Fast checks of two secret paths: a credential in the `repo:` URL, and the
variables the config hands the commit's code (`pipeline.env`, `action_server.env`).

A token in an HTTPS `repo:` URL must not reach the image's source label (anyone
who pulls reads labels), a log line or `agent status`. The bot's variables are
names only, checked at load, and never one the agent reads its own secret from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.image.build import labels_for
from agent.journal import Journal
from agent.repo import Mirror
from agent.secrets import Redactor, public_url, url_secrets
from hooks.core import child_env as child_env_module
from hooks.core.child_env import child_env, commit_environment, passed_env, withhold
from hooks.core.errors import FatalError
from hooks.core.process import run
from tests.support.agent_config import agent_config

SOURCE = "org.opencontainers.image.source"
TOKEN = "tok3n-0123456789"


@pytest.mark.parametrize("url", [
    f"https://user:{TOKEN}@host/x.git",
    f"https://{TOKEN}@host/x.git",
    f"https://host/x.git?access_token={TOKEN}",
    f"https://oauth2:{TOKEN}@host/x.git?private_token={TOKEN}#frag",
])
def test_the_source_label_and_public_url_carry_no_credential(url: str) -> None:
    labels = labels_for("a" * 40, url, "fp", default_dockerfile=True)
    assert labels[SOURCE] == "https://host/x.git"
    assert all(TOKEN not in value for value in labels.values())
    assert public_url(url) == "https://host/x.git"
    assert TOKEN in url_secrets(url)
    assert TOKEN not in Redactor(url_secrets(url))(f"fatal: unable to access '{url}'")


def test_urls_without_credentials_are_kept_and_give_no_secret() -> None:
    for url in ("https://host/x.git", "/srv/git/bot.git", "git@github.com:org/bot.git",
                "ssh://git@host:2222/bot.git", "file:///srv/git/bot.git"):
        assert url_secrets(url) == [], url
    assert public_url("https://host/x.git") == "https://host/x.git"
    assert public_url("/srv/git/bot.git") == "/srv/git/bot.git"
    assert public_url("git@github.com:org/bot.git") == "git@github.com:org/bot.git"
    # An ssh:// user names an account, not a secret; the label drops it all the same.
    assert public_url("ssh://git@host:2222/bot.git") == "ssh://host:2222/bot.git"


def test_agent_status_shows_the_repo_url_without_its_token(tmp_path: Path) -> None:
    config = agent_config(tmp_path / "agent.yml", repo=f"https://user:{TOKEN}@host/x.git")
    (tmp_path / "work").mkdir()
    Journal(tmp_path / "work" / "journal.sqlite").close()  # status reads an existing one
    done = subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), "status"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "https://host/x.git branch main" in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_bot_variables_are_names_and_never_the_agents_own_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGT_TOKEN", "t0ken-value")
    good = agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                        model={"auth_token_env": "RGT_TOKEN"},
                        pipeline={"env": ["BOT_API_URL", "HTTPS_PROXY"]},
                        action_server={"env": ["BOT_DB_URL"]})
    loaded = load_config(good)
    assert loaded["pipeline.env"] == ["BOT_API_URL", "HTTPS_PROXY"]
    assert loaded["action_server.env"] == ["BOT_DB_URL"]
    assert load_config(agent_config(tmp_path / "none.yml", repo=tmp_path / "bot.git"))[
        "pipeline.env"] is None

    for block, value, problem in (
        ("pipeline", ["BOT_API_URL=http://x"], "is not an environment variable name"),
        ("action_server", ["A", "A"], "names a variable twice"),
        ("pipeline", "BOT_API_URL", "must be a list"),
        ("action_server", ["RGT_TOKEN"], r"RGT_TOKEN holds the agent.s own secret "
                                         r"\(model.auth_token_env\)"),
    ):
        bad = agent_config(tmp_path / "bad.yml", repo=tmp_path / "bot.git",
                           model={"auth_token_env": "RGT_TOKEN"}, **{block: {"env": value}})
        with pytest.raises(ConfigError, match=problem) as caught:
            load_config(bad)
        assert f"{block}.env" in str(caught.value)
        assert "t0ken-value" not in str(caught.value)


def test_the_named_variables_and_nothing_else_reach_a_commits_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_API_URL", "http://bot-api")
    monkeypatch.setenv("RGT_REGISTRY_PASSWORD", "reg-secret")
    monkeypatch.delenv("BOT_UNSET", raising=False)
    extra = passed_env(["BOT_API_URL", "BOT_UNSET"])
    assert extra == {"BOT_API_URL": "http://bot-api"}  # an unset name is left out
    with commit_environment(extra):
        env = child_env(None)
    assert env["BOT_API_URL"] == "http://bot-api"
    assert "RGT_REGISTRY_PASSWORD" not in env and "BOT_UNSET" not in env
    assert "reg-secret" not in env.values()
    assert env["PATH"] == os.environ["PATH"]


def test_withheld_variables_reach_no_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child_env_module, "_WITHHELD", set())  # this test's own list
    monkeypatch.setenv("RGT_AGENT_TOKEN", "agent-t0ken")
    monkeypatch.setenv("RGT_PLAIN", "plain")
    assert child_env(None)["RGT_AGENT_TOKEN"] == "agent-t0ken"
    withhold(["RGT_AGENT_TOKEN"])
    seen = run(["env"]).output  # a real child, outside any commit block
    assert "RGT_PLAIN=plain" in seen
    assert "RGT_AGENT_TOKEN" not in seen and "agent-t0ken" not in seen
    with commit_environment(passed_env(["RGT_PLAIN"])):
        assert "agent-t0ken" not in run(["env"]).output


def test_a_password_in_the_repo_url_reaches_git_only_through_a_private_credential_file(
    tmp_path: Path,
) -> None:
    """A git host that asks for Basic auth (401) gets the URL's password from the
    mirror's 0600 credential file: the URL in git's config and on every git
    command line (git-remote-https is handed the remote's URL) has none."""
    import base64
    import http.server
    import stat
    import threading

    seen: list[str] = []

    class GitHost(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            if auth is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
            else:
                seen.append(base64.b64decode(auth.split()[1]).decode())
                self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GitHost)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    mirror = Mirror(f"http://deployer:{TOKEN}@127.0.0.1:{port}/bot.git", "main",
                    tmp_path / "repo.git")
    try:
        with pytest.raises(FatalError) as caught:
            mirror.fetch()
    finally:
        server.shutdown()
    assert seen and seen[0] == f"deployer:{TOKEN}"  # git really used the stored password
    assert TOKEN not in str(caught.value) and f"127.0.0.1:{port}/bot.git" in str(caught.value)
    config = (tmp_path / "repo.git" / "config").read_text(encoding="utf-8")
    assert TOKEN not in config and f"url = http://127.0.0.1:{port}/bot.git" in config
    store = tmp_path / "repo.git" / "credentials"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600 and TOKEN in store.read_text()
    # Nothing else: a URL without a password keeps no credential file.
    other = Mirror(str(tmp_path / "missing.git"), "main", tmp_path / "other.git")
    with pytest.raises(FatalError):
        other.fetch()
    assert not (tmp_path / "other.git" / "credentials").exists()
