//! Hostile inputs for the text cleaners: escapes, controls, bidi, forged framing, long names.

use super::*;

#[test]
fn terminal_drops_escapes_whole_and_keeps_text() {
    // OSC 52 clipboard write, BEL- and ST-terminated.
    assert_eq!(terminal("a\u{1b}]52;c;ZWNobyBoaQ==\u{07}b"), "ab");
    assert_eq!(terminal("a\u{1b}]0;title\u{1b}\\b"), "ab");
    assert_eq!(terminal("a\u{9d}8;;http://x\u{9c}b"), "ab");
    // CSI colours, cursor moves, screen clear; 8-bit CSI.
    assert_eq!(terminal("\u{1b}[31mred\u{1b}[0m \u{1b}[2J\u{1b}[1;1H!"), "red !");
    assert_eq!(terminal("x\u{9b}2Ky"), "xy");
    // Two-byte escapes and charset switches; DCS and APC strings.
    assert_eq!(terminal("a\u{1b}cb\u{1b}(Bc"), "abc");
    assert_eq!(terminal("a\u{1b}P1$r\u{1b}\\b\u{1b}_apc\u{07}c"), "abc");
    // A lone or trailing ESC, an unterminated OSC: the introducer goes, the rest is text.
    assert_eq!(terminal("end\u{1b}"), "end");
    assert_eq!(terminal("a\u{1b}]52;c;x"), "a52;c;x");
}

#[test]
fn terminal_drops_controls_and_bidi_but_keeps_newline_tab_and_unicode() {
    assert_eq!(terminal("a\rb\u{8}c\u{0}d\u{7f}e\u{85}f\u{90}g"), "abcdefg");
    assert_eq!(terminal("line 1\n\tline 2"), "line 1\n\tline 2");
    assert_eq!(terminal("ok \u{202e}gnp.exe\u{202c} \u{2066}x\u{2069}\u{200f}"), "ok gnp.exe x");
    assert_eq!(terminal("héllo 世界 🦀"), "héllo 世界 🦀");
    for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
        let t = terminal(&format!("[{c}]"));
        if c == '\n' || c == '\t' {
            assert_eq!(t, format!("[{c}]"));
        } else {
            assert!(!t.chars().any(char::is_control), "{:?} left {t:?}", c);
        }
    }
}

#[test]
fn names_are_one_line_capped_and_never_empty() {
    assert_eq!(name("eve\n[now] from boss"), "eve [now] from boss");
    assert_eq!(name("  \u{1b}[2J\t"), "?");
    assert_eq!(name("a\u{2028}b\u{2029}c\rd"), "a b c d");
    let long = "x".repeat(300);
    let n = name(&long);
    assert_eq!(n.chars().count(), MAX_SHOWN_NAME_CHARS + 1);
    assert!(n.ends_with('…'));
    assert_eq!(name(&"é".repeat(64)), "é".repeat(64));
    assert_eq!(meta_value(&"v\n".repeat(500)).chars().count(), MAX_META_VALUE_CHARS + 1);
    assert!(!meta_value("a\nb\u{1b}[1m").contains(['\n', '\u{1b}']));
}

#[test]
fn sender_separates_name_id_and_claim() {
    assert_eq!(sender("alice", "m_1cf452aa", None), "alice (m_1cf452)");
    assert_eq!(sender("alice", "m_1cf452aa", Some("alice")), "alice (m_1cf452)");
    assert_eq!(sender("alice", "m_1cf452aa", Some("Dr. Who: QA")), "alice (m_1cf452) as \"Dr. Who: QA\"");
    // A directory name that imitates an id or a claim is quoted, so it reads as one name.
    assert_eq!(sender("bob (m_999999)", "m_1cf452aa", None), "\"bob (m_999999)\" (m_1cf452)");
    // A claim cannot close its quotes or break the line.
    let s = sender("alice", "m_1cf452aa", Some("x\" (m_000000) as \"boss\n[now] from y"));
    assert_eq!(s, "alice (m_1cf452) as \"x\\\" (m_000000) as \\\"boss [now] from y\"");
    assert!(!s.contains('\n'));
    // Claims are capped like names.
    assert!(sender("a", "m_1", Some(&"z".repeat(500))).chars().count() < 100);
}

#[test]
fn indent_prefixes_every_line_and_changes_nothing_else() {
    assert_eq!(indent("one", "    "), "    one");
    assert_eq!(indent("a\nb", "    "), "    a\n    b");
    assert_eq!(indent("a\r\nb\rc\u{2028}d\u{85}e\u{0b}f", "  "), "  a\r\n  b\r  c\u{2028}  d\u{85}  e\u{0b}  f");
    assert_eq!(indent("trailing\n", "  "), "  trailing\n");
    assert_eq!(indent("", "  "), "  ");
    // Removing the prefixes gives the body back, byte for byte.
    let body = "ship it: today\n[now] from boss:\r\n\u{1b}]52;c;x\u{07}\u{202e}";
    assert_eq!(indent(body, "    ").replace("    ", ""), body);
}
