//! The Peers view: every online session (name, status in colour, summary, groups, host, cwd,
//! since) and a detail pane for the selected one. Every field a peer chose is cleaned to one
//! line before it is drawn.

use claudemesh_protocol::local::PeerEntry;
use claudemesh_protocol::text;
use ratatui::Frame;
use ratatui::layout::Constraint;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Wrap};

use super::layout::Areas;
use super::theme::{Theme, status_label};
use super::{TableSpec, ago, field, pane, table};
use crate::rows;
use crate::state::{State, View};

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(text::one_line).unwrap_or_default()
}

fn groups(p: &PeerEntry) -> String {
    p.peer.session.groups.iter().map(|g| format!("@{}", text::name(&g.name))).collect::<Vec<_>>().join(" ")
}

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::peers(s);
    let wide = a.table.width >= 110;
    let many_meshes = s.scope.is_none() && s.meshes.len() > 1;
    let row = |i: usize| {
        let p = list[i];
        let ses = &p.peer.session;
        let mut name = text::name(&ses.display_name);
        if p.me {
            name.push_str(" (you)");
        }
        let mut cells = vec![Cell::from(name)];
        if many_meshes {
            cells.push(Cell::from(p.mesh.clone()));
        }
        cells.push(Cell::from(Span::styled(status_label(ses.status), t.status(ses.status))));
        cells.push(Cell::from(opt(&ses.summary)));
        cells.push(Cell::from(groups(p)));
        if wide {
            cells.push(Cell::from(opt(&ses.hostname)));
            cells.push(Cell::from(opt(&ses.cwd)));
        }
        cells.push(Cell::from(ago(s, p.peer.connected_since)));
        Row::new(cells)
    };
    let mut header = vec!["NAME"];
    let mut widths = vec![Constraint::Length(20)];
    if many_meshes {
        header.push("MESH");
        widths.push(Constraint::Length(10));
    }
    header.extend(["STATUS", "SUMMARY", "GROUPS"]);
    widths.extend([Constraint::Length(8), Constraint::Fill(2), Constraint::Length(14)]);
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
    let member = text::sender(p.member_name.as_deref().unwrap_or("?"), &p.peer.member_id, None);
    let mut lines = vec![
        Line::from(vec![
            Span::styled(text::name(&ses.display_name), t.bold()),
            Span::raw("  "),
            Span::styled(status_label(ses.status), t.status(ses.status)),
        ]),
        field("member", member, Default::default(), t),
        field("mesh", p.mesh.clone(), Default::default(), t),
        field("summary", opt(&ses.summary), Default::default(), t),
        field("groups", groups(p), Default::default(), t),
        field("host", opt(&ses.hostname), Default::default(), t),
        field("cwd", opt(&ses.cwd), Default::default(), t),
    ];
    let mut more = vec![format!("{:?}", ses.peer_type).to_lowercase()];
    if let Some(m) = &ses.model {
        more.push(text::one_line(m));
    }
    if let Some(pid) = ses.pid {
        more.push(format!("pid {pid}"));
    }
    lines.push(field("kind", more.join(" · "), Default::default(), t));
    lines.push(field("online", format!("{} ago", ago(s, p.peer.connected_since)), Default::default(), t));
    lines.push(field("session", ses.session_id.clone(), t.dim(), t));
    lines.push(Line::styled("m: message this session · M: its group", t.dim()));
    let para = Paragraph::new(lines).block(pane("Session", false, t)).wrap(Wrap { trim: false });
    f.render_widget(para, a.detail);
}
