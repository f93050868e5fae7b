#!/usr/bin/env python3
"""Time from spawning `claudemesh mcp` to its answer to `initialize` (issue 16: <= 50 ms), in a
fresh home with no agent running. `python3 benches/mcp_initialize.py [path/to/claudemesh]`
(default target/debug/claudemesh). Prints median [min..max] of 7 spawns."""
import json, os, subprocess, sys, tempfile, time, statistics
exe = sys.argv[1] if len(sys.argv) > 1 else "target/debug/claudemesh"
xs = []
for i in range(7):
    home = tempfile.mkdtemp(prefix="mcpinit-")
    env = dict(os.environ, HOME=home, CLAUDEMESH_CONFIG_DIR=os.path.join(home, "cm"))
    t = time.perf_counter()
    p = subprocess.Popen([exe, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}) + "\n").encode()); p.stdin.flush()
    line = p.stdout.readline()
    xs.append((time.perf_counter() - t) * 1000)
    ok = b'"result"' in line
    p.kill(); p.wait()
    if not ok: print("no result:", line[:200])
xs.sort(); print(f"claudemesh mcp: initialize answered after spawn: median {statistics.median(xs):.1f} ms [{xs[0]:.1f}..{xs[-1]:.1f}] n={len(xs)}")
