//! The top two lines and the bottom one: the agent's state and each mesh's link and unread
//! count; the view tabs and the mesh selector; the footer with the view's keys, a toast or the
//! filter being typed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::theme::{Theme, link_label};
use crate::state::{AgentConn, State, View};

/// The agent line: `claudemesh  agent 0.1.0 · up 3h │ local ● 2 new │ team ◌`.
pub(super) fn header(f: &mut Frame<'_>, s: &State, t: &Theme, area: Rect) {
    let mut spans = vec![Span::styled(" claudemesh ", t.accent())];
    match &s.agent {
        AgentConn::Connecting => spans.push(Span::styled("◌ connecting to the agent…", t.warn())),
        AgentConn::Up { version, uptime_secs, at_ms, .. } => {
            let up = uptime_secs + s.now_ms.saturating_sub(*at_ms) / 1000;
            spans.push(Span::styled("● ", t.good()));
            spans.push(Span::raw(format!("agent {version} · up {}", duration(up))));
        }
        AgentConn::Gone { error, retry_at_ms } => {
            let secs = retry_at_ms.saturating_sub(s.now_ms).div_ceil(1000);
            spans.push(Span::styled(format!("✖ agent gone: {error}"), t.bad()));
            spans.push(Span::styled(format!(" · retry in {secs}s (r: now)"), t.warn()));
        }
    }
    let up = s.agent_up();
    for m in &s.meshes {
        // Without the agent, nothing is known of the links: shown as unknown, not as last seen.
        let (sym, _) = if up { link_label(m.link) } else { ("?", "") };
        spans.push(Span::styled(" │ ", t.dim()));
        let name_style =
            if s.scope.as_deref() == Some(m.slug.as_str()) { t.bold() } else { Default::default() };
        spans.push(Span::styled(m.slug.clone(), name_style));
        spans.push(Span::styled(format!(" {sym}"), if up { t.link(m.link) } else { t.dim() }));
        let unread = s.messages.unread(Some(&m.slug));
        if unread > 0 {
            spans.push(Span::styled(format!(" {unread} new"), t.unread()));
        }
        if !m.trust_warnings.is_empty() {
            spans.push(Span::styled(" ⚠ keys", t.bad()));
        }
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `3h12m`, `4d2h`, `45s`.
pub(crate) fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h{}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// How much of each tab's title is shown: all of them padded, then unpadded, then the current
/// view's whole and the others' short, then the others' numbers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Padded,
    Tight,
    Short,
    Numbers,
}

/// The tab labels and where each starts and ends (columns), as drawn: the widest that leaves
/// the mesh selector a little room.
fn tab_spans(s: &State) -> Vec<(View, String, u16, u16)> {
    let room = (s.size.0 as usize).saturating_sub(s.scope.as_deref().unwrap_or("all").chars().count() + 2);
    let fits = [Fit::Padded, Fit::Tight, Fit::Short];
    let fit = fits.into_iter().find(|f| labels_width(s, *f) <= room).unwrap_or(Fit::Numbers);
    let mut x = 1u16;
    let mut out = Vec::new();
    for (v, label) in labels(s, fit) {
        let w = label.chars().count() as u16;
        out.push((v, label, x, x + w));
        x += w + 1;
    }
    out
}

fn labels(s: &State, fit: Fit) -> Vec<(View, String)> {
    let unread = s.messages.unread(s.scope.as_deref());
    View::ALL
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let title = match fit {
                Fit::Padded | Fit::Tight => v.title(),
                _ if v == s.view => v.title(),
                Fit::Short => v.short_title(),
                Fit::Numbers => "",
            };
            let count =
                if v == View::Messages && unread > 0 { format!(" ({unread})") } else { String::new() };
            let label = match (fit, title) {
                (Fit::Padded, t) => format!(" {} {t}{count} ", i + 1),
                (_, "") => format!("{}{count}", i + 1),
                (_, t) => format!("{} {t}{count}", i + 1),
            };
            (v, label)
        })
        .collect()
}

/// Columns the tabs take at `fit` (with the space before and between them).
fn labels_width(s: &State, fit: Fit) -> usize {
    labels(s, fit).iter().map(|(_, l)| l.chars().count() + 1).sum::<usize>() + 1
}

/// The view whose tab is at column `x`.
pub fn tab_at(s: &State, x: u16) -> Option<View> {
    tab_spans(s).into_iter().find(|(_, _, a, b)| (*a..*b).contains(&x)).map(|(v, ..)| v)
}

/// The tabs and, on the right, the mesh selector.
pub(super) fn tabs(f: &mut Frame<'_>, s: &State, t: &Theme, area: Rect) {
    let mut spans = vec![Span::raw(" ")];
    for (v, label, _, _) in tab_spans(s) {
        let style = if v == s.view { t.selected().patch(t.bold()) } else { t.dim() };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw(" "));
    }
    let used: usize = spans.iter().map(|x| x.content.chars().count()).sum();
    let name = s.scope.as_deref().unwrap_or("all");
    let long = format!("mesh: {name} ([ ] change) ");
    let room = (area.width as usize).saturating_sub(used);
    let short = format!("mesh: {name} ");
    let scope = if long.chars().count() < room {
        long
    } else if short.chars().count() < room {
        short
    } else {
        format!("{name} ")
    };
    let pad = room.saturating_sub(scope.chars().count());
    if pad > 0 {
        spans.push(Span::raw(" ".repeat(pad)));
        spans.push(Span::styled(scope, t.accent()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The keys of the current view, shortly.
fn hints(s: &State) -> &'static str {
    match s.view {
        View::Peers => "m message · M message group",
        View::Members => "m message · e role/groups · d remove · p repin",
        View::Messages => "enter open · m compose · r mark read · esc back",
        View::Events => "g/G first/last",
        View::Meshes => "J join · i invite · L leave · enter show only",
        View::Services => "←→ tool · enter call · D deploy · U update · X undeploy · S scope",
        View::Vault => "a add · d delete",
        View::Skills => "enter read · s share · d remove",
    }
}

pub(super) fn footer(f: &mut Frame<'_>, s: &State, t: &Theme, area: Rect) {
    let line = if s.filtering {
        Line::from(vec![
            Span::styled(" /", t.accent()),
            Span::raw(s.filter(s.view).to_string()),
            Span::styled("▏", t.accent()),
        ])
    } else if let Some(toast) = &s.toast {
        Line::styled(format!(" {}", toast.text), if toast.error { t.bad() } else { t.good() })
    } else {
        let filter = match s.filter(s.view) {
            "" => String::new(),
            f => format!("filter \"{f}\" (esc clears) · "),
        };
        // The view's keys, help and quit always; the global ones while they fit.
        let room = (area.width as usize).saturating_sub(filter.chars().count() + 2);
        let mut keys = format!("{} · ? help · q quit", hints(s));
        for extra in ["/ filter", "[ ] mesh", "tab view"] {
            if keys.chars().count() + extra.chars().count() + 3 <= room {
                keys = keys.replace(" · q quit", &format!(" · {extra} · q quit"));
            }
        }
        Line::from(vec![Span::styled(format!(" {filter}"), t.warn()), Span::styled(keys, t.dim())])
    };
    f.render_widget(Paragraph::new(line), area);
}
