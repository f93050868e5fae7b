//! The Meshes view: each joined mesh with its link, role, peers, unread messages, outbox and a
//! message-rate sparkline; the detail pane has the broker, why a link is down, key warnings
//! and the rate over the last ten minutes.

use claudemesh_protocol::local::MeshStatus;
use claudemesh_protocol::text;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Sparkline, Wrap};

use super::layout::Areas;
use super::theme::{Theme, link_label};
use super::{CellText, TableSpec, field_lines, pane, spark, table};
use crate::rows;
use crate::state::rate::BUCKETS;
use crate::state::{State, View};

/// Buckets in the table's sparkline column.
const SPARK_COLS: usize = 12;

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::meshes(s);
    let wide = a.table.width >= 100;
    let row = |i: usize, t: &Theme| -> Vec<CellText> {
        let m = list[i];
        let (sym, word) = link_label(m.link);
        let rate = s.rates.get(&m.slug).map(|r| r.last_n(SPARK_COLS)).unwrap_or_else(|| vec![0; SPARK_COLS]);
        let unread = s.messages.unread(Some(&m.slug));
        let (peers, _, _, outbox) = live_counts(s, m);
        let none = Style::default();
        let mut cells = vec![
            (m.slug.clone(), none),
            (format!("{sym} {word}"), t.link(m.link)),
            (m.role.as_str().into(), none),
            (peers.to_string(), none),
            (unread.to_string(), if unread > 0 { t.unread() } else { none }),
            (outbox.to_string(), none),
            (spark(&rate), t.accent()),
        ];
        if wide {
            cells.push((m.broker_url.clone(), none));
        }
        cells
    };
    let mut header = vec!["MESH", "LINK", "ROLE", "PEERS", "NEW", "OUT", "RATE 2m"];
    let mut widths = vec![
        Constraint::Length(12),
        Constraint::Length(14),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(SPARK_COLS as u16),
    ];
    if wide {
        header.push("BROKER");
        widths.push(Constraint::Fill(1));
    }
    let title = format!("Meshes ({})", list.len());
    let empty = if s.agent_up() {
        "no mesh joined: J to join one with an invite"
    } else {
        "waiting for the agent…"
    };
    let spec = TableSpec { block: pane(title, true, t), header: &header, widths: &widths, empty };
    table(f, a.table, spec, list.len(), s.cursor(View::Meshes), t, row);
    detail(f, s, t, a, list.get(s.cursor(View::Meshes).selected).copied());
}

/// Peers online, local sessions, messages received and sends waiting, from what the dashboard
/// holds live (the snapshot's counts are only true at the snapshot).
fn live_counts(s: &State, m: &MeshStatus) -> (usize, usize, usize, usize) {
    let peers = s.peers.iter().filter(|p| p.mesh == m.slug).count();
    let sessions = s.sessions.iter().filter(|x| x.meshes.contains(&m.slug)).count();
    let (inbox, outbox) = s.messages.counts(&m.slug);
    (peers, sessions, inbox, outbox)
}

fn detail(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas, m: Option<&MeshStatus>) {
    if a.detail.height == 0 {
        return;
    }
    let Some(m) = m else {
        f.render_widget(pane("Mesh", false, t), a.detail);
        return;
    };
    let block = pane(format!("Mesh {}", m.slug), false, t);
    let inner = block.inner(a.detail);
    f.render_widget(block, a.detail);
    let spark_h = if inner.height >= 10 { 3 } else { 0 };
    let [top, bottom] = Layout::vertical([Constraint::Min(1), Constraint::Length(spark_h)]).areas(inner);
    let (sym, word) = link_label(m.link);
    let mut link = format!("{sym} {word}");
    if let Some(d) = &m.detail {
        link.push_str(&format!(": {}", text::one_line(d)));
    }
    if let Some(r) = m.retry_in_secs {
        link.push_str(&format!(" (retry in {r}s)"));
    }
    let w = inner.width;
    let none = Style::default();
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let (peers, sessions, inbox, outbox) = live_counts(s, m);
    let counts = [
        plural(peers, "peer online", "peers online"),
        plural(sessions, "local session", "local sessions"),
        format!("{inbox} received"),
        format!("{outbox} to send"),
    ]
    .join(" · ");
    let you = format!("{} · {} · {}", text::name(&m.display_name), m.role.as_str(), m.member_id);
    let mut lines = field_lines("link", &link, t.link(m.link), w, t);
    lines.extend(field_lines("you", &you, none, w, t));
    lines.extend(field_lines("broker", &m.broker_url, none, w, t));
    lines.extend(field_lines("counts", &counts, none, w, t));
    for w in &m.trust_warnings {
        lines.push(Line::styled(format!("⚠ {}", text::one_line(w)), t.bad()));
    }
    let keys = if s.is_admin(&m.slug) {
        "i invite · L leave · J join another"
    } else {
        "L leave · J join another"
    };
    lines.push(Line::styled(keys, t.dim()));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), top);
    if spark_h > 0 {
        let data = s.rates.get(&m.slug).map(|r| r.last_n(BUCKETS)).unwrap_or_default();
        let total: u64 = data.iter().sum();
        let title = Line::styled(format!("messages, last 10 min: {total}"), t.dim());
        let w = bottom.width as usize;
        let data: Vec<u64> = data.iter().skip(data.len().saturating_sub(w)).copied().collect();
        let sp = Sparkline::default().data(&data).style(t.accent());
        let [label, graph] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(bottom);
        f.render_widget(Paragraph::new(title), label);
        f.render_widget(sp, graph);
    }
}
