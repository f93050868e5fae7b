"""Drives `claudemesh mcp` with the official Python MCP SDK (PyPI `mcp`), as a non-Rust client would.

Usage: mcp_client.py CLAUDEMESH_EXE SEND_TO MESSAGE EXPECT_REPLY

The server gets this process's CLAUDEMESH_* variables (the SDK passes only a safe default
environment otherwise). Steps, each recorded even when it fails:

1. `stdio_client` + `ClientSession`: initialize (the handshake), list tools and prompts, call
   `list_peers`, `send_message` to SEND_TO, `message_status` of that message, then
   `check_messages` until a message containing EXPECT_REPLY arrives (the test sends it), then a
   call with bad arguments (an `isError` result) and a call of an unknown tool (a JSON-RPC error).
2. The SDK's high-level `Client` in its default `mode="auto"`, which probes `server/discover`
   first and falls back to `initialize`: connect and list tools, as a new session
   (CLAUDEMESH_SESSION_ID gets the suffix `-auto`).

Prints one JSON object on stdout; exits 0 whenever it could print it (the test judges the
content), 2 on a usage error.
"""

import json
import os
import sys
import time
import traceback
from importlib import metadata

import anyio
from mcp.client import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

# Every wait is bounded: the whole run, and the wait for the reply.
RUN_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 20.0


def params(exe: str, session_suffix: str = "") -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if k.startswith("CLAUDEMESH_")}
    if session_suffix and "CLAUDEMESH_SESSION_ID" in env:
        env["CLAUDEMESH_SESSION_ID"] += session_suffix
    return StdioServerParameters(command=exe, args=["mcp"], env=env)


def dump(model) -> object:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def tool_result(r) -> dict:
    texts = [c.text for c in r.content if getattr(c, "type", None) == "text"]
    return {"is_error": r.is_error, "text": "\n".join(texts), "raw": dump(r)}


def error(e: BaseException) -> dict:
    out = {"type": type(e).__name__, "message": str(e)}
    if isinstance(e, MCPError):
        out["code"] = e.code
    else:
        out["traceback"] = traceback.format_exception(e)[-5:]
    return out


async def step(results: dict, name: str, coro_fn):
    """Runs one step; records its value or its error under `name`."""
    try:
        results[name] = await coro_fn()
        return results[name]
    except Exception as e:  # recorded for the test to report; the run goes on
        results[name] = {"error": error(e)}
        return None


async def session_steps(exe: str, send_to: str, message: str, expect_reply: str, out: dict) -> None:
    async with stdio_client(params(exe)) as (read, write):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            out["initialize"] = {
                "protocol_version": init.protocol_version,
                "server_info": dump(init.server_info),
                "capabilities": dump(init.capabilities),
                "has_instructions": bool(init.instructions),
            }

            async def list_tools():
                r = await s.list_tools()
                return [dump(t) for t in r.tools]

            await step(out, "tools", list_tools)

            async def list_prompts():
                r = await s.list_prompts()
                return [p.name for p in r.prompts]

            await step(out, "prompts", list_prompts)

            async def list_peers():
                return tool_result(await s.call_tool("list_peers", {}))

            await step(out, "list_peers", list_peers)

            async def send():
                return tool_result(
                    await s.call_tool("send_message", {"to": send_to, "message": message, "priority": "now"})
                )

            sent = await step(out, "send_message", send)

            async def status():
                text = sent["text"] if sent else ""
                if "Message id: " not in text:
                    raise RuntimeError(f"send_message gave no message id: {text!r}")
                msg_id = text.split("Message id: ", 1)[1].split()[0]
                return tool_result(await s.call_tool("message_status", {"id": msg_id}))

            await step(out, "message_status", status)

            async def check_until_reply():
                polls, seen = 0, []
                with anyio.move_on_after(REPLY_TIMEOUT_S):
                    while True:
                        polls += 1
                        r = tool_result(await s.call_tool("check_messages", {}))
                        seen.append(r["text"])
                        if r["is_error"] or expect_reply in r["text"]:
                            return {**r, "polls": polls}
                        await anyio.sleep(0.2)
                return {"timed_out": True, "polls": polls, "texts": seen[-3:]}

            await step(out, "check_messages", check_until_reply)

            async def check_again():
                return tool_result(await s.call_tool("check_messages", {}))

            await step(out, "check_messages_again", check_again)

            async def bad_args():
                return tool_result(await s.call_tool("send_message", {"to": send_to}))

            await step(out, "bad_arguments", bad_args)

            async def wrong_type():
                return tool_result(await s.call_tool("set_status", {"status": 42}))

            await step(out, "wrong_type", wrong_type)

            async def unknown_tool():
                r = await s.call_tool("no_such_tool", {})
                return {"unexpected_result": tool_result(r)}

            await step(out, "unknown_tool", unknown_tool)


async def auto_client_steps(exe: str, out: dict) -> None:
    async with Client(params(exe, "-auto")) as c:
        tools = await c.list_tools()
        out["protocol_version"] = c.session.protocol_version
        out["tools"] = sorted(t.name for t in tools.tools)


async def main() -> dict:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    exe, send_to, message, expect_reply = sys.argv[1:]
    out: dict = {"sdk": {"mcp": metadata.version("mcp"), "python": sys.version.split()[0]}}
    started = time.monotonic()
    session: dict = {}
    auto: dict = {}
    out["session"], out["auto_client"] = session, auto
    try:
        with anyio.fail_after(RUN_TIMEOUT_S):
            try:
                await session_steps(exe, send_to, message, expect_reply, session)
            except Exception as e:
                session["fatal"] = error(e)
            try:
                await auto_client_steps(exe, auto)
            except Exception as e:
                auto["fatal"] = error(e)
    except TimeoutError:
        out["timed_out_after_s"] = RUN_TIMEOUT_S
    out["seconds"] = round(time.monotonic() - started, 2)
    return out


if __name__ == "__main__":
    print(json.dumps(anyio.run(main)))
