//! The dialogs: help (every key of the current view), the compose box, a confirmation, a
//! one-line prompt and a notice whose text stays selectable.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Borders, Clear, Paragraph, Wrap};

use super::layout::centered;
use super::pane;
use super::theme::{Theme, priority_label};
use crate::state::{Compose, ComposeFocus, Confirm, Field, Prompt, State, View};

/// Every key: the view's, then the global ones.
pub fn keys(view: View) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<(&str, &str)> = match view {
        View::Peers => vec![("m", "message the selected session"), ("M", "message its (first) group")],
        View::Members => vec![
            ("m", "message the selected member"),
            ("e", "change role and groups (admins)"),
            ("d / Del", "remove from the mesh (admins, asks first)"),
            ("p", "accept a changed key after comparing safety codes"),
        ],
        View::Messages => vec![
            ("enter / → / l", "open the conversation (marks it read)"),
            ("esc / ← / h", "back to the list"),
            ("m / c", "write in this conversation"),
            ("r", "mark this conversation read"),
            ("R", "mark every message read"),
            ("j k (thread)", "scroll the thread"),
        ],
        View::Events => vec![("G / End", "follow the newest")],
        View::Meshes => vec![
            ("J", "join a mesh with an invite link"),
            ("i", "create an invite (admins) and copy its link"),
            ("L", "leave the selected mesh (asks first)"),
            ("enter / s", "show only this mesh"),
        ],
        View::Services => vec![
            ("← → / h l", "select a tool of the selected service (the detail pane marks it ▶)"),
            ("enter / c", "call the selected tool (a form from its schema; tab moves, space cycles choices)"),
            ("D", "deploy a service (name, source, package/url/path, scope, env)"),
            ("U", "update the selected service: fetch and restart (asks first)"),
            ("X", "undeploy the selected service (asks first)"),
            ("S", "change its scope: peer, mesh, group:g, groups:a,b, role:r, members:a,b"),
        ],
        View::Vault => vec![
            ("a", "add a secret: key, value (typed masked) or a file to read, kind, mount path, description"),
            ("d / Del", "delete the selected entry (asks first)"),
            ("in a deploy", "reference it in env as $vault:KEY; values are never shown here"),
        ],
        View::Skills => vec![
            ("enter", "read the selected skill: instructions and files (j k pgup pgdn scroll, esc closes)"),
            ("s", "share a skill from a SKILL.md file or a directory with SKILL.md and text files"),
            ("d / Del", "remove the selected skill (its author or an admin; asks first)"),
            ("/", "search names, descriptions and tags (enter asks the broker too)"),
        ],
    };
    v.extend([
        ("1-8 / tab / shift-tab", "switch view"),
        ("[ / ]", "previous / next mesh (or all)"),
        ("/", "filter this table; esc clears"),
        ("↑↓ j k · pgup pgdn · g G", "move"),
        ("mouse", "click tabs and rows, wheel scrolls"),
        ("r (agent gone)", "reconnect now"),
        ("?", "this help"),
        ("q / ctrl-c", "quit"),
    ]);
    v.push(("compose box", "enter send · tab field · ctrl-p priority · alt-enter new line"));
    v
}

pub(super) fn help(f: &mut Frame<'_>, s: &State, t: &Theme, body: Rect) {
    let keys = keys(s.view);
    let w = keys.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(10) + 2;
    let width = body.width.min(90);
    // Each description wraps under itself, after the key column.
    let room = (width as usize).saturating_sub(w + 2).max(10);
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (k, d) in &keys {
        for (i, part) in super::messages::wrap(d, room).into_iter().enumerate() {
            let key = if i == 0 { format!("{k:<w$}") } else { " ".repeat(w) };
            lines.push(Line::from(vec![Span::styled(key, t.accent()), Span::raw(part)]));
        }
    }
    let area = centered(body, width, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    let title = format!("Keys: {} (esc closes)", s.view.title());
    f.render_widget(Paragraph::new(lines).block(pane(title, true, t)), area);
}

/// A multi-line field with its cursor shown as a reversed cell, broken into rows of `width`
/// columns (the label's width included) under itself.
fn field_line<'a>(label: &'a str, f: &Field, focused: bool, width: usize, t: &Theme) -> Vec<Line<'a>> {
    let indent = label.chars().count();
    let room = width.saturating_sub(indent + 1).max(8);
    let mut lines = Vec::new();
    let mut cur = vec![Span::styled(label, t.dim())];
    let (mut buf, mut col) = (String::new(), 0usize);
    let flush_row = |cur: &mut Vec<Span<'a>>, buf: &mut String, lines: &mut Vec<Line<'a>>| {
        cur.push(Span::raw(std::mem::take(buf)));
        lines.push(Line::from(std::mem::take(cur)));
        cur.push(Span::raw(" ".repeat(indent)));
    };
    for (i, c) in f.text.chars().enumerate() {
        if col == room {
            flush_row(&mut cur, &mut buf, &mut lines);
            col = 0;
        }
        if focused && i == f.cursor {
            cur.push(Span::raw(std::mem::take(&mut buf)));
            cur.push(Span::styled(if c == '\n' { " ".into() } else { c.to_string() }, t.selected()));
        } else if c != '\n' {
            buf.push(c);
        }
        col += 1;
        if c == '\n' {
            flush_row(&mut cur, &mut buf, &mut lines);
            col = 0;
        }
    }
    cur.push(Span::raw(buf));
    if focused && f.cursor >= f.text.chars().count() {
        cur.push(Span::styled(" ", t.selected()));
    }
    lines.push(Line::from(cur));
    lines
}

pub(super) fn compose(f: &mut Frame<'_>, c: &Compose, t: &Theme, body: Rect) {
    let mut lines = vec![one_line_field(
        "to       ",
        &c.to,
        c.focus == ComposeFocus::To,
        (body.width as usize).saturating_sub(2),
        t,
    )];
    lines.push(Line::from(vec![
        Span::styled("priority ", t.dim()),
        Span::styled(priority_label(c.priority), t.priority(c.priority).patch(t.bold())),
        Span::styled("  (ctrl-p: now · next · low)", t.dim()),
    ]));
    let w = (body.width as usize).saturating_sub(2);
    lines.extend(field_line("message  ", &c.body, c.focus == ComposeFocus::Body, w, t));
    if let Some(e) = &c.error {
        lines.push(Line::styled(format!("✖ {e}"), t.bad()));
    }
    let state = if c.sending { "sending…" } else { "enter send · esc cancel · tab to/message" };
    lines.push(Line::styled(state, t.dim()));
    let h = (lines.len() as u16 + 2).min(body.height);
    let area = Rect::new(body.x, body.y + body.height - h, body.width, h);
    // Taller than the screen: the end (where the cursor usually is, and the hints) stays shown.
    let overflow = (lines.len() as u16 + 2).saturating_sub(h);
    f.render_widget(Clear, area);
    let title = format!("Message on {}", c.mesh);
    f.render_widget(Paragraph::new(lines).block(pane(title, true, t)).scroll((overflow, 0)), area);
}

pub(super) fn confirm(f: &mut Frame<'_>, c: &Confirm, t: &Theme, body: Rect) {
    let lines = vec![
        Line::raw(c.text.clone()),
        Line::raw(""),
        Line::from(vec![
            Span::styled("y", t.bad()),
            Span::raw(" yes   "),
            Span::styled("n / esc", t.accent()),
            Span::raw(" no"),
        ]),
    ];
    let w = body.width.min(70);
    let inner_w = w.saturating_sub(2).max(1) as usize;
    let h = (c.text.chars().count().div_ceil(inner_w) + 4) as u16;
    let area = centered(body, w, h);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(pane(c.title.clone(), true, t)).wrap(Wrap { trim: false }),
        area,
    );
}

pub(super) fn prompt(f: &mut Frame<'_>, p: &Prompt, t: &Theme, body: Rect) {
    let w = body.width.min(100);
    let inner = w.saturating_sub(2) as usize;
    let mut lines = vec![one_line_field("› ", &p.field, !p.busy, inner, t)];
    let mut wrapped = |text: &str, style| {
        for l in super::messages::wrap(text, inner.max(8)) {
            lines.push(Line::styled(l, style));
        }
    };
    wrapped(&p.hint, t.dim());
    if let Some(e) = &p.error {
        wrapped(&format!("✖ {e}"), t.bad());
    }
    wrapped(if p.busy { "working…" } else { "enter ok · esc cancel" }, t.dim());
    let area = centered(body, w, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(Paragraph::new(lines).block(pane(p.title.clone(), true, t)), area);
}

/// A one-line field in `width` columns: a long text scrolls sideways to keep the cursor in
/// view (`…` marks what is cut), never wraps.
pub(super) fn one_line_field<'a>(
    label: &'a str,
    f: &Field,
    focused: bool,
    width: usize,
    t: &Theme,
) -> Line<'a> {
    let chars: Vec<char> = f.text.chars().collect();
    let room = width.saturating_sub(label.chars().count() + 1).max(4);
    let start = if f.cursor >= room { f.cursor + 1 - room } else { 0 };
    let end = (start + room).min(chars.len());
    let mut spans = vec![Span::styled(label, t.dim())];
    let mut shown: String = chars[start..end].iter().collect();
    if start > 0 {
        shown.replace_range(..shown.char_indices().nth(1).map_or(shown.len(), |(b, _)| b), "…");
    }
    let at = f.cursor - start;
    if !focused {
        spans.push(Span::raw(shown));
        return Line::from(spans);
    }
    let before: String = shown.chars().take(at).collect();
    let cur: String = shown.chars().nth(at).map_or(" ".into(), |c| c.to_string());
    let after: String = shown.chars().skip(at + 1).collect();
    spans.extend([Span::raw(before), Span::styled(cur, t.selected()), Span::raw(after)]);
    Line::from(spans)
}

pub(super) fn notice(f: &mut Frame<'_>, title: &str, lines: &[String], t: &Theme, body: Rect) {
    let mut text: Vec<Line<'_>> = lines.iter().map(|l| Line::raw(l.clone())).collect();
    text.push(Line::raw(""));
    text.push(Line::styled("y copy again · esc close · shift+drag selects text", t.dim()));
    let w = body.width;
    let inner_w = w.max(1) as usize;
    let h: usize = text.iter().map(|l| l.width().max(1).div_ceil(inner_w)).sum::<usize>() + 2;
    let area = centered(body, w, h as u16);
    f.render_widget(Clear, area);
    // No side borders: a link selected with the mouse carries no `│` with it.
    let block = pane(title.to_string(), true, t).borders(Borders::TOP | Borders::BOTTOM);
    f.render_widget(Paragraph::new(text).block(block).wrap(Wrap { trim: false }), area);
}
