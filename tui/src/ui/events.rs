//! The Events view: what the agent reported, newest last (links, peers, members, messages,
//! receipts, sends, sessions, errors), filterable like every table.

use ratatui::Frame;
use ratatui::layout::Constraint;
use ratatui::style::Style;

use super::layout::Areas;
use super::theme::Theme;
use super::{CellText, TableSpec, clock, pane, table};
use crate::rows;
use crate::state::{State, View};

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::events(s);
    let row = |i: usize, t: &Theme| -> Vec<CellText> {
        let e = list[i];
        let style = match e.kind {
            "error" => t.bad(),
            "link" => t.warn(),
            "message" => t.unread(),
            _ => Style::default(),
        };
        vec![
            (clock(s, e.at), t.dim()),
            (e.mesh.clone(), Style::default()),
            (e.kind.into(), style),
            (e.text.clone(), Style::default()),
        ]
    };
    let widths = [Constraint::Length(5), Constraint::Length(10), Constraint::Length(8), Constraint::Fill(1)];
    let title = format!("Events ({})", list.len());
    let spec = TableSpec {
        block: pane(title, true, t),
        header: &["TIME", "MESH", "KIND", "WHAT"],
        widths: &widths,
        empty: "nothing yet",
    };
    table(f, a.table, spec, list.len(), s.cursor(View::Events), t, row);
}
