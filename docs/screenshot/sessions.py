"""Live Claude-like sessions for the dashboard screenshot, over the real MCP server.

Usage: sessions.py CLAUDEMESH_EXE ROOT READY_FILE

ROOT holds one directory per person (ROOT/<name>/cm is its CLAUDEMESH_CONFIG_DIR, ROOT/<name>/home
its HOME), as make.sh sets them up. Each session below is a `claudemesh mcp` child driven with the
Python MCP SDK, as Claude Code would: it sets its status and summary, then the scene plays out
(tool calls of the sessions, and alice's own sends with `claudemesh send`). Once it has, READY_FILE
is written and the sessions stay online until this process gets SIGTERM or SIGINT, then they
close cleanly.

The scene waits for the wall clock's next minute three times, so that the messages carry a few
different times as in a real afternoon (about three minutes); CLAUDEMESH_SHOT_FAST=1 skips the
waits.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import AsyncExitStack

import anyio
from mcp.client import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

# key: (person, session name, working directory under ROOT/<person>, status, summary, groups it
# joins as name or name:role)
SESSIONS = {
    "alice": ("alice", "gateway", "src/gateway", "working",
              "wiring the refunds API into the gateway; reviewing bob's PR next", ["oncall"]),
    "bob": ("bob", "payments", "src/payments", "working",
            "rebasing feature/refunds onto the new ledger schema", ["backend:reviewer"]),
    "bob-ci": ("bob", "payments-ci", "src/payments", "idle",
               "watching CI for PR #212 (integration suite)", ["ci"]),
    "carol": ("carol", "web", "src/web", "dnd",
              "checkout redesign, in focus mode: only urgent messages please", ["frontend:lead"]),
    "dave": ("dave", "ledger", "src/ledger", "working",
             "migrating ledger_entries to Postgres 16 (0042_split_amounts)", ["backend:dba", "oncall"]),
}

# The scene, in order. ("tool", session, tool, args) calls a tool of a session; ("check",
# session) is the session reading its messages (the sender then sees them seen); ("cli",
# person, argv) runs `claudemesh <argv>` as that person; ("sleep", seconds); ("minute",) waits
# for the next minute of the wall clock.
SCENE = [
    ("tool", "dave", "send_message", {"to": "@backend", "priority": "now",
        "message": "heads-up: migration 0042 runs in 10 min; hold writes to ledger_entries until I say so"}),
    ("tool", "carol", "send_message", {"to": "alice",
        "message": "the refund preview shows 10.005 as 10.00: does the API round, or should the web side?"}),
    ("sleep", 0.5),
    ("check", "bob"),
    ("check", "alice"),
    ("minute",),
    ("cli", "alice", ["send", "bob", "the ledger migration is merged; can you rebase feature/refunds on main?",
                      "--priority", "now"]),
    ("sleep", 0.5),
    ("check", "bob"),
    ("tool", "bob", "send_message", {"to": "alice",
        "message": "rebasing now. Two conflicts in refunds.rs, both mine; will push in ~15 min"}),
    ("tool", "alice", "send_message", {"to": "@backend",
        "message": "gateway now routes /v2/refunds; shout if you see 5xx in the payments dashboards"}),
    ("tool", "carol", "send_message", {"to": "*", "priority": "low",
        "message": "staging redeploys at 15:00; expect about 2 min of 502s on web"}),
    ("sleep", 0.5),
    ("check", "dave"),
    ("check", "bob"),
    ("check", "alice"),
    ("minute",),
    ("tool", "bob-ci", "send_message", {"to": "alice", "priority": "low",
        "message": "integration suite on 7f3a9c1: 214 passed, 1 flaky (test_webhook_retry), green on rerun"}),
    ("tool", "bob", "send_message", {"to": "alice",
        "message": "pushed 7f3a9c1; PR #212 is ready for review"}),
    ("cli", "alice", ["send", "bob", "great, CI looks green. Can you add a test for partial refunds first?"]),
    ("sleep", 0.5),
    ("check", "bob"),
    ("tool", "bob", "send_message", {"to": "alice",
        "message": "added test_partial_refund_rounds_down, pushed"}),
    ("minute",),
    ("cli", "alice", ["send", "carol", "the API rounds half-even since 0042; no rounding on the web side please",
                      "--priority", "low"]),
    ("tool", "dave", "send_message", {"to": "@backend",
        "message": "0042 done, writes to ledger_entries are open again"}),
    ("cli", "alice", ["send", "bob", "thanks! merging after lunch"]),
    ("sleep", 0.5),
    ("check", "bob-ci"),
]


def env_of(root: str, person: str) -> dict:
    d = os.path.join(root, person)
    return {
        "HOME": os.path.join(d, "home"),
        "CLAUDEMESH_CONFIG_DIR": os.path.join(d, "cm"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


def text(r) -> str:
    return "\n".join(c.text for c in r.content if getattr(c, "type", None) == "text")


async def main(exe: str, root: str, ready: str) -> None:
    sessions: dict[str, ClientSession] = {}
    async with AsyncExitStack() as stack:
        for key, (person, name, cwd, status, summary, groups) in SESSIONS.items():
            cwd = os.path.join(root, person, cwd)
            os.makedirs(cwd, exist_ok=True)
            env = env_of(root, person) | {
                "CLAUDEMESH_NAME": name,
                "CLAUDE_CODE_SESSION_ID": str(uuid.uuid4()),
            }
            params = StdioServerParameters(command=exe, args=["mcp"], env=env, cwd=cwd)
            read, write = await stack.enter_async_context(stdio_client(params))
            s = await stack.enter_async_context(ClientSession(read, write))
            await s.initialize()
            tools = sorted(t.name for t in (await s.list_tools()).tools)
            assert "send_message" in tools and "set_status" in tools, tools
            calls = [("set_status", {"status": status}), ("set_summary", {"summary": summary})]
            for g in groups:
                group, _, role = g.partition(":")
                calls.append(("join_group", {"name": group} | ({"role": role} if role else {})))
            for tool, args in calls:
                r = await s.call_tool(tool, args)
                assert not r.is_error, f"{key} {tool}: {text(r)}"
            sessions[key] = s
            print(f"session {key}: {name} ({status}) in {cwd}", flush=True)

        for step in SCENE:
            kind = step[0]
            if kind == "tool":
                _, key, tool, args = step
                r = await sessions[key].call_tool(tool, args)
                assert not r.is_error, f"{key} {tool}: {text(r)}"
                print(f"{key}: {tool} {args.get('to', '')}", flush=True)
            elif kind == "check":
                r = await sessions[step[1]].call_tool("check_messages", {})
                assert not r.is_error, f"{step[1]} check_messages: {text(r)}"
                print(f"{step[1]}: check_messages", flush=True)
            elif kind == "cli":
                _, person, argv = step
                env = os.environ | env_of(root, person)
                subprocess.run([exe, *argv], env=env, check=True, stdout=subprocess.DEVNULL)
                print(f"{person} (cli): {' '.join(argv[:2])}", flush=True)
            elif kind == "sleep":
                await anyio.sleep(step[1])
            elif kind == "minute" and os.environ.get("CLAUDEMESH_SHOT_FAST") != "1":
                print("waiting for the next minute", flush=True)
                await anyio.sleep(60.5 - time.time() % 60)

        with open(ready, "w") as f:
            f.write("ready\n")
        print("scene played; sessions stay online until SIGTERM", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
    print("sessions closed", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: sessions.py CLAUDEMESH_EXE ROOT READY_FILE")
    anyio.run(main, *sys.argv[1:])
