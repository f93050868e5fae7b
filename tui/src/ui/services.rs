//! The Services view: every shared MCP service in scope with status, tools, scope, deployer,
//! restarts and uptime; under it the selected service's detail (description, source, error,
//! each tool with its arguments, the selected tool marked) and its following log tail.

use claudemesh_protocol::local::ServiceEntry;
use claudemesh_protocol::text;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::Areas;
use super::theme::Theme;
use super::{CellText, TableSpec, field_lines, fit, pane, table};
use crate::rows;
use crate::state::form::schema_summary;
use crate::state::services::status_label;
use crate::state::{State, View};

/// The deployer's name from the directory, else its short member id.
fn deployer(s: &State, mesh: &str, id: &str) -> String {
    s.member(mesh, id)
        .map_or_else(|| text::short_member_id(id).to_string(), |m| text::name(&m.member.display_name))
}

/// How long the service has run, or `—` when it is not running.
fn uptime(s: &State, x: &ServiceEntry) -> String {
    x.entry
        .started_at
        .map_or_else(|| "—".to_string(), |at| super::header::duration(s.now_ms.saturating_sub(at) / 1000))
}

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::services(s);
    let all_meshes = s.scope.is_none();
    let row = |i: usize, t: &Theme| -> Vec<CellText> {
        let x = list[i];
        let e = &x.entry;
        let mut cells = vec![(text::name(&e.name), Style::default())];
        if all_meshes {
            cells.push((x.mesh.clone(), Style::default()));
        }
        cells.extend([
            (status_label(e.status).to_string(), t.service(e.status)),
            (e.tools.len().to_string(), Style::default()),
            (text::one_line(&s.scope_cli(&x.mesh, &e.scope)), Style::default()),
            (deployer(s, &x.mesh, &e.deployer), Style::default()),
            (e.restarts.to_string(), if e.restarts > 0 { t.warn() } else { t.dim() }),
            (uptime(s, x), t.dim()),
        ]);
        cells
    };
    // Narrow: names and deployers give way, so the scope keeps some room.
    let wide = a.table.width >= 100;
    let mut header = vec!["NAME"];
    let mut widths = vec![Constraint::Length(if wide { 18 } else { 14 })];
    if all_meshes {
        header.push("MESH");
        widths.push(Constraint::Length(if wide { 10 } else { 8 }));
    }
    header.extend(["STATUS", "TOOLS", "SCOPE", "DEPLOYER", "RESTARTS", "UPTIME"]);
    widths.extend([
        Constraint::Length(10),
        Constraint::Length(5),
        Constraint::Fill(1),
        Constraint::Length(if wide { 12 } else { 9 }),
        Constraint::Length(8),
        Constraint::Length(6),
    ]);
    let title = format!("Services ({})", list.len());
    let empty =
        if s.agent_up() { "no service in this scope (D deploys one)" } else { "waiting for the agent…" };
    let spec = TableSpec { block: pane(title, true, t), header: &header, widths: &widths, empty };
    table(f, a.table, spec, list.len(), s.cursor(View::Services), t, row);
    detail(f, s, t, a.detail, list.get(s.cursor(View::Services).selected).copied());
}

fn detail(f: &mut Frame<'_>, s: &State, t: &Theme, area: Rect, x: Option<&ServiceEntry>) {
    if area.height == 0 {
        return;
    }
    let Some(x) = x else {
        f.render_widget(pane("Service", false, t), area);
        return;
    };
    // Wide: the tools beside the log; narrow: the log under the tools.
    let (info, log) = if area.width >= 100 {
        let w = area.width / 2;
        (
            Rect::new(area.x, area.y, w, area.height),
            Rect::new(area.x + w, area.y, area.width - w, area.height),
        )
    } else {
        let h = area.height / 2 + 1;
        (Rect::new(area.x, area.y, area.width, h), Rect::new(area.x, area.y + h, area.width, area.height - h))
    };
    info_pane(f, s, t, info, x);
    log_pane(f, s, t, log, x);
}

fn info_pane(f: &mut Frame<'_>, s: &State, t: &Theme, area: Rect, x: &ServiceEntry) {
    let e = &x.entry;
    let w = area.width.saturating_sub(2);
    let mut lines = vec![Line::from(vec![
        Span::styled(text::name(&e.name), t.bold()),
        Span::raw("  "),
        Span::styled(status_label(e.status), t.service(e.status)),
        Span::raw(format!("  on {}", x.mesh)),
    ])];
    lines.extend(field_lines("about", &text::one_line(&e.description), Style::default(), w, t));
    let version = e.version.as_deref().map(|v| format!(" {}", text::one_line(v))).unwrap_or_default();
    let host = match e.hosted_by {
        claudemesh_protocol::frames::HostedBy::Broker => "on the broker",
        claudemesh_protocol::frames::HostedBy::Peer => "hosted by its deployer's machine",
    };
    lines.extend(field_lines(
        "source",
        &format!("{}{version}, {host}", text::one_line(&e.source_kind)),
        Style::default(),
        w,
        t,
    ));
    if let Some(err) = &e.error {
        lines.extend(field_lines("error", &text::one_line(err), t.bad(), w, t));
    }
    let sel = s.services.tool.min(e.tools.len().saturating_sub(1));
    let mut sel_line = 0;
    if e.tools.is_empty() {
        lines.push(Line::styled("no tools", t.dim()));
    }
    for (i, tool) in e.tools.iter().enumerate() {
        let on = i == sel;
        if on {
            sel_line = lines.len();
        }
        let desc = tool.description.as_deref().map(text::one_line).unwrap_or_default();
        let head = format!("{} {}", if on { "▶" } else { " " }, text::name(&tool.name));
        let rest = fit(&format!("  {desc}"), (w as usize).saturating_sub(head.chars().count()));
        lines.push(Line::from(vec![
            Span::styled(head, if on { t.accent() } else { t.bold() }),
            Span::raw(rest),
        ]));
        let args = text::one_line(&schema_summary(&tool.input_schema));
        lines.push(Line::styled(fit(&format!("    {args}"), w as usize), t.dim()));
    }
    // The selected tool stays in view.
    let inner_h = area.height.saturating_sub(2) as usize;
    let scroll = (sel_line + 2).saturating_sub(inner_h) as u16;
    let title = format!("{} ({} tool(s); ← → select, enter call)", text::name(&e.name), e.tools.len());
    f.render_widget(Paragraph::new(lines).block(pane(title, false, t)).scroll((scroll, 0)), area);
}

fn log_pane(f: &mut Frame<'_>, s: &State, t: &Theme, area: Rect, x: &ServiceEntry) {
    let inner_h = area.height.saturating_sub(2) as usize;
    let w = area.width.saturating_sub(2) as usize;
    let log = &s.services.log;
    let following =
        s.services.following.as_ref().is_some_and(|fl| fl.mesh == x.mesh && fl.name == x.entry.name);
    let lines: Vec<Line<'_>> = if log.is_empty() {
        vec![Line::styled(if following { "no log lines yet" } else { "not following" }, t.dim())]
    } else {
        log.iter().skip(log.len().saturating_sub(inner_h)).map(|l| Line::raw(fit(l, w))).collect()
    };
    let title = if following { format!("Log (following, {} lines)", log.len()) } else { "Log".into() };
    f.render_widget(Paragraph::new(lines).block(pane(title, false, t)), area);
}
