//! The Members view: every member of the meshes in scope with role, groups, online state and
//! what this agent believes of its key; the detail pane shows the safety code to compare.

use claudemesh_protocol::local::MemberEntry;
use claudemesh_protocol::text;
use ratatui::Frame;
use ratatui::layout::Constraint;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::Areas;
use super::theme::{Theme, trust_label};
use super::{CellText, TableSpec, field, field_lines, pane, table};
use crate::rows;
use crate::state::{State, View};

fn groups(m: &MemberEntry) -> String {
    let granted = m.member.groups.iter().map(super::peers::group_label);
    let declared = m
        .member
        .declared_groups
        .iter()
        .filter(|d| !m.member.groups.iter().any(|g| &g.name == *d))
        .map(|d| format!("({})", text::name(d)));
    granted.chain(declared).collect::<Vec<_>>().join(" ")
}

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::members(s);
    let many_meshes = s.scope.is_none() && s.meshes.len() > 1;
    let row = |i: usize, t: &Theme| -> Vec<CellText> {
        let m = list[i];
        let mut name = text::name(&m.member.display_name);
        if m.me {
            name.push_str(" (you)");
        }
        let online = if m.member.online {
            let n = if m.sessions.is_empty() { String::new() } else { format!(" {}", m.sessions.len()) };
            (format!("●{n}"), t.good())
        } else {
            ("○".to_string(), t.dim())
        };
        let mut cells = vec![(name, Style::default()), (m.short_id.clone(), t.dim())];
        if many_meshes {
            cells.push((m.mesh.clone(), Style::default()));
        }
        cells.extend([
            (m.member.role.as_str().to_string(), Style::default()),
            (groups(m), Style::default()),
            online,
        ]);
        cells.push(match &m.trust {
            Some(tr) => (trust_label(tr.state).to_string(), t.trust(tr.state)),
            None => ("?".to_string(), t.dim()),
        });
        cells
    };
    let mut header = vec!["NAME", "ID"];
    let mut widths = vec![Constraint::Length(20), Constraint::Length(8)];
    if many_meshes {
        header.push("MESH");
        widths.push(Constraint::Length(10));
    }
    header.extend(["ROLE", "GROUPS", "ONLINE", "KEY"]);
    widths.extend([
        Constraint::Length(6),
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(11),
    ]);
    let title = format!("Members ({})", list.len());
    let empty = if s.agent_up() { "no member in this scope" } else { "waiting for the agent…" };
    let spec = TableSpec { block: pane(title, true, t), header: &header, widths: &widths, empty };
    table(f, a.table, spec, list.len(), s.cursor(View::Members), t, row);
    detail(f, s, t, a, list.get(s.cursor(View::Members).selected).copied());
}

fn detail(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas, m: Option<&MemberEntry>) {
    if a.detail.height == 0 {
        return;
    }
    let Some(m) = m else {
        f.render_widget(pane("Member", false, t), a.detail);
        return;
    };
    // The key first: at 80×24 the pane has room for five lines, and the safety code is what a
    // person comes here to compare.
    let mut head = vec![
        Span::styled(text::name(&m.member.display_name), t.bold()),
        Span::raw(format!("  {} of {}", m.member.role.as_str(), m.mesh)),
    ];
    let w = a.detail.width.saturating_sub(2);
    let mut lines = Vec::new();
    if let Some(tr) = &m.trust {
        head.push(Span::raw("  key "));
        head.push(Span::styled(trust_label(tr.state), t.trust(tr.state)));
        if tr.overused_invite {
            head.push(Span::raw(" (its invite was used too often)"));
        }
        lines.push(field("safety", tr.safety_code.clone(), t.bold(), t));
        if let Some(d) = &tr.detail {
            lines.extend(field_lines("why", &text::one_line(d), t.warn(), w, t));
        }
    }
    lines.insert(0, Line::from(head));
    let sessions: Vec<String> = m.sessions.iter().map(|x| text::name(x)).collect();
    let online = match (m.member.online, sessions.is_empty()) {
        (false, _) => "offline".to_string(),
        (true, true) => "online, no session open".to_string(),
        (true, false) => format!("online: {}", sessions.join(", ")),
    };
    lines.extend(field_lines("sessions", &online, Style::default(), w, t));
    let granted: Vec<String> = m.member.groups.iter().map(super::peers::group_label).collect();
    lines.extend(field_lines("groups", &granted.join(" "), Style::default(), w, t));
    let declared: Vec<String> = m
        .member
        .declared_groups
        .iter()
        .filter(|d| !m.member.groups.iter().any(|g| &g.name == *d))
        .map(|d| text::name(d))
        .collect();
    if !declared.is_empty() {
        let d = format!("{} (joined by its sessions, not granted; in brackets above)", declared.join(" "));
        lines.extend(field_lines("declared", &d, t.dim(), w, t));
    }
    lines.extend(field_lines("member", &m.member.member_id, t.dim(), w, t));
    let admin = s.is_admin(&m.mesh) && !m.me;
    let keys =
        if admin { "m message · e role/groups · d remove · p repin" } else { "m message · p repin" };
    lines.push(Line::styled(keys, t.dim()));
    let para = Paragraph::new(lines).block(pane("Member", false, t));
    f.render_widget(para, a.detail);
}
