#!/usr/bin/env bash
# Makes docs/dashboard.png and docs/dashboard-peers.png from the real dashboard in a real terminal.
#
# Usage: bash docs/screenshot/make.sh path/to/claudemesh
#
# With the given binary only: alice runs `claudemesh up` (a broker on 127.0.0.1, a free port),
# invites bob, carol and dave, who join in their own config dirs; sessions.py starts five live
# sessions over the real MCP server (`claudemesh mcp`, driven by the Python MCP SDK) and plays
# a short afternoon of messages; `claudemesh tui` runs for alice in a private tmux server at
# 140x40; the Messages view (the thread with bob) and the Peers view are captured with their
# colours (`tmux capture-pane -e`) and rendered to PNG by render.py.
#
# Needs tmux, python3 (for a venv with Pillow, made in $CLAUDEMESH_SHOT_VENV, default
# /tmp/shotvenv) and the Python MCP SDK (`mcp`, by default from .ci/tools/venv, which
# `bash .ci/install-external-clients` installs; or set CLAUDEMESH_SHOT_MCP_PYTHON). Everything
# lives in $CLAUDEMESH_SHOT_DIR (default /tmp/shot, which must not exist; its paths show in the
# Peers view) and is stopped and removed at the end (CLAUDEMESH_SHOT_KEEP=1 keeps the dir, with
# the captures). CLAUDEMESH_SHOT_FAST=1 skips the waits that give the messages different minutes.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: bash docs/screenshot/make.sh path/to/claudemesh" >&2; exit 2; }
EXE=$(realpath "$1")
[ -x "$EXE" ] || { echo "not an executable: $EXE" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
DOCS=$(dirname "$HERE")
REPO=$(dirname "$DOCS")
ROOT=${CLAUDEMESH_SHOT_DIR:-/tmp/shot}
VENV=${CLAUDEMESH_SHOT_VENV:-/tmp/shotvenv}
MCP_PY=${CLAUDEMESH_SHOT_MCP_PYTHON:-$REPO/.ci/tools/venv/bin/python}
COLS=140
ROWS=40
PEOPLE=(alice bob carol dave)

command -v tmux >/dev/null || { echo "tmux is needed" >&2; exit 1; }
"$MCP_PY" -c 'import mcp' 2>/dev/null || {
    echo "no Python MCP SDK in $MCP_PY (run bash .ci/install-external-clients, or set CLAUDEMESH_SHOT_MCP_PYTHON)" >&2
    exit 1
}
if [ -e "$ROOT" ]; then
    echo "$ROOT exists: remove it (after \`claudemesh down\` there) or set CLAUDEMESH_SHOT_DIR" >&2
    exit 1
fi
if ! "$VENV/bin/python" -c 'import PIL' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet pillow
fi

mkdir -p "$ROOT"
TMUX_SOCK="$ROOT/tmux.sock"
SESSIONS_PID=

# Runs claudemesh as one person: their own HOME and config dir.
as() {
    local who=$1
    shift
    HOME="$ROOT/$who/home" CLAUDEMESH_CONFIG_DIR="$ROOT/$who/cm" "$EXE" "$@"
}

cleanup() {
    set +e
    tmux -S "$TMUX_SOCK" kill-server 2>/dev/null
    if [ -n "$SESSIONS_PID" ] && kill -0 "$SESSIONS_PID" 2>/dev/null; then
        kill -TERM "$SESSIONS_PID"
        for _ in $(seq 50); do kill -0 "$SESSIONS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$SESSIONS_PID" 2>/dev/null && kill -KILL "$SESSIONS_PID"
    fi
    for who in bob carol dave; do
        [ -d "$ROOT/$who/cm" ] && as "$who" agent stop >/dev/null 2>&1
    done
    [ -d "$ROOT/alice/cm" ] && as alice down >/dev/null 2>&1
    if [ "${CLAUDEMESH_SHOT_KEEP:-}" = 1 ]; then
        echo "kept $ROOT"
    else
        rm -rf "$ROOT"
    fi
}
trap cleanup EXIT

for who in "${PEOPLE[@]}"; do mkdir -p "$ROOT/$who/home" "$ROOT/$who/cm"; done

echo "== the mesh: alice's broker and agent, bob, carol and dave joining"
as alice up --yes --no-claude --no-tui --name alice --mesh team --listen 127.0.0.1:0 >/dev/null
as alice member set alice --group backend:lead --group frontend >/dev/null
for pair in bob:backend carol:frontend dave:backend; do
    who=${pair%%:*}
    group=${pair#*:}
    url=$(as alice invite create --uses 1 --expires 1h --group "$group" --json 2>/dev/null |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["url"])')
    as "$who" join "$url" --name "$who" >/dev/null
done
as alice members

echo "== the sessions and their messages"
"$MCP_PY" "$HERE/sessions.py" "$EXE" "$ROOT" "$ROOT/ready" >"$ROOT/sessions.log" 2>&1 &
SESSIONS_PID=$!
for _ in $(seq 300); do
    [ -e "$ROOT/ready" ] && break
    kill -0 "$SESSIONS_PID" 2>/dev/null || { cat "$ROOT/sessions.log" >&2; exit 1; }
    sleep 1
done
[ -e "$ROOT/ready" ] || { cat "$ROOT/sessions.log" >&2; echo "the sessions never got ready" >&2; exit 1; }
as alice peers

echo "== the dashboard in tmux (${COLS}x${ROWS})"
t() { tmux -S "$TMUX_SOCK" "$@"; }
t new-session -d -s shot -x "$COLS" -y "$ROWS" \
    -e "HOME=$ROOT/alice/home" -e "CLAUDEMESH_CONFIG_DIR=$ROOT/alice/cm" -e TERM=xterm-256color \
    -e LANG=C.UTF-8 "$EXE" tui
screen() { t capture-pane -p -t shot; }
# Waits until the screen matches the extended regex $2; $1 says what for.
wait_for() {
    for _ in $(seq 100); do
        screen | grep -Eq -- "$2" && return 0
        sleep 0.1
    done
    echo "not on screen after 10 s: $1" >&2
    screen >&2
    exit 1
}
# One key at a time, with a pause: ESC followed at once by a key reads as Alt+key.
key() { t send-keys -t shot "$1"; sleep 0.3; }

wait_for "the agent and the five sessions" 'agent 0\..*' 
wait_for "the five sessions" 'Peers \(5\)'

# Messages: move to the conversation with bob (the pane's title follows the selection), open it.
key 3
wait_for "the conversations" 'Conversations \('
for _ in $(seq 10); do
    screen | grep -Eq '┌ bob \(m_' && break
    key Down
done
wait_for "bob's conversation selected" '┌ bob \(m_'
key Enter
wait_for "the thread with bob, seen and delivered" '✓✓ seen'
wait_for "the last message" 'merging after lunch'
t capture-pane -e -p -t shot >"$ROOT/messages.ansi"

# Peers: select bob's session `payments` for the detail pane.
key Escape
key 1
wait_for "the peers" 'Peers \(5\)'
for _ in $(seq 10); do
    screen | grep -Eq '││payments +working' && break
    key Down
done
wait_for "bob's session selected" '││payments +working'
t capture-pane -e -p -t shot >"$ROOT/peers.ansi"

echo "== rendering"
"$VENV/bin/python" "$HERE/render.py" "$ROOT/messages.ansi" "$DOCS/dashboard.png" \
    --cols "$COLS" --rows "$ROWS" --title "claudemesh tui — alice"
"$VENV/bin/python" "$HERE/render.py" "$ROOT/peers.ansi" "$DOCS/dashboard-peers.png" \
    --cols "$COLS" --rows "$ROWS" --title "claudemesh tui — alice"
echo "wrote $DOCS/dashboard.png and $DOCS/dashboard-peers.png"
