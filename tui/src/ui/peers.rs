//! The Peers view: every online session (name, member, status in colour, summary, groups,
//! host, cwd, since) and a detail pane for the selected one. Every field a peer chose is
//! cleaned to one line before it is drawn.

use claudemesh_protocol::frames::GroupRole;
use claudemesh_protocol::local::PeerEntry;
use claudemesh_protocol::text;
use ratatui::Frame;
use ratatui::layout::Constraint;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::Areas;
use super::theme::{Theme, status_label};
use super::{CellText, TableSpec, ago, field_lines, pane, table};
use crate::rows;
use crate::state::{State, View};

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(text::one_line).unwrap_or_default()
}

/// `@name` or `@name:role`.
pub(super) fn group_label(g: &GroupRole) -> String {
    match &g.role {
        Some(r) => format!("@{}:{}", text::name(&g.name), text::name(r)),
        None => format!("@{}", text::name(&g.name)),
    }
}

/// The groups a session is in: those it declared, and those granted to its member (which it
/// is in unless it left them; the agent's directory does not say, so granted ones are shown).
fn groups(s: &State, p: &PeerEntry) -> String {
    let mut v: Vec<&GroupRole> = p.peer.session.groups.iter().collect();
    if let Some(m) = s.member(&p.mesh, &p.peer.member_id) {
        for g in &m.member.groups {
            match v.iter().position(|x| x.name == g.name) {
                Some(i) if v[i].role.is_none() => v[i] = g,
                Some(_) => {}
                None => v.push(g),
            }
        }
    }
    v.iter().map(|g| group_label(g)).collect::<Vec<_>>().join(" ")
}

fn member(p: &PeerEntry) -> String {
    p.member_name.as_deref().map_or_else(|| text::short_member_id(&p.peer.member_id).to_string(), text::name)
}

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::peers(s);
    let wide = a.table.width >= 110;
    let many_meshes = s.scope.is_none() && s.meshes.len() > 1;
    let row = |i: usize, t: &Theme| -> Vec<CellText> {
        let p = list[i];
        let ses = &p.peer.session;
        let mut name = text::name(&ses.display_name);
        if p.me {
            name.push_str(" (you)");
        }
        let mut cells = vec![(name, Style::default()), (member(p), t.dim())];
        if many_meshes {
            cells.push((p.mesh.clone(), Style::default()));
        }
        cells.push((status_label(ses.status).into(), t.status(ses.status)));
        cells.push((opt(&ses.summary), Style::default()));
        cells.push((groups(s, p), Style::default()));
        if wide {
            cells.push((opt(&ses.hostname), Style::default()));
            cells.push((opt(&ses.cwd), Style::default()));
        }
        cells.push((ago(s, p.peer.connected_since), t.dim()));
        cells
    };
    let mut header = vec!["NAME", "MEMBER"];
    let mut widths = vec![Constraint::Length(18), Constraint::Length(10)];
    if many_meshes {
        header.push("MESH");
        widths.push(Constraint::Length(8));
    }
    header.extend(["STATUS", "SUMMARY", "GROUPS"]);
    widths.extend([Constraint::Length(7), Constraint::Fill(3), Constraint::Fill(1)]);
    if wide {
        header.extend(["HOST", "CWD"]);
        widths.extend([Constraint::Length(14), Constraint::Fill(1)]);
    }
    header.push("SINCE");
    widths.push(Constraint::Length(5));
    let title = format!("Peers ({})", list.len());
    let empty = if s.agent_up() { "no session is online in this scope" } else { "waiting for the agent…" };
    let spec = TableSpec { block: pane(title, true, t), header: &header, widths: &widths, empty };
    table(f, a.table, spec, list.len(), s.cursor(View::Peers), t, row);
    detail(f, s, t, a, list.get(s.cursor(View::Peers).selected).copied());
}

fn detail(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas, p: Option<&PeerEntry>) {
    if a.detail.height == 0 {
        return;
    }
    let Some(p) = p else {
        f.render_widget(pane("Session", false, t), a.detail);
        return;
    };
    let ses = &p.peer.session;
    let w = a.detail.width.saturating_sub(2);
    let member = text::sender(p.member_name.as_deref().unwrap_or("?"), &p.peer.member_id, None);
    let mut lines = vec![Line::from(vec![
        Span::styled(text::name(&ses.display_name), t.bold()),
        Span::raw("  "),
        Span::styled(status_label(ses.status), t.status(ses.status)),
        Span::styled(format!("  online {}", ago(s, p.peer.connected_since)), t.dim()),
    ])];
    let none = Style::default();
    lines.extend(field_lines("member", &format!("{member} · {}", p.mesh), none, w, t));
    lines.extend(field_lines("summary", &opt(&ses.summary), none, w, t));
    lines.extend(field_lines("groups", &groups(s, p), none, w, t));
    let place = match (opt(&ses.hostname), opt(&ses.cwd)) {
        (h, c) if h.is_empty() => c,
        (h, c) if c.is_empty() => h,
        (h, c) => format!("{h}:{c}"),
    };
    lines.extend(field_lines("where", &place, none, w, t));
    let mut kind = vec![format!("{:?}", ses.peer_type).to_lowercase()];
    if let Some(m) = &ses.model {
        kind.push(text::one_line(m));
    }
    if let Some(pid) = ses.pid {
        kind.push(format!("pid {pid}"));
    }
    lines.extend(field_lines("kind", &kind.join(" · "), none, w, t));
    lines.extend(field_lines("session", &ses.session_id, t.dim(), w, t));
    lines.push(Line::styled("m: message this session · M: its group", t.dim()));
    f.render_widget(Paragraph::new(lines).block(pane("Session", false, t)), a.detail);
}
