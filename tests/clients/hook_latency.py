#!/usr/bin/env python3
"""How long `claudemesh hook PostToolUse` takes, end to end, as Claude Code runs it after every
tool call: process start, reading a 20 KB hook input, finding the session at the agent, exit.

Usage: python3 tests/clients/hook_latency.py [path/to/claudemesh] [runs]

Self-contained: a temporary config dir, a `claudemesh mcp` child of this process (so the hooks,
also children of this process, find its session by the shared parent pid, as under `claude`),
and an agent it auto-starts; all stopped at the end. Prints median and spread, with `/bin/true`
as the cost of spawning any process here.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(argv, stdin, env, runs):
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(argv, input=stdin, env=env, capture_output=True)
        samples.append((time.perf_counter() - t) * 1000)
        if r.returncode != 0:
            sys.exit(f"{argv} exited {r.returncode}: {r.stderr!r}")
    return sorted(samples[len(samples) // 10:])  # drop the warm-up tenth


def describe(label, s):
    q = lambda f: s[min(len(s) - 1, int(len(s) * f))]
    return f"{label:<28} median {statistics.median(s):6.2f} ms  p10 {q(0.1):6.2f}  p90 {q(0.9):6.2f}  max {s[-1]:6.2f}  (n={len(s)})"


def main():
    exe = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/claudemesh")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, CLAUDEMESH_CONFIG_DIR=d, CLAUDEMESH_NAME="bench")
        env.pop("CLAUDEMESH_SESSION_ID", None)
        mcp = subprocess.Popen([exe, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
        try:
            for _ in range(200):
                st = subprocess.run([exe, "agent", "status", "--json"], env=env, capture_output=True)
                if st.returncode == 0 and json.loads(st.stdout).get("local_sessions"):
                    break
                time.sleep(0.05)
            else:
                sys.exit("the MCP server never registered its session")
            hook_input = json.dumps({
                "session_id": "bench", "hook_event_name": "PostToolUse", "tool_name": "Bash",
                "tool_input": {"command": "ls"}, "tool_response": {"stdout": "x" * 20000},
            }).encode()
            hook = timed([exe, "hook", "PostToolUse"], hook_input, env, runs)
            base = timed(["/bin/true"], b"", env, runs)
            st = json.loads(subprocess.run([exe, "agent", "status", "--json"], env=env, capture_output=True).stdout)
            if st["local_sessions"][0].get("claude_session") != "bench":
                sys.exit("the hooks did not find the session; the figures would be meaningless")
            print(describe("claudemesh hook PostToolUse", hook))
            print(describe("/bin/true (spawn baseline)", base))
            print(f"ratio of medians: {statistics.median(hook) / statistics.median(base):.1f}x")
        finally:
            mcp.stdin.close()
            mcp.wait(timeout=10)
            subprocess.run([exe, "agent", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
