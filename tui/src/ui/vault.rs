//! The Vault view: this member's vault entries in scope (key, kind, mount path, description,
//! when updated, and the mesh when several are shown); under them the selected entry and how a
//! deploy uses it. Only metadata exists here: values are never fetched nor drawn.

use claudemesh_protocol::frames::VaultKind;
use claudemesh_protocol::local::VaultItem;
use claudemesh_protocol::text;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::Areas;
use super::theme::Theme;
use super::{CellText, TableSpec, clock, field_lines, pane, table};
use crate::rows;
use crate::state::sharing::kind_label;
use crate::state::{State, View};

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::vault(s);
    let many_meshes = s.scope.is_none() && s.meshes.len() > 1;
    let row = |i: usize, t: &Theme| -> Vec<CellText> {
        let x = list[i];
        let e = &x.entry;
        let mount = match (e.kind, &e.mount_path) {
            (_, Some(m)) => text::one_line(m),
            (VaultKind::File, None) => text::one_line(&e.key),
            (VaultKind::Env, None) => "—".into(),
        };
        let mut cells = vec![
            (text::one_line(&e.key), t.bold()),
            (
                kind_label(e.kind).to_string(),
                if e.kind == VaultKind::File { t.warn() } else { Style::default() },
            ),
            (mount, if e.mount_path.is_some() { Style::default() } else { t.dim() }),
            (e.description.as_deref().map(text::one_line).unwrap_or_default(), Style::default()),
            (clock(s, e.updated_at), t.dim()),
        ];
        if many_meshes {
            cells.push((x.mesh.clone(), Style::default()));
        }
        cells
    };
    let mut header = vec!["KEY", "KIND", "MOUNT", "DESCRIPTION", "UPDATED"];
    let mut widths = vec![
        Constraint::Length(if a.table.width >= 100 { 24 } else { 18 }),
        Constraint::Length(4),
        Constraint::Length(if a.table.width >= 100 { 18 } else { 12 }),
        Constraint::Fill(1),
        Constraint::Length(11),
    ];
    if many_meshes {
        header.push("MESH");
        widths.push(Constraint::Length(8));
    }
    let title = format!("Vault ({})", list.len());
    let empty = match (&s.vault.error, s.agent_up(), s.vault.loaded) {
        (Some(_), _, _) => "the vault could not be listed (the error is in the Events view)",
        (None, false, _) => "waiting for the agent…",
        (None, true, false) => "asking the agent…",
        (None, true, true) => "no secret in this scope (a adds one)",
    };
    let spec = TableSpec { block: pane(title, true, t), header: &header, widths: &widths, empty };
    table(f, a.table, spec, list.len(), s.cursor(View::Vault), t, row);
    detail(f, t, a.detail, list.get(s.cursor(View::Vault).selected).copied());
}

fn detail(f: &mut Frame<'_>, t: &Theme, area: Rect, x: Option<&VaultItem>) {
    if area.height == 0 {
        return;
    }
    let Some(x) = x else {
        let hint = Line::styled("a add a secret · values are typed masked and never shown", t.dim());
        f.render_widget(Paragraph::new(hint).block(pane("Entry", false, t)), area);
        return;
    };
    let e = &x.entry;
    let w = area.width.saturating_sub(2);
    let key = text::one_line(&e.key);
    let mut lines = vec![Line::from(vec![
        Span::styled(key.clone(), t.bold()),
        Span::raw(format!("  {} entry in your vault on {}", kind_label(e.kind), x.mesh)),
    ])];
    let usage = match e.kind {
        VaultKind::Env => format!("$vault:{key} in a deploy's env: the variable is the value"),
        VaultKind::File => {
            let at = e.mount_path.as_deref().map_or_else(|| key.clone(), text::one_line);
            format!("$vault:{key} in a deploy's env: written to secrets/{at}, the variable is its path")
        }
    };
    lines.extend(field_lines("use", &usage, Style::default(), w, t));
    let about = e.description.as_deref().map(text::one_line).unwrap_or_default();
    lines.extend(field_lines("about", &about, Style::default(), w, t));
    lines.push(Line::styled("a add · d delete · the value is never shown", t.dim()));
    f.render_widget(Paragraph::new(lines).block(pane("Entry", false, t)), area);
}
