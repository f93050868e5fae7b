"""Lists `claudemesh mcp`'s prompts with the official Python MCP SDK (PyPI `mcp`) and gets one.

Usage: mcp_prompts.py CLAUDEMESH_EXE PROMPT

The server gets this process's CLAUDEMESH_* variables (the SDK passes only a safe default
environment otherwise). Prints one JSON object on stdout: the server's capabilities, the prompts
(name and description) and PROMPT's messages (role and text), or `fatal` with the error; exits 0
whenever it could print it (the test judges the content), 2 on a usage error.
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


async def steps(exe: str, prompt: str, out: dict) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("CLAUDEMESH_")}
    params = StdioServerParameters(command=exe, args=["mcp"], env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            out["capabilities"] = dump(init.capabilities)
            listed = await s.list_prompts()
            out["prompts"] = [{"name": p.name, "description": p.description} for p in listed.prompts]
            got = await s.get_prompt(prompt)
            out["get"] = {
                "description": got.description,
                "messages": [
                    {"role": m.role, "text": getattr(m.content, "text", None)} for m in got.messages
                ],
            }


async def main() -> dict:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out: dict = {}
    try:
        with anyio.fail_after(RUN_TIMEOUT_S):
            await steps(sys.argv[1], sys.argv[2], out)
    except BaseException as e:  # reported for the test to judge
        out["fatal"] = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exception(e)[-5:]}
    return out


if __name__ == "__main__":
    print(json.dumps(anyio.run(main)))
