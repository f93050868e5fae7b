//! What the service verbs share: parsing a scope (`group:ops`, `members:alice,bob`, JSON), env
//! pairs, package specs and call arguments, and printing a service's untrusted text.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use claudemesh_protocol::local::LocalSource;
use serde_json::{Map, Value, json};

/// A scope as the CLI takes it, in its JSON form: `peer`, `mesh`, `group:NAME`,
/// `groups:a,b`, `role:admin|member`, `members:alice,bob` (names or ids; the agent resolves
/// them), or the JSON itself.
pub fn parse_scope(s: &str) -> anyhow::Result<Value> {
    let s = s.trim();
    let list = |v: &str| -> Vec<String> {
        v.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
    };
    let v = match s.split_once(':') {
        _ if s.starts_with('{') || s.starts_with('"') => {
            serde_json::from_str(s).with_context(|| format!("scope {s:?} is not valid JSON"))?
        }
        None if s == "peer" || s == "mesh" => json!(s),
        Some(("group", g)) if !g.trim().is_empty() => json!({ "group": g.trim() }),
        Some(("groups", g)) if !list(g).is_empty() => json!({ "groups": list(g) }),
        Some(("role", r)) if r == "admin" || r == "member" => json!({ "role": r }),
        Some(("members", m)) if !list(m).is_empty() => json!({ "members": list(m) }),
        _ => bail!(
            "unknown scope {s:?}: use peer, mesh, group:NAME, groups:a,b, role:admin|member, \
             members:alice,bob, or the scope's JSON"
        ),
    };
    // Names are resolved by the agent; the shape is checked here already.
    if v.get("members").is_none() {
        claudemesh_protocol::scope::Scope::from_json(&v)?;
    }
    Ok(v)
}

/// `KEY=VALUE` pairs. The error names the key, never the value.
pub fn parse_env(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--env takes KEY=VALUE; one argument has no `=`");
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--env: {k:?} is not a variable name (letters, digits, _)");
        }
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

/// `pkg` or `pkg@1.2.3` (a scoped `@org/pkg@1` too).
pub fn npx(spec: &str) -> LocalSource {
    match spec.rfind('@') {
        Some(i) if i > 0 => {
            LocalSource::Npx { package: spec[..i].to_string(), version: Some(spec[i + 1..].to_string()) }
        }
        _ => LocalSource::Npx { package: spec.to_string(), version: None },
    }
}

/// `pkg` or `pkg==1.2.3`.
pub fn uvx(spec: &str) -> LocalSource {
    match spec.split_once("==") {
        Some((p, v)) => LocalSource::Uvx { package: p.to_string(), version: Some(v.to_string()) },
        None => LocalSource::Uvx { package: spec.to_string(), version: None },
    }
}

/// A tool's arguments: the `--json-args` object, with each `--arg k=v` added (the value as
/// JSON when it parses, else as a string).
pub fn call_arguments(json_args: Option<&str>, args: &[String]) -> anyhow::Result<Value> {
    let mut obj = match json_args {
        Some(j) => match serde_json::from_str::<Value>(j).context("--json-args is not valid JSON")? {
            Value::Object(m) => m,
            _ => bail!("--json-args must be a JSON object, like '{{\"text\":\"hi\"}}'"),
        },
        None => Map::new(),
    };
    for a in args {
        let Some((k, v)) = a.split_once('=') else { bail!("--arg takes KEY=VALUE, got {a:?}") };
        let v = serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_string()));
        obj.insert(k.to_string(), v);
    }
    Ok(Value::Object(obj))
}

/// The text contents of an MCP `CallToolResult` (other contents as their JSON), and whether
/// it says `isError`.
pub fn result_text(result: &Value) -> (Vec<String>, bool) {
    let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let parts = result
        .get("content")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|c| {
                    match (c.get("type").and_then(Value::as_str), c.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => t.to_string(),
                        _ => c.to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    (parts, is_error)
}

/// Uptime from `started_at` (Unix ms), like `3h 2m`.
pub fn uptime(started_at: Option<u64>) -> String {
    let Some(ms) = started_at else { return "-".into() };
    let secs = super::now_unix().saturating_sub(ms / 1000);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_in_short_form_and_json() {
        assert_eq!(parse_scope("peer").unwrap(), json!("peer"));
        assert_eq!(parse_scope("mesh").unwrap(), json!("mesh"));
        assert_eq!(parse_scope("group:ops").unwrap(), json!({"group":"ops"}));
        assert_eq!(parse_scope("groups:a, b").unwrap(), json!({"groups":["a","b"]}));
        assert_eq!(parse_scope("role:admin").unwrap(), json!({"role":"admin"}));
        assert_eq!(parse_scope("members:alice,Bob").unwrap(), json!({"members":["alice","Bob"]}));
        assert_eq!(parse_scope(r#"{"group":"ops"}"#).unwrap(), json!({"group":"ops"}));
        for bad in [
            "world",
            "group:",
            "role:owner",
            "members:",
            "groups:,",
            "{bad",
            r#"{"teams":["a"]}"#,
            "group:Bad Name",
        ] {
            assert!(parse_scope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_pairs_and_errors_without_values() {
        let e = parse_env(&["A=1".into(), "B_2=x=y".into()]).unwrap();
        assert_eq!(e["A"], "1");
        assert_eq!(e["B_2"], "x=y");
        let err = parse_env(&["SECRETVALUE".into()]).unwrap_err().to_string();
        assert!(!err.contains("SECRETVALUE"), "{err}");
        assert!(parse_env(&["BAD KEY=1".into()]).is_err());
    }

    #[test]
    fn package_specs() {
        assert_eq!(npx("pkg"), LocalSource::Npx { package: "pkg".into(), version: None });
        assert_eq!(npx("pkg@1.2"), LocalSource::Npx { package: "pkg".into(), version: Some("1.2".into()) });
        assert_eq!(npx("@org/pkg"), LocalSource::Npx { package: "@org/pkg".into(), version: None });
        assert_eq!(
            npx("@org/pkg@2"),
            LocalSource::Npx { package: "@org/pkg".into(), version: Some("2".into()) }
        );
        assert_eq!(
            uvx("mcp-x==0.3"),
            LocalSource::Uvx { package: "mcp-x".into(), version: Some("0.3".into()) }
        );
        assert_eq!(uvx("mcp-x"), LocalSource::Uvx { package: "mcp-x".into(), version: None });
    }

    #[test]
    fn call_arguments_take_json_values_else_strings() {
        let v =
            call_arguments(Some(r#"{"a":1}"#), &["b=2".into(), "c=hi".into(), "d=[1,2]".into(), "e=".into()])
                .unwrap();
        assert_eq!(v, json!({"a":1,"b":2,"c":"hi","d":[1,2],"e":""}));
        assert!(call_arguments(Some("[1]"), &[]).is_err());
        assert!(call_arguments(None, &["novalue".into()]).is_err());
        assert_eq!(call_arguments(None, &[]).unwrap(), json!({}));
    }

    #[test]
    fn result_text_and_error_flag() {
        let r = json!({"content":[{"type":"text","text":"hi"},{"type":"image","data":"x"}],"isError":true});
        let (t, e) = result_text(&r);
        assert!(e);
        assert_eq!(t[0], "hi");
        assert!(t[1].contains("image"));
        assert_eq!(result_text(&json!({"content":[]})), (vec![], false));
    }
}
