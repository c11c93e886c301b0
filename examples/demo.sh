#!/usr/bin/env bash
# The README's one command: a `git push` becomes a bot you can talk to, first
# in staging, then in production, and a second push is promoted while users
# keep talking to it.
#
# It sets up a deploy host in $RASA_GITOPS_DEMO (default /tmp/rasa-gitops-demo):
# a bare repo of examples/coffeebot, the deploy agent watching it, then pushes,
# waits until the release is live in staging (its own Rasa and action server),
# promotes it to production (`promote: manual`) with `agent promote N --env
# production`, talks to the bot through Rasa's REST channel, pushes a second
# commit (a changed greeting) and keeps chatting with production, a "hello"
# every 100 ms, while the agent trains, tests and puts it in staging and the
# demo promotes it to production. Production serves blue/green
# (`model.serving: blue_green`): the new model loads in a second Rasa server
# and HAProxy on the stable port switches to it, so the chat never waits for a
# model load. It prints the replies, the failures and
# the longest reply time, then `agent status` and `agent history`. A failed
# chat message fails the demo. Everything runs as local processes (no Docker);
# it needs HAProxy (Debian: apt-get install haproxy). Run it again at any time:
# it starts over. DEMO_KEEP=1 leaves the agent and the bot running afterwards;
# DEMO_BOT=DIR deploys another bot folder instead of examples/coffeebot.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo="${RASA_GITOPS_DEMO:-/tmp/rasa-gitops-demo}"
rasa_port="${DEMO_RASA_PORT:-5005}"
action_port="${DEMO_ACTION_PORT:-5055}"
staging_rasa_port="${DEMO_STAGING_RASA_PORT:-5105}"
staging_action_port="${DEMO_STAGING_ACTION_PORT:-5155}"
export RASA_GITOPS_CACHE="${RASA_GITOPS_CACHE:-$HOME/.cache/rasa-gitops}"
export RASA_TELEMETRY_ENABLED=false
venv="$RASA_GITOPS_CACHE/rasa310"
bot="${DEMO_BOT:-$here/examples/coffeebot}"

say() { printf '\n== %s\n' "$*"; }

# --- 1. HAProxy (the front proxy on the stable port) and the Python 3.10 +
# Rasa 3.6.21 venv (the same one `bash .ci/test` builds). Debian keeps haproxy
# in /usr/sbin, which a normal user's PATH lacks.
haproxy="$(command -v haproxy || true)"
[ -n "$haproxy" ] || { [ -x /usr/sbin/haproxy ] && haproxy=/usr/sbin/haproxy; } || {
  echo "the demo needs HAProxy: sudo apt-get install haproxy" >&2; exit 1; }
bash "$here/.ci/venv" "$venv"  # builds it once (about a minute), else keeps it
"$venv/bin/pip" install -q --no-deps -e "$here" >"$RASA_GITOPS_CACHE/demo-pip.log" 2>&1 \
  || { cat "$RASA_GITOPS_CACHE/demo-pip.log"; exit 1; }
export PATH="$venv/bin:$PATH"
agent() { "$venv/bin/agent" --config "$demo/agent.yml" "$@"; }

# --- 2. start over: stop what an earlier run left, then a fresh deploy host
if [ -f "$demo/agent.yml" ]; then
  say "stopping what an earlier demo left running"
  if [ -f "$demo/work/agent.pid" ]; then
    kill -TERM "$(cat "$demo/work/agent.pid")" 2>/dev/null || true
    sleep 2
  fi
  agent stop >/dev/null 2>&1 || true
fi
rm -rf "$demo"
mkdir -p "$demo"
say "deploy host in $demo: bare repo coffeebot.git, agent work dir work/"
git init -q --bare -b main "$demo/coffeebot.git"
cp -r "$bot" "$demo/coffeebot"
rm -rf "$demo/coffeebot/models" "$demo/coffeebot/.rasa" "$demo/coffeebot/results"
cat > "$demo/agent.yml" <<EOF
# The deploy agent's config for the demo (see README: The deploy agent).
repo: $demo/coffeebot.git
branch: main
work_dir: $demo/work
rasa_command: $venv/bin/rasa
pipeline:
  test_stories: tests/test_*.yml
action_server:
  target: local
model:
  target: rasa_http
  haproxy: $haproxy
environments:
  staging:               # first: each release comes here after its gates
    action_server: {port: $staging_action_port}
    model:
      url: http://127.0.0.1:$staging_rasa_port
      serving: put_model  # one Rasa server; nobody chats with staging
  production:            # after staging
    promote: manual      # agent promote N --env production
    action_server: {port: $action_port}
    model:
      url: http://127.0.0.1:$rasa_port
      serving: blue_green  # HAProxy on $rasa_port, a new Rasa server per promotion
EOF

# --- 3. the agent, watching the bare repo
agent_pid=""
chat_pid=""
cleanup() {
  if [ -n "$chat_pid" ]; then kill "$chat_pid" 2>/dev/null || true; fi
  if [ -n "$agent_pid" ] && [ "${DEMO_KEEP:-0}" != 1 ]; then
    kill -TERM "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
    agent stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
say "starting the agent (log: $demo/agent.log)"
# The executable itself (not the shell function) so that $! is the agent's pid.
"$venv/bin/agent" --config "$demo/agent.yml" run > "$demo/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 100); do [ -f "$demo/work/agent.pid" ] && break; sleep 0.1; done

# push MESSAGE: commit everything in the bot's checkout and push it; sets $commit.
push() {
  say "git push deploy main ($1)"
  (cd "$demo/coffeebot" &&
   git -c user.name="Demo" -c user.email="demo@example.com" add -A &&
   git -c user.name="Demo" -c user.email="demo@example.com" commit -q -m "coffeebot: $1" &&
   git push -q deploy main)
  commit="$(git -C "$demo/coffeebot" rev-parse HEAD)"
}

# wait_promoted COMMIT: show the agent's progress until that commit's release
# is live in staging; exit 1 if it failed or the agent stopped. Sets $release.
shown=0
show_log() {
  local lines
  lines="$(wc -l < "$demo/agent.log")"
  if [ "$lines" -gt "$shown" ]; then
    sed -n "$((shown + 1)),${lines}p" "$demo/agent.log" | grep -E "release [0-9]+:|agent " || true
    shown="$lines"
  fi
}
wait_promoted() {
  local state
  while :; do
    show_log
    state="$(agent history --json 2>/dev/null | python -c "
import json, sys
rows = [r for r in json.load(sys.stdin) if r['commit'] == '$1']
print(rows[0]['status'] if rows else 'waiting')" 2>/dev/null || echo waiting)"
    case "$state" in
      promoted)
        show_log
        release="$(agent history --json | python -c "
import json, sys; print([r for r in json.load(sys.stdin) if r['commit'] == '$1'][0]['id'])")"
        return 0 ;;
      failed|interrupted)
        say "the release $state"; agent logs "$(agent history --json | python -c "
import json, sys; print(json.load(sys.stdin)[0]['id'])")" --lines 15; exit 1 ;;
    esac
    if ! kill -0 "$agent_pid" 2>/dev/null; then
      say "the agent stopped"; cat "$demo/agent.log"; exit 1
    fi
    sleep 2
  done
}

# --- 4. the first push
git -C "$demo/coffeebot" init -q -b main
git -C "$demo/coffeebot" remote add deploy "$demo/coffeebot.git"
push "first release"
cd "$demo"

# --- 5. wait until the release is live in staging (or failed), then promote it
say "the agent validates, trains, tests and deploys to staging (a few minutes on a small machine)"
wait_promoted "$commit"
say "release $release is live in staging and waits for production (promote: manual)"
agent status
say "agent promote $release --env production"
agent promote "$release" --env production --reason "demo: staging answered well"

# --- 6. talk to the bot (its reply to "hello" is what the second push changes)
say "talking to the bot in production through the REST channel (http://127.0.0.1:$rasa_port)"
python - "$rasa_port" "$demo/greeting.txt" <<'EOF'
import sys
from pathlib import Path

import requests

url = f"http://127.0.0.1:{sys.argv[1]}/webhooks/rest/webhook"
for text in ("hello", "one coffee please", "when are you open", "thanks", "bye"):
    replies = requests.post(url, json={"sender": "demo", "message": text}, timeout=300).json()
    print(f"  you: {text}")
    for reply in replies:
        print(f"  bot: {reply.get('text', reply)}")
    if text == "hello":
        Path(sys.argv[2]).write_text(replies[0].get("text", "") if replies else "")
EOF

# --- 7. the second push: a changed greeting, promoted while users keep talking
greeting="$(cat "$demo/greeting.txt")"
new_greeting="$greeting (release 2)"
if ! python - "$demo/coffeebot/domain.yml" "$greeting" "$new_greeting" <<'EOF'
import sys
from pathlib import Path

domain, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
text = domain.read_text(encoding="utf-8") if domain.is_file() else ""
if not old or old not in text:
    sys.exit(1)
domain.write_text(text.replace(old, new), encoding="utf-8")
EOF
then
  say "no second release: the reply to \"hello\" is not written as is in domain.yml"
else
  say "chatting with production while release 2 is trained, tested, put in staging and promoted to production (a \"hello\" every 100 ms)"
  rm -f "$demo/chat.stop"
  # Only the standard library: this is any user of the REST channel. Each
  # message is a new conversation; it stops once the agent reports release 2
  # promoted and a reply showed the new greeting.
  python3 - "$rasa_port" "$greeting" "$new_greeting" "$demo/chat.stop" <<'EOF' &
import json
import sys
import time
import urllib.request
from pathlib import Path

port, old, new, stop = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
url = f"http://127.0.0.1:{port}/webhooks/rest/webhook"
started = time.monotonic()
times: list[float] = []
failures: list[str] = []
counts = {old: 0, new: 0, "other": 0}
new_after = stopping = None
while time.monotonic() - started < 1500:
    sent = time.monotonic()
    if stopping is None and stop.exists():
        stopping = sent  # release 2 is promoted: its greeting is due at once
    if stopping is not None and (new_after is not None or sent - stopping > 10):
        break
    body = json.dumps({"sender": f"chat-{len(times) + len(failures)}", "message": "hello"})
    request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            replies = json.load(answer)
        text = " ".join(r.get("text", "") for r in replies).strip()
        if not text:
            raise ValueError("a reply without text")
    except Exception as exc:  # every kind of failure counts, and the demo fails
        failures.append(f"{type(exc).__name__}: {exc}")
    else:
        times.append(time.monotonic() - sent)
        counts[text if text in counts else "other"] += 1
        if text == new and new_after is None:
            new_after = time.monotonic() - started
    time.sleep(max(0.0, 0.1 - (time.monotonic() - sent)))
ms = sorted(t * 1000 for t in times) or [0.0]
print(f"  bot, before the switch: {old}\n  bot, after the switch:  {new}\n"
      f"  release 2 answered {new_after:.0f} s after the push"
      if new_after is not None else f"  release 2's greeting never came ({new})")
print(f"  {len(times)} replies ({counts[old]} old, {counts[new]} new, {counts['other']} other), "
      f"{len(failures)} failures, longest reply {ms[-1]:.0f} ms "
      f"(p50 {ms[len(ms) // 2]:.0f} ms, p99 {ms[int(len(ms) * 0.99)]:.0f} ms)")
for failure in failures[:5]:
    print(f"  failed: {failure}")
sys.exit(0 if new_after is not None and not failures else 1)
EOF
  chat_pid=$!
  push "a new greeting"
  wait_promoted "$commit"
  say "release $release is live in staging; each environment answers with its own"
  python - "$staging_rasa_port" "$rasa_port" <<'EOF'
import sys

import requests

for name, port in (("staging", sys.argv[1]), ("production", sys.argv[2])):
    replies = requests.post(f"http://127.0.0.1:{port}/webhooks/rest/webhook", timeout=300,
                            json={"sender": f"look-{name}", "message": "hello"}).json()
    print(f"  {name}: {' '.join(r.get('text', '') for r in replies)}")
EOF
  say "agent promote $release --env production (the chat goes on)"
  agent promote "$release" --env production --reason "demo: the new greeting"
  touch "$demo/chat.stop"
  chat_ok=0
  wait "$chat_pid" || chat_ok=$?
  chat_pid=""
  if [ "$chat_ok" != 0 ]; then
    say "the chat during the promotion failed (see above)"; exit 1
  fi
fi

say "agent status"
agent status
say "agent history"
agent history
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  say "still running (DEMO_KEEP=1): agent pid $agent_pid; stop with:"
  echo "  kill $agent_pid; $venv/bin/agent --config $demo/agent.yml stop"
fi
