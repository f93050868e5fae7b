//! `claudemesh-mcp-fixture`: a small MCP server over stdio for the runner's tests (echo, add,
//! sleep, crash, big, env, add_tool, spawn_child), with stray output and failure switches
//! (`FIXTURE_CRASH_ON_START`, `FIXTURE_HANG_START`, `FIXTURE_HANG_PING`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use serde_json::{Value, json};

/// The fixture's handler; `extra` is set once `add_tool` ran.
#[derive(Debug, Clone, Default)]
struct Fixture {
    extra: Arc<AtomicBool>,
    hang_ping: bool,
}

fn schema(props: Value) -> Arc<JsonObject> {
    let v = json!({"type": "object", "properties": props});
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

impl Fixture {
    fn tools(&self) -> Vec<Tool> {
        let mut tools = vec![
            Tool::new("echo", "Returns text", schema(json!({"text": {"type": "string"}}))),
            Tool::new(
                "add",
                "Adds a and b",
                schema(json!({"a": {"type": "number"}, "b": {"type": "number"}})),
            ),
            Tool::new("sleep", "Sleeps ms milliseconds", schema(json!({"ms": {"type": "integer"}}))),
            Tool::new("crash", "Exits with code 3", schema(json!({}))),
            Tool::new("big", "Returns bytes of text", schema(json!({"bytes": {"type": "integer"}}))),
            Tool::new("env", "Reports env var name", schema(json!({"name": {"type": "string"}}))),
            Tool::new("add_tool", "Adds the tool extra", schema(json!({}))),
            Tool::new("spawn_child", "Starts sleep 1000, returns its pid", schema(json!({}))),
            Tool::new(
                "read_file",
                "Reads the file at path: its text and permission bits",
                schema(json!({"path": {"type": "string"}})),
            ),
            Tool::new(
                "log_env",
                "Writes env var name's value to stderr",
                schema(json!({"name": {"type": "string"}})),
            ),
        ];
        if self.extra.load(Ordering::SeqCst) {
            tools.push(Tool::new("extra", "Added at run time", schema(json!({}))));
        }
        tools
    }
}

fn text(s: impl Into<String>) -> Result<CallToolResponse, McpError> {
    Ok(CallToolResult::success(vec![ContentBlock::text(s.into())]).into())
}

fn arg<'a>(args: &'a JsonObject, name: &str) -> Result<&'a Value, McpError> {
    args.get(name).ok_or_else(|| McpError::invalid_params(format!("missing {name}"), None))
}

fn num(args: &JsonObject, name: &str) -> Result<f64, McpError> {
    arg(args, name)?.as_f64().ok_or_else(|| McpError::invalid_params(format!("{name}: not a number"), None))
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("claudemesh-mcp-fixture", env!("CARGO_PKG_VERSION")))
    }

    async fn ping(&self, _context: RequestContext<RoleServer>) -> Result<(), McpError> {
        if self.hang_ping {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        match request.name.as_ref() {
            "echo" => text(arg(&args, "text")?.as_str().unwrap_or_default()),
            "add" => text((num(&args, "a")? + num(&args, "b")?).to_string()),
            "sleep" => {
                tokio::time::sleep(Duration::from_millis(num(&args, "ms")? as u64)).await;
                text("slept")
            }
            "crash" => std::process::exit(3),
            "big" => text("x".repeat(num(&args, "bytes")? as usize)),
            "env" => {
                let name = arg(&args, "name")?.as_str().unwrap_or_default();
                let value = std::env::var(name).ok();
                text(json!({"set": value.is_some(), "value": value}).to_string())
            }
            "add_tool" => {
                self.extra.store(true, Ordering::SeqCst);
                let _ = context.peer.notify_tool_list_changed().await;
                text("added")
            }
            "spawn_child" => match std::process::Command::new("sleep").arg("1000").spawn() {
                Ok(child) => text(child.id().to_string()),
                Err(e) => Err(McpError::internal_error(format!("cannot spawn sleep: {e}"), None)),
            },
            "read_file" => {
                use std::os::unix::fs::PermissionsExt;
                let path = arg(&args, "path")?.as_str().unwrap_or_default();
                let read = std::fs::read_to_string(path).and_then(|t| Ok((t, std::fs::metadata(path)?)));
                match read {
                    Ok((t, m)) => {
                        let mode = format!("{:o}", m.permissions().mode() & 0o777);
                        text(json!({"text": t, "mode": mode}).to_string())
                    }
                    Err(e) => Err(McpError::invalid_params(format!("cannot read {path}: {e}"), None)),
                }
            }
            "log_env" => {
                let name = arg(&args, "name")?.as_str().unwrap_or_default();
                eprintln!("the value of {name} is {}", std::env::var(name).unwrap_or_default());
                text("logged")
            }
            "extra" => text("extra"),
            other => Err(McpError::invalid_params(format!("unknown tool {other:?}"), None)),
        }
    }
}

/// `FIXTURE_CRASH_ON_START=1` exits at once; `=after-first` exits only when a marker file
/// in the working directory says it started before (so the first start succeeds).
fn crash_on_start() -> bool {
    match std::env::var("FIXTURE_CRASH_ON_START").as_deref() {
        Ok("1") => true,
        Ok("after-first") => {
            let marker = std::path::Path::new("fixture-started");
            marker.exists() || std::fs::write(marker, b"").is_err()
        }
        _ => false,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    if crash_on_start() {
        eprintln!("fixture crashing on start");
        return std::process::ExitCode::from(1);
    }
    eprintln!("fixture ready");
    println!("stray stdout line");
    if std::env::var("FIXTURE_HANG_START").is_ok_and(|v| v == "1") {
        std::future::pending::<()>().await;
    }
    let fixture = Fixture {
        hang_ping: std::env::var("FIXTURE_HANG_PING").is_ok_and(|v| v == "1"),
        ..Default::default()
    };
    match fixture.serve(rmcp::transport::stdio()).await {
        Ok(running) => {
            let _ = running.waiting().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fixture: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
