//! Unit tests of [`super::Registry`]: the start set, services appearing and going, names.
#![allow(clippy::unwrap_used)]

use claudemesh_protocol::frames::{HostedBy, ToolInfo};
use claudemesh_protocol::scope::Scope;
use serde_json::json;

use super::*;

fn entry(name: &str, status: ServiceStatus, tools: &[&str]) -> CatalogEntry {
    CatalogEntry {
        name: name.into(),
        description: String::new(),
        source_kind: "command".into(),
        status,
        tools: tools.iter().map(|t| tool(t)).collect(),
        scope: Scope::Mesh,
        deployer: "m_0123456789".into(),
        hosted_by: HostedBy::Broker,
        updated_at: 0,
        started_at: None,
        restarts: 0,
        version: None,
        error: None,
        vault_keys: vec![],
    }
}

fn tool(name: &str) -> ToolInfo {
    ToolInfo {
        name: name.into(),
        description: Some(format!("does {name}")),
        input_schema: json!({"type": "object", "properties": {"x": {"type": "string"}}}),
    }
}

fn names(r: &Registry) -> Vec<String> {
    r.tools().iter().map(|t| t.name.to_string()).collect()
}

#[test]
fn services_running_at_start_get_no_svc_tools_new_ones_do() {
    let mut r = Registry::default();
    let c = r.catalog("team", &[entry("old", ServiceStatus::Running, &["a"])]);
    assert_eq!(c, Change::default());
    assert!(r.baseline("team") && !r.baseline("other"));
    assert!(names(&r).is_empty());

    // Deployed mid-session: offered, announced once.
    let c = r.event("team", &Event::McpDeployed(entry("tools", ServiceStatus::Running, &["echo", "add"])));
    assert!(c.listed);
    assert_eq!(
        c.added,
        [Added {
            mesh: "team".into(),
            service: "tools".into(),
            deployer: "m_0123456789".into(),
            tools: vec!["svc__tools__echo".into(), "svc__tools__add".into()]
        }]
    );
    assert_eq!(names(&r), ["svc__tools__echo", "svc__tools__add"]);
    let t = &r.tools()[0];
    assert_eq!(t.input_schema["properties"]["x"]["type"], "string");
    let d = t.description.as_deref().unwrap();
    assert!(
        d.contains("mesh service tools (mesh team, deployed by m_012345)") && d.ends_with("\n\ndoes echo"),
        "{d}"
    );
    let target = r.target("svc__tools__add").unwrap();
    assert_eq!(
        (target.mesh.as_deref(), target.service.as_str(), target.tool.as_str()),
        (Some("team"), "tools", "add")
    );
    assert!(r.target("svc__old__a").is_none() && r.target("send_message").is_none());

    // The same entry again changes nothing; a tools change does.
    assert_eq!(
        r.event("team", &Event::McpUpdated(entry("tools", ServiceStatus::Running, &["echo", "add"]))),
        Change::default()
    );
    let c = r.event("team", &Event::McpToolsChanged { name: "tools".into(), tools: vec![tool("echo")] });
    assert!(c.listed && c.added.is_empty());
    assert_eq!(names(&r), ["svc__tools__echo"]);

    // Stopped or crashed: hidden; a restart does not flap; undeployed: gone.
    let status = |s| Event::McpStatus { name: "tools".into(), status: s, error: None };
    assert!(!r.event("team", &status(ServiceStatus::Restarting)).listed);
    assert!(r.event("team", &status(ServiceStatus::Crashed)).listed);
    assert!(names(&r).is_empty());
    assert!(r.event("team", &status(ServiceStatus::Running)).listed);
    assert!(r.event("team", &Event::McpUndeployed { name: "tools".into() }).listed);
    assert!(names(&r).is_empty());

    // A start service that leaves and comes back is new; updates of one that stays are not.
    assert_eq!(
        r.event("team", &Event::McpUpdated(entry("old", ServiceStatus::Running, &["a", "b"]))),
        Change::default()
    );
    r.event("team", &Event::McpUndeployed { name: "old".into() });
    assert!(r.event("team", &Event::McpDeployed(entry("old", ServiceStatus::Running, &["a"]))).listed);
    assert_eq!(names(&r), ["svc__old__a"]);
}

#[test]
fn a_catalog_reconciles_what_events_missed() {
    let mut r = Registry::default();
    r.catalog("team", &[]);
    // Running now but no tools known: read the catalog.
    let c = r
        .event("team", &Event::McpStatus { name: "new".into(), status: ServiceStatus::Running, error: None });
    assert!(c.refetch && !c.listed);
    let c = r.catalog("team", &[entry("new", ServiceStatus::Running, &["x"])]);
    assert!(c.listed && c.added.len() == 1);
    // Gone from the catalog (undeployed or out of scope while the link was down): removed.
    assert!(r.catalog("team", &[]).listed);
    assert!(names(&r).is_empty());
    // A service not running at start is not in the start set.
    let mut r = Registry::default();
    r.catalog("team", &[entry("later", ServiceStatus::Failed, &["x"])]);
    assert!(names(&r).is_empty());
    assert!(
        r.event(
            "team",
            &Event::McpStatus { name: "later".into(), status: ServiceStatus::Running, error: None }
        )
        .listed
    );
    assert_eq!(names(&r), ["svc__later__x"]);
}

#[test]
fn names_are_clean_bounded_and_distinct() {
    let mut r = Registry::default();
    r.catalog("a", &[]);
    r.catalog("b", &[]);
    r.event("a", &Event::McpDeployed(entry("tools", ServiceStatus::Running, &["get.thing", "x"])));
    r.event("b", &Event::McpDeployed(entry("tools", ServiceStatus::Running, &["x", &"long".repeat(20)])));
    let n = names(&r);
    assert_eq!(n[0], "svc__tools__get_thing");
    for name in &n {
        assert!(
            name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{name}"
        );
    }
    assert!(
        n[1].starts_with("svc__tools__x_") && n[2].starts_with("svc__tools__x_") && n[1] != n[2],
        "{n:?}"
    );
    assert!(n[3].starts_with("svc__tools__longlong") && n[3].len() == 64, "{n:?}");
    let again = names(&r);
    assert_eq!(n, again, "deterministic");
    assert_eq!(r.target(&n[2]).unwrap().mesh.as_deref(), Some("b"));
}
