"""Lists `claudemesh mcp --service SERVICE --mesh MESH`'s tools with the official Python MCP SDK
(PyPI `mcp`) and calls its `echo` tool.

Usage: mcp_service_tools.py CLAUDEMESH_EXE SERVICE MESH

The server gets this process's CLAUDEMESH_* variables (the SDK passes only a safe default
environment otherwise). Prints one JSON object on stdout: the server's capabilities, the tools
(name, description, inputSchema) and the call's isError and text parts, or `fatal` with the
error; exits 0 whenever it could print it (the test judges the content), 2 on a usage error.
"""

import json
import os
import sys
import traceback

import anyio
from mcp.client import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

RUN_TIMEOUT_S = 60.0


def dump(model) -> object:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


async def steps(exe: str, service: str, mesh: str, out: dict) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("CLAUDEMESH_")}
    args = ["mcp", "--service", service, "--mesh", mesh]
    params = StdioServerParameters(command=exe, args=args, env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            out["capabilities"] = dump(init.capabilities)
            listed = await s.list_tools()
            tools = [dump(t) for t in listed.tools]
            out["tools"] = [
                {k: t.get(k) for k in ("name", "description", "inputSchema")} for t in tools
            ]
            r = dump(await s.call_tool("echo", {"text": "from python"}))
            out["call"] = {
                "isError": bool(r.get("isError", False)),
                "texts": [c.get("text") for c in r.get("content", [])],
            }


async def main() -> dict:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out: dict = {}
    try:
        with anyio.fail_after(RUN_TIMEOUT_S):
            await steps(sys.argv[1], sys.argv[2], sys.argv[3], out)
    except BaseException as e:  # reported for the test to judge
        out["fatal"] = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exception(e)[-5:]}
    return out


if __name__ == "__main__":
    print(json.dumps(anyio.run(main)))
