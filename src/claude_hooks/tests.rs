//! Unit tests of `claude_hooks`: quoting round-trips, recognizing our hooks, install/uninstall edits.

use serde_json::{Map, Value, json};

use super::*;

const EXE: &str = "/usr/local/bin/claudemesh";

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// A settings file with the user's own hooks in two of our events, one event of theirs, other keys.
fn user_settings() -> Map<String, Value> {
    obj(json!({
        "model": "opus",
        "hooks": {
            "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "lint.sh"}]}],
            "Notification": [{"hooks": [{"type": "command", "command": "notify-send hi"}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "say done", "timeout": 5}]}]
        },
        "permissions": {"allow": ["Bash(ls:*)"]}
    }))
}

#[test]
fn quoting_leaves_plain_paths_bare_and_quotes_the_rest() {
    assert_eq!(shell_quote("/usr/local/bin/claudemesh"), "/usr/local/bin/claudemesh");
    assert_eq!(shell_quote("/a-b/c_d/e+f.1"), "/a-b/c_d/e+f.1");
    assert_eq!(shell_quote("/Users/Jo Smith/bin/claudemesh"), "'/Users/Jo Smith/bin/claudemesh'");
    assert_eq!(shell_quote("/o'neil/claudemesh"), r"'/o'\''neil/claudemesh'");
    assert_eq!(shell_quote("/x/$HOME/`id`"), "'/x/$HOME/`id`'");
    assert_eq!(shell_quote(""), "''");
    assert_eq!(command("/opt/my tools/claudemesh", "Stop"), "'/opt/my tools/claudemesh' hook Stop");
}

#[test]
fn quoted_words_unquote_to_the_original() {
    for w in
        ["/usr/bin/claudemesh", "/a b/c", "it's", "''", "a\\b", "$HOME `x` \"q\"", "tab\there", "é ü", ""]
    {
        let line = format!("{} hook Stop", shell_quote(w));
        assert_eq!(shell_words(&line).unwrap(), [w, "hook", "Stop"], "{line}");
    }
}

#[test]
fn shell_words_handles_double_quotes_escapes_and_open_quotes() {
    assert_eq!(shell_words(r#""/a b/x" 'c d'e f\ g"#).unwrap(), ["/a b/x", "c de", "f g"]);
    assert_eq!(shell_words(r#""\$\"\\\n""#).unwrap(), [r#"$"\\n"#]);
    assert_eq!(shell_words("  a \t b\n").unwrap(), ["a", "b"]);
    assert_eq!(shell_words("a\\\nb").unwrap(), ["ab"]);
    assert!(shell_words("'open").is_none());
    assert!(shell_words("\"open").is_none());
    assert!(shell_words("trailing\\").is_none());
}

#[test]
fn recognizes_our_hooks_by_file_name_and_exact_arguments() {
    let ours = |c: &str, e: &str| is_ours(&json!({"type": "command", "command": c}), e);
    assert!(ours("/usr/bin/claudemesh hook Stop", "Stop"));
    assert!(ours("claudemesh hook Stop", "Stop"));
    assert!(ours("'/Users/Jo Smith/bin/claudemesh' hook SessionStart", "SessionStart"));
    assert!(ours("\"/a b/claudemesh\" hook PostToolUse", "PostToolUse"));
    assert!(ours("  claudemesh   hook Stop ", "Stop"));
    assert!(!ours("/usr/bin/claudemesh hook Stop", "SessionStart"), "other event's hook");
    assert!(!ours("/usr/bin/claudemesh hook Stop --verbose", "Stop"));
    assert!(!ours("/usr/bin/claudemesh hook Stop; rm -rf ~", "Stop"));
    assert!(!ours("/usr/bin/claudemesh-dev hook Stop", "Stop"));
    assert!(!ours("/usr/bin/claudemesh hook", "Stop"));
    assert!(!ours("echo claudemesh hook Stop", "Stop"));
    assert!(!ours("'/usr/bin/claudemesh hook Stop", "Stop"), "open quote");
    assert!(!is_ours(&json!({"type": "command", "command": 3}), "Stop"));
    assert!(!is_ours(&json!("claudemesh hook Stop"), "Stop"));
    for e in EVENTS {
        assert!(is_ours(&hook_entry("/a b/it's/claudemesh", e), e));
    }
}

#[test]
fn install_into_nothing_writes_exactly_our_hooks() {
    let mut root = Map::new();
    let done = install(&mut root, EXE).unwrap();
    assert_eq!(done, EVENTS.map(|e| (e, Action::Added)));
    let cmd = |e: &str| format!("{EXE} hook {e}");
    let want = json!({"hooks": {
        "SessionStart": [{"hooks": [{"type": "command", "command": cmd("SessionStart"), "timeout": 10}]}],
        "UserPromptSubmit": [{"hooks": [{"type": "command", "command": cmd("UserPromptSubmit"), "timeout": 10}]}],
        "PostToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": cmd("PostToolUse"), "timeout": 10}]}],
        "Stop": [{"hooks": [{"type": "command", "command": cmd("Stop"), "timeout": 86400, "asyncRewake": true,
            "rewakeMessage": "claudemesh: messages from your mesh arrived while you were idle:",
            "rewakeSummary": "claudemesh: new mesh message"}]}]
    }});
    // Same text, so the same key order too.
    assert_eq!(serde_json::to_string(&Value::Object(root.clone())).unwrap(), want.to_string());
    assert_eq!(installed(&root), EVENTS);
    assert!(missing(&root).is_empty());
}

#[test]
fn install_appends_after_the_users_groups_and_uninstall_restores_them() {
    let original = user_settings();
    let mut root = original.clone();
    install(&mut root, EXE).unwrap();
    let v = Value::Object(root.clone());
    assert_eq!(keys(&v), ["model", "hooks", "permissions"]);
    assert_eq!(
        keys(&v["hooks"]),
        ["PostToolUse", "Notification", "Stop", "SessionStart", "UserPromptSubmit"]
    );
    assert_eq!(v["hooks"]["PostToolUse"][0], original["hooks"]["PostToolUse"][0]);
    assert_eq!(v["hooks"]["PostToolUse"][1], group(EXE, "PostToolUse"));
    assert_eq!(v["hooks"]["Stop"][0], original["hooks"]["Stop"][0]);
    assert_eq!(v["hooks"]["Stop"][1], group(EXE, "Stop"));
    assert_eq!(v["hooks"]["Notification"], original["hooks"]["Notification"]);

    // Idempotent.
    let before = root.clone();
    assert_eq!(install(&mut root, EXE).unwrap(), EVENTS.map(|e| (e, Action::Unchanged)));
    assert_eq!(root, before);

    let done = uninstall(&mut root).unwrap();
    assert_eq!(done, EVENTS.map(|e| (e, Action::Removed)));
    assert_eq!(root, original);
    assert_eq!(
        serde_json::to_string(&Value::Object(root.clone())).unwrap(),
        serde_json::to_string(&Value::Object(original.clone())).unwrap(),
        "same key order"
    );
    assert_eq!(uninstall(&mut root).unwrap(), EVENTS.map(|e| (e, Action::Absent)));
    assert_eq!(root, original);
}

#[test]
fn uninstall_drops_hooks_only_when_our_removal_empties_it() {
    let mut root = obj(json!({"a": 1}));
    install(&mut root, EXE).unwrap();
    uninstall(&mut root).unwrap();
    assert_eq!(Value::Object(root), json!({"a": 1}));

    // The user's empty arrays and an empty `hooks` we did not touch stay.
    let mut root = obj(json!({"hooks": {"Stop": [], "Other": []}}));
    assert_eq!(uninstall(&mut root).unwrap(), EVENTS.map(|e| (e, Action::Absent)));
    assert_eq!(Value::Object(root), json!({"hooks": {"Stop": [], "Other": []}}));
}

#[test]
fn stale_entries_are_replaced_in_place_and_duplicates_dropped() {
    let user = json!({"hooks": [{"type": "command", "command": "mine.sh"}]});
    let stale =
        json!({"hooks": [{"type": "command", "command": "/old/claudemesh hook Stop", "timeout": 60}]});
    let mut root = obj(json!({"hooks": {
        "Stop": [stale.clone(), user.clone(), stale.clone()],
        "PostToolUse": [{"hooks": [{"type": "command", "command": "/old/claudemesh hook PostToolUse"}]}]
    }}));
    let done = install(&mut root, EXE).unwrap();
    assert_eq!(done[3], ("Stop", Action::Replaced));
    assert_eq!(done[2], ("PostToolUse", Action::Replaced));
    let v = Value::Object(root.clone());
    assert_eq!(v["hooks"]["Stop"], json!([group(EXE, "Stop"), user]));
    assert_eq!(v["hooks"]["PostToolUse"], json!([group(EXE, "PostToolUse")]), "matcher restored");
    assert_eq!(keys(&v["hooks"]), ["Stop", "PostToolUse", "SessionStart", "UserPromptSubmit"]);
}

#[test]
fn our_hook_in_a_shared_group_is_replaced_or_removed_alone() {
    let mine = json!({"type": "command", "command": "mine.sh"});
    let old = json!({"type": "command", "command": "claudemesh hook PostToolUse", "timeout": 3});
    let mut root =
        obj(json!({"hooks": {"PostToolUse": [{"matcher": "Edit", "hooks": [mine.clone(), old]}]}}));
    install(&mut root, EXE).unwrap();
    let v = Value::Object(root.clone());
    let want = json!([{"matcher": "Edit", "hooks": [mine.clone(), hook_entry(EXE, "PostToolUse")]}]);
    assert_eq!(v["hooks"]["PostToolUse"], want);
    uninstall(&mut root).unwrap();
    let v = Value::Object(root);
    assert_eq!(v["hooks"], json!({"PostToolUse": [{"matcher": "Edit", "hooks": [mine]}]}));
}

#[test]
fn malformed_hooks_are_refused_and_left_alone() {
    for bad in [
        json!({"hooks": []}),
        json!({"hooks": "x"}),
        json!({"hooks": {"Stop": {"hooks": []}}}),
        json!({"hooks": {"SessionStart": null}}),
    ] {
        let mut root = obj(bad.clone());
        let err = install(&mut root, EXE).unwrap_err();
        assert!(err.contains("\"hooks\""), "{err}");
        assert_eq!(Value::Object(root.clone()), bad);
        assert!(uninstall(&mut root).is_err());
        assert_eq!(Value::Object(root), bad);
    }
    // Groups of shapes we do not know are skipped, not refused.
    let mut root = obj(json!({"hooks": {"Stop": [3, {"x": 1}]}}));
    install(&mut root, EXE).unwrap();
    assert_eq!(Value::Object(root)["hooks"]["Stop"], json!([3, {"x": 1}, group(EXE, "Stop")]));
}

#[test]
fn installed_and_missing_report_each_event() {
    let mut root = user_settings();
    assert!(installed(&root).is_empty());
    assert_eq!(missing(&root), EVENTS);
    install(&mut root, "/elsewhere/claudemesh").unwrap();
    let Some(Value::Object(hooks)) = root.get_mut("hooks") else { panic!() };
    hooks.shift_remove("SessionStart");
    assert_eq!(installed(&root), ["UserPromptSubmit", "PostToolUse", "Stop"]);
    assert_eq!(missing(&root), ["SessionStart"]);
}
