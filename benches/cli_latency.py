#!/usr/bin/env python3
"""What a person waits for at the command line: vault, deploy with secrets, launch, and a
`claudemesh mcp --service` server's first answers. Each figure is a fresh process timed from
spawn to exit (or to the JSON-RPC answer), interleaved where two are compared, against a broker
and agent from `claudemesh up --listen 127.0.0.1:0 --no-tui --no-claude` in a temporary home.

    cargo build --workspace --all-targets      # or --release, then BIN=target/release
    python3 benches/cli_latency.py             # BIN=target/debug N=20 by default

Prints median [min..max] in milliseconds per figure. The machine is shared: read ratios and
spreads, not single numbers.
"""
import json, os, statistics, subprocess, sys, tempfile, time

BIN = os.path.abspath(os.environ.get("BIN", "target/debug"))
N = int(os.environ.get("N", "20"))
HOME = tempfile.mkdtemp(prefix="cm-bench-")
ENV = dict(os.environ, HOME=HOME, CLAUDEMESH_CONFIG_DIR=os.path.join(HOME, "cm"),
           PATH=BIN + ":" + os.environ.get("PATH", ""))
for k in ("CLAUDEMESH_SESSION_ID", "CLAUDEMESH_LAUNCH_PID", "CLAUDEMESH_NAME", "CLAUDEMESH_MESH"):
    ENV.pop(k, None)
FIXTURE = os.path.join(BIN, "claudemesh-mcp-fixture")
TOKEN = os.path.join(ENV["CLAUDEMESH_CONFIG_DIR"], "broker", "admin.token")


def run(args, stdin=None, env=ENV):
    r = subprocess.run(args, input=stdin, capture_output=True, env=env, cwd=HOME)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {r.stderr.decode(errors='replace')}")


def timed(args, stdin=None, env=ENV):
    s = time.perf_counter()
    run(args, stdin, env)
    return (time.perf_counter() - s) * 1000


def show(name, xs):
    xs = sorted(xs)
    print(f"{name:58} {statistics.median(xs):7.1f} ms [{xs[0]:.1f}..{xs[-1]:.1f}] n={len(xs)}")


def deploy(name, env):
    return timed(["claudemesh", "deploy", name, "--command", "--admin-token-file", TOKEN, *env, "--", FIXTURE])


def service_session(service):
    """(initialize answered, tools/list answered, one tools/call) in ms, for a fresh process."""
    s = time.perf_counter()
    p = subprocess.Popen(["claudemesh", "mcp", "--service", service], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV, cwd=HOME)

    def send(o):
        p.stdin.write((json.dumps(o) + "\n").encode())
        p.stdin.flush()

    def answer(i):
        while True:
            m = json.loads(p.stdout.readline())
            if m.get("id") == i:
                return m

    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}})
    answer(1)
    t_init = (time.perf_counter() - s) * 1000
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    answer(2)
    t_list = (time.perf_counter() - s) * 1000
    c = time.perf_counter()
    send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "env", "arguments": {"name": "A"}}})
    assert "result" in answer(3)
    t_call = (time.perf_counter() - c) * 1000
    p.stdin.close()
    p.kill()
    p.wait()
    return t_init, t_list, t_call


def main():
    run(["claudemesh", "up", "--listen", "127.0.0.1:0", "--no-tui", "--no-claude"])
    try:
        run(["claudemesh", "install"])
        show("vault set KEY - (stdin)", [timed(["claudemesh", "vault", "set", "TOK", "-"], b"s3cret-value\n") for _ in range(N)])
        show("vault list", [timed(["claudemesh", "vault", "list"]) for _ in range(N)])
        show("status (for scale)", [timed(["claudemesh", "status"]) for _ in range(N)])
        run(["claudemesh", "vault", "set", "SA", "-", "--kind", "file"], b"file-secret")
        plain, sealed = [], []
        for i in range(max(N // 2, 4)):
            plain.append(deploy(f"p{i}", ["--env", "A=plain"]))
            run(["claudemesh", "undeploy", f"p{i}"])
            sealed.append(deploy(f"s{i}", ["--env", "A=$vault:TOK", "--env", "B=$vault:SA"]))
            run(["claudemesh", "undeploy", f"s{i}"])
        show("deploy until running, plain env", plain)
        show("deploy until running, two $vault: references", sealed)
        deploy("one", ["--env", "A=$vault:TOK"])
        show("call one env (CLI process)", [timed(["claudemesh", "call", "one", "env", "--arg", "name=A"]) for _ in range(N)])
        standin = dict(ENV, CLAUDEMESH_CLAUDE=os.path.join(BIN, "claudemesh-claude-standin"),
                       STANDIN_MODE="exit:0", STANDIN_RECORD=os.path.join(HOME, "standin.jsonl"))
        alone, launched = [], []
        for _ in range(N):
            alone.append(timed([standin["CLAUDEMESH_CLAUDE"]], env=standin))
            launched.append(timed(["claudemesh", "launch", "--name", "bench"], env=standin))
        show("stand-in claude alone", alone)
        show("launch + stand-in (1 running service)", launched)
        runs = [service_session("one") for _ in range(N)]
        for i, name in enumerate(["mcp --service: initialize answered after spawn",
                                  "mcp --service: tools/list answered after spawn",
                                  "mcp --service: tools/call round trip"]):
            show(name, [r[i] for r in runs])
    finally:
        subprocess.run(["claudemesh", "down"], capture_output=True, env=ENV, cwd=HOME)


if __name__ == "__main__":
    main()
