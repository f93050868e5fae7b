//! The Claude Code hooks claudemesh installs in `~/.claude/settings.json`: which events, the exact
//! entries, how to recognize ours, and adding or removing them without touching the user's own hooks.
//! Pure functions over the settings object; callers do the file I/O (`claude_settings::edit`).

use serde_json::{Map, Value, json};

/// The events we hook, in the order we write them.
pub const EVENTS: [&str; 4] = ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"];

/// Seconds Claude Code gives each of our quick hooks.
pub const TIMEOUT_SECS: u64 = 10;

/// The `Stop` hook runs in the background (`asyncRewake`) and may wait a day for a message.
pub const STOP_TIMEOUT_SECS: u64 = 86_400;

/// What Claude Code shows the model when the `Stop` hook wakes an idle session.
pub const REWAKE_MESSAGE: &str = "claudemesh: messages from your mesh arrived while you were idle:";

/// What Claude Code shows the user when the `Stop` hook wakes an idle session.
pub const REWAKE_SUMMARY: &str = "claudemesh: new mesh message";

/// What [`install`] or [`uninstall`] did to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Added,
    Replaced,
    Unchanged,
    Removed,
    Absent,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Replaced => "replaced",
            Action::Unchanged => "unchanged",
            Action::Removed => "removed",
            Action::Absent => "absent",
        }
    }
}

/// `word` for a POSIX shell: bare if it only holds `[A-Za-z0-9_./+-]`, else single-quoted with
/// `'` written as `'\''`. Claude Code runs hook commands through a shell.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./+-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Splits `line` into words the way a POSIX shell would for a simple command: blanks separate,
/// single quotes are literal, double quotes honour `\$ \` \" \\`, a backslash escapes the next
/// character. `None` if a quote is left open or the line ends in a backslash.
pub fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            '\n' => {}
                            c @ ('$' | '`' | '"' | '\\') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => match chars.next()? {
                '\n' => {}
                c => {
                    in_word = true;
                    word.push(c);
                }
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The shell command of our hook for `event`: `<exe> hook <event>`, the exe quoted.
pub fn command(exe: &str, event: &str) -> String {
    format!("{} hook {event}", shell_quote(exe))
}

/// Our hook object for `event`.
pub fn hook_entry(exe: &str, event: &str) -> Value {
    let command = command(exe, event);
    if event == "Stop" {
        json!({
            "type": "command",
            "command": command,
            "timeout": STOP_TIMEOUT_SECS,
            "asyncRewake": true,
            "rewakeMessage": REWAKE_MESSAGE,
            "rewakeSummary": REWAKE_SUMMARY,
        })
    } else {
        json!({"type": "command", "command": command, "timeout": TIMEOUT_SECS})
    }
}

/// Our matcher group for `event`: every tool for `PostToolUse`, no matcher (all) elsewhere.
pub fn group(exe: &str, event: &str) -> Value {
    if event == "PostToolUse" {
        json!({"matcher": "*", "hooks": [hook_entry(exe, event)]})
    } else {
        json!({"hooks": [hook_entry(exe, event)]})
    }
}

/// Whether `hook` is ours for `event`: its command's first word (unquoted) names a file
/// `claudemesh`, and the other words are exactly `hook <event>`.
pub fn is_ours(hook: &Value, event: &str) -> bool {
    let Some(cmd) = hook.get("command").and_then(Value::as_str) else {
        return false;
    };
    let Some(words) = shell_words(cmd) else {
        return false;
    };
    match words.as_slice() {
        [exe, verb, ev] => {
            std::path::Path::new(exe).file_name().is_some_and(|n| n == "claudemesh")
                && verb == "hook"
                && ev == event
        }
        _ => false,
    }
}

/// Checks the parts of `root` we would edit; the error says what is wrong (to follow a file name).
pub fn validate(root: &Map<String, Value>) -> Result<(), String> {
    let hooks = match root.get("hooks") {
        None => return Ok(()),
        Some(Value::Object(h)) => h,
        Some(_) => return Err("has \"hooks\" that is not a JSON object".to_owned()),
    };
    match EVENTS.iter().find(|e| hooks.get(**e).is_some_and(|v| !v.is_array())) {
        Some(e) => Err(not_array(e)),
        None => Ok(()),
    }
}

fn not_array(event: &str) -> String {
    format!("has \"hooks\".\"{event}\" that is not a JSON array")
}

/// The hook arrays of a group (`{"matcher": …, "hooks": [...]}`); `None` for a shape we do not know.
fn group_hooks(group: &Value) -> Option<&Vec<Value>> {
    group.get("hooks").and_then(Value::as_array)
}

/// (group index, hook index) of each of our hooks in an event array, in order.
fn find_ours(groups: &[Value], event: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for (h, hook) in group_hooks(group).into_iter().flatten().enumerate() {
            if is_ours(hook, event) {
                found.push((g, h));
            }
        }
    }
    found
}

/// Removes hook `h` of group `g`, and the group if that left its `hooks` empty.
fn remove_hook(groups: &mut Vec<Value>, g: usize, h: usize) {
    let Some(hooks) = groups.get_mut(g).and_then(|v| v.get_mut("hooks")).and_then(Value::as_array_mut) else {
        return;
    };
    if h < hooks.len() {
        hooks.remove(h);
    }
    if hooks.is_empty() {
        groups.remove(g);
    }
}

/// The events that have our hook (whatever its exe or timeout), in [`EVENTS`] order.
pub fn installed(root: &Map<String, Value>) -> Vec<&'static str> {
    let hooks = root.get("hooks").and_then(Value::as_object);
    EVENTS
        .into_iter()
        .filter(|e| {
            let groups = hooks.and_then(|h| h.get(*e)).and_then(Value::as_array);
            groups.is_some_and(|g| !find_ours(g, e).is_empty())
        })
        .collect()
}

/// The events that lack our hook, in [`EVENTS`] order.
pub fn missing(root: &Map<String, Value>) -> Vec<&'static str> {
    let have = installed(root);
    EVENTS.into_iter().filter(|e| !have.contains(e)).collect()
}

/// Makes each event hold exactly our current hook: appends our group at the end of the event's
/// array if there is none, replaces a stale one in place, drops duplicates. Other groups and
/// hooks are left alone. Errors (nothing changed) if [`validate`] fails.
pub fn install(root: &mut Map<String, Value>, exe: &str) -> Result<Vec<(&'static str, Action)>, String> {
    validate(root)?;
    let Value::Object(hooks) = root.entry("hooks").or_insert_with(|| Value::Object(Map::new())) else {
        return Err("has \"hooks\" that is not a JSON object".to_owned());
    };
    let mut done = Vec::new();
    for event in EVENTS {
        let Value::Array(groups) = hooks.entry(event).or_insert_with(|| Value::Array(Vec::new())) else {
            return Err(not_array(event));
        };
        done.push((event, install_event(groups, exe, event)));
    }
    Ok(done)
}

fn install_event(groups: &mut Vec<Value>, exe: &str, event: &str) -> Action {
    let found = find_ours(groups, event);
    let Some((&(g, h), duplicates)) = found.split_first() else {
        groups.push(group(exe, event));
        return Action::Added;
    };
    // Back to front, so earlier indices stay valid; all duplicates come after (g, h).
    for &(dg, dh) in duplicates.iter().rev() {
        remove_hook(groups, dg, dh);
    }
    let mut changed = !duplicates.is_empty();
    let Some(slot) = groups.get_mut(g) else {
        return Action::Unchanged;
    };
    if group_hooks(slot).is_some_and(|hs| hs.len() == 1) {
        // A group holding only our hook is ours: make it exactly our group.
        let want = group(exe, event);
        if *slot != want {
            *slot = want;
            changed = true;
        }
    } else if let Some(hook) = slot.get_mut("hooks").and_then(|hs| hs.get_mut(h)) {
        // Our hook inside a group the user shares with their own hooks: replace just the hook.
        let want = hook_entry(exe, event);
        if *hook != want {
            *hook = want;
            changed = true;
        }
    }
    if changed { Action::Replaced } else { Action::Unchanged }
}

/// Removes our hooks from every event; drops a group left with no hooks, an event array left
/// empty, and `hooks` itself if our removal left it empty. Errors (nothing changed) if
/// [`validate`] fails.
pub fn uninstall(root: &mut Map<String, Value>) -> Result<Vec<(&'static str, Action)>, String> {
    validate(root)?;
    let Some(Value::Object(hooks)) = root.get_mut("hooks") else {
        return Ok(EVENTS.into_iter().map(|e| (e, Action::Absent)).collect());
    };
    let mut done = Vec::new();
    for event in EVENTS {
        let Some(Value::Array(groups)) = hooks.get_mut(event) else {
            done.push((event, Action::Absent));
            continue;
        };
        let found = find_ours(groups, event);
        for &(g, h) in found.iter().rev() {
            remove_hook(groups, g, h);
        }
        if found.is_empty() {
            done.push((event, Action::Absent));
            continue;
        }
        if groups.is_empty() {
            // `shift_remove` keeps the order of the other events.
            hooks.shift_remove(event);
        }
        done.push((event, Action::Removed));
    }
    if hooks.is_empty() && done.iter().any(|(_, a)| *a == Action::Removed) {
        root.shift_remove("hooks");
    }
    Ok(done)
}

// The tests live in `claude_hooks/tests.rs` to keep this file short.
#[cfg(test)]
mod tests;
