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
    };
    v.extend([
        ("1-5 / tab / shift-tab", "switch view"),
        ("[ / ]", "previous / next mesh (or all)"),
        ("/", "filter this table; esc clears"),
        ("↑↓ j k · pgup pgdn · g G", "move"),
        ("mouse", "click tabs and rows, wheel scrolls"),
        ("r (agent gone)", "reconnect now"),
        ("?", "this help"),
        ("q / ctrl-c", "quit"),
    ]);
    v.push(("compose box", "enter send · tab field · ctrl-p priority · alt-enter newline"));
    v
}

pub(super) fn help(f: &mut Frame<'_>, s: &State, t: &Theme, body: Rect) {
    let keys = keys(s.view);
    let w = keys.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(10) + 2;
    let lines: Vec<Line<'_>> = keys
        .iter()
        .map(|(k, d)| Line::from(vec![Span::styled(format!("{k:<w$}"), t.accent()), Span::raw(*d)]))
        .collect();
    let area = centered(body, 90, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    let title = format!("Keys: {} (esc closes)", s.view.title());
    f.render_widget(Paragraph::new(lines).block(pane(title, true, t)).wrap(Wrap { trim: false }), area);
}

/// A field with its cursor shown as a reversed cell.
fn field_line<'a>(label: &'a str, f: &Field, focused: bool, t: &Theme) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    let chars: Vec<char> = f.text.chars().collect();
    let mut cur = vec![Span::styled(label, t.dim())];
    let push = |cur: &mut Vec<Span<'a>>, text: String, style| cur.push(Span::styled(text, style));
    let mut buf = String::new();
    for (i, c) in chars.iter().enumerate() {
        if focused && i == f.cursor {
            push(&mut cur, std::mem::take(&mut buf), Default::default());
            let shown = if *c == '\n' { ' ' } else { *c };
            push(&mut cur, shown.to_string(), t.selected());
        } else if *c != '\n' {
            buf.push(*c);
        }
        if *c == '\n' {
            push(&mut cur, std::mem::take(&mut buf), Default::default());
            lines.push(Line::from(std::mem::take(&mut cur)));
            cur.push(Span::raw(" ".repeat(label.chars().count())));
        }
    }
    push(&mut cur, buf, Default::default());
    if focused && f.cursor >= chars.len() {
        push(&mut cur, " ".into(), t.selected());
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
    lines.extend(field_line("message  ", &c.body, c.focus == ComposeFocus::Body, t));
    if let Some(e) = &c.error {
        lines.push(Line::styled(format!("✖ {e}"), t.bad()));
    }
    let state = if c.sending { "sending…" } else { "enter send · esc cancel · tab to/message" };
    lines.push(Line::styled(state, t.dim()));
    let h = (lines.len() as u16 + 2).min(body.height);
    let area = Rect::new(body.x, body.y + body.height - h, body.width, h);
    f.render_widget(Clear, area);
    let title = format!("Message on {}", c.mesh);
    f.render_widget(Paragraph::new(lines).block(pane(title, true, t)).wrap(Wrap { trim: false }), area);
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
fn one_line_field<'a>(label: &'a str, f: &Field, focused: bool, width: usize, t: &Theme) -> Line<'a> {
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
