#!/usr/bin/env bash
# The README's one command: a `git push` becomes a bot you can talk to.
#
# It sets up a deploy host in $RASA_GITOPS_DEMO (default /tmp/rasa-gitops-demo):
# a bare repo of examples/coffeebot, the deploy agent watching it, then pushes,
# waits until the release is in production, talks to the bot through Rasa's
# REST channel, and prints `agent status` and `agent history`. Everything runs
# as local processes (no Docker). Run it again at any time: it starts over.
# DEMO_KEEP=1 leaves the agent and the bot running afterwards; DEMO_BOT=DIR
# deploys another bot folder instead of examples/coffeebot.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo="${RASA_GITOPS_DEMO:-/tmp/rasa-gitops-demo}"
rasa_port="${DEMO_RASA_PORT:-5005}"
action_port="${DEMO_ACTION_PORT:-5055}"
export RASA_GITOPS_CACHE="${RASA_GITOPS_CACHE:-$HOME/.cache/rasa-gitops}"
export RASA_TELEMETRY_ENABLED=false
venv="$RASA_GITOPS_CACHE/rasa310"
bot="${DEMO_BOT:-$here/examples/coffeebot}"

say() { printf '\n== %s\n' "$*"; }

# --- 1. the Python 3.10 + Rasa 3.6.21 venv (the same one `bash .ci/test` builds)
if [ ! -x "$venv/bin/rasa" ]; then
  say "building $venv (Python 3.10 + Rasa 3.6.21; takes a few minutes once)"
  mkdir -p "$RASA_GITOPS_CACHE"
  PYENV_VERSION=3.10.13 python3.10 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/.ci/requirements-test.txt"
fi
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
  port: $action_port
model:
  target: rasa_http
  url: http://127.0.0.1:$rasa_port
environments:
  production:
    promote: auto
EOF

# --- 3. the agent, watching the bare repo
agent_pid=""
cleanup() {
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

# --- 4. the push
say "git push deploy main"
cd "$demo/coffeebot"
git init -q -b main
git -c user.name="Demo" -c user.email="demo@example.com" add -A
git -c user.name="Demo" -c user.email="demo@example.com" commit -q -m "coffeebot: first release"
git remote add deploy "$demo/coffeebot.git"
git push -q deploy main
commit="$(git rev-parse HEAD)"
cd "$demo"

# --- 5. wait until the release is in production (or failed)
say "the agent validates, trains, tests and deploys (a few minutes on a small machine)"
shown=0
while :; do
  lines="$(wc -l < "$demo/agent.log")"
  if [ "$lines" -gt "$shown" ]; then
    sed -n "$((shown + 1)),${lines}p" "$demo/agent.log" | grep -E "release [0-9]+:|agent " || true
    shown="$lines"
  fi
  state="$(agent history --json 2>/dev/null | python -c "
import json, sys
rows = [r for r in json.load(sys.stdin) if r['commit'] == '$commit']
print(rows[0]['status'] if rows else 'waiting')" 2>/dev/null || echo waiting)"
  case "$state" in
    promoted) break ;;
    failed|interrupted)
      say "the release $state"; agent logs "$(agent history --json | python -c "
import json, sys; print(json.load(sys.stdin)[0]['id'])")" --lines 15; exit 1 ;;
  esac
  if ! kill -0 "$agent_pid" 2>/dev/null; then
    say "the agent stopped"; cat "$demo/agent.log"; exit 1
  fi
  sleep 2
done

# --- 6. talk to the bot
say "talking to the bot through the REST channel (http://127.0.0.1:$rasa_port)"
python - "$rasa_port" <<'EOF'
import sys
import requests

url = f"http://127.0.0.1:{sys.argv[1]}/webhooks/rest/webhook"
for text in ("hello", "one coffee please", "when are you open", "thanks", "bye"):
    replies = requests.post(url, json={"sender": "demo", "message": text}, timeout=300).json()
    print(f"  you: {text}")
    for reply in replies:
        print(f"  bot: {reply.get('text', reply)}")
EOF

say "agent status"
agent status
say "agent history"
agent history
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  say "still running (DEMO_KEEP=1): agent pid $agent_pid; stop with:"
  echo "  kill $agent_pid; $venv/bin/agent --config $demo/agent.yml stop"
fi
