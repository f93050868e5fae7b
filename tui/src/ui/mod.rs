//! Rendering: `render(frame, &State)` draws the header (agent and meshes), the tabs and mesh
//! selector, the current view, the footer and any dialog, each by a pure function of the
//! state (one view per file). Nothing here changes the state or does I/O. A vault value is
//! never drawn: the add form shows one `•` per character.

mod dialogs;
mod events;
mod forms;
mod header;
pub mod layout;
mod members;
mod meshes;
mod messages;
mod peers;
mod services;
mod skills;
pub mod theme;
mod vault;

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};

pub use header::tab_at;
pub(crate) use skills::reader_text;
use theme::Theme;

use crate::state::{Cursor, Modal, State, View};

/// Draws the whole screen.
pub fn render(f: &mut Frame<'_>, s: &State) {
    let t = Theme { color: s.color };
    let a = layout::areas(s);
    header::header(f, s, &t, a.header);
    header::tabs(f, s, &t, a.tabs);
    match s.view {
        View::Peers => peers::render(f, s, &t, &a),
        View::Members => members::render(f, s, &t, &a),
        View::Messages => messages::render(f, s, &t, &a),
        View::Events => events::render(f, s, &t, &a),
        View::Meshes => meshes::render(f, s, &t, &a),
        View::Services => services::render(f, s, &t, &a),
        View::Vault => vault::render(f, s, &t, &a),
        View::Skills => skills::render(f, s, &t, &a),
    }
    header::footer(f, s, &t, a.footer);
    if let Some(m) = &s.modal {
        let body = layout::dialog_body(s);
        match m {
            Modal::Help => dialogs::help(f, s, &t, body),
            Modal::Compose(c) => dialogs::compose(f, c, &t, body),
            Modal::Confirm(c) => dialogs::confirm(f, c, &t, body),
            Modal::Prompt(p) => dialogs::prompt(f, p, &t, body),
            Modal::Notice { title, lines } => dialogs::notice(f, title, lines, &t, body),
            Modal::Form(form) => forms::form(f, form, &t, body),
            Modal::Output { title, lines, error } => forms::output(f, title, lines, *error, &t, body),
            Modal::Skill(r) => skills::reader(f, s, r, &t),
        }
    }
}

/// A bordered pane titled `title`; the focused one has an accented border.
pub(crate) fn pane<'a>(title: impl Into<String>, focused: bool, t: &Theme) -> Block<'a> {
    let b = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {} ", title.into()), t.heading()));
    if focused { b.border_style(t.accent()) } else { b.border_style(t.dim()) }
}

/// What a table shows around its rows.
pub(crate) struct TableSpec<'a> {
    pub block: Block<'a>,
    pub header: &'a [&'a str],
    pub widths: &'a [Constraint],
    /// Said in the pane when there is no row.
    pub empty: &'a str,
}

/// One cell: its text and style.
pub(crate) type CellText = (String, Style);

/// A table of `len` rows with `cursor`'s selection and scroll. Only the rows on screen are
/// built (`row(i, theme)` for each: the selected row gets a colourless theme, so reverse video
/// stays readable), and every cell is cut to its column with `…`.
pub(crate) fn table(
    f: &mut Frame<'_>,
    area: Rect,
    spec: TableSpec<'_>,
    len: usize,
    cursor: Cursor,
    t: &Theme,
    row: impl Fn(usize, &Theme) -> Vec<CellText>,
) {
    if len == 0 {
        let p = Paragraph::new(Line::styled(spec.empty.to_string(), t.dim())).block(spec.block);
        f.render_widget(p, area);
        return;
    }
    let inner = spec.block.inner(area);
    let cols: Vec<u16> = Layout::horizontal(spec.widths.iter().copied())
        .flex(Flex::Legacy)
        .spacing(1)
        .split(inner)
        .iter()
        .map(|r| r.width)
        .collect();
    let visible = inner.height.saturating_sub(1).max(1) as usize;
    let end = (cursor.offset + visible).min(len);
    let plain = Theme { color: false };
    let rows: Vec<Row<'_>> = (cursor.offset.min(end)..end)
        .map(|i| {
            let cells = row(i, if i == cursor.selected { &plain } else { t });
            Row::new(
                cells
                    .into_iter()
                    .zip(cols.iter().chain(std::iter::repeat(&u16::MAX)))
                    .map(|((text, style), w)| Cell::from(Span::styled(fit(&text, *w as usize), style))),
            )
        })
        .collect();
    let head = Row::new(spec.header.iter().map(|h| Cell::from(*h))).style(t.heading());
    let mut ts = TableState::default().with_selected(cursor.selected.checked_sub(cursor.offset));
    let table = Table::new(rows, spec.widths.to_vec())
        .header(head)
        .block(spec.block)
        .column_spacing(1)
        .flex(Flex::Legacy)
        .row_highlight_style(t.selected());
    f.render_stateful_widget(table, area, &mut ts);
}

/// `s` in at most `w` columns (counted as characters), cut with `…`.
pub(crate) fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        claudemesh_protocol::text::cap(s, w.saturating_sub(1))
    }
}

/// `label  value` lines for a detail pane: the value wrapped to `width` columns under itself
/// (a hanging indent), `—` when empty.
pub(crate) fn field_lines<'a>(
    label: &'a str,
    value: &str,
    style: Style,
    width: u16,
    t: &Theme,
) -> Vec<Line<'a>> {
    const LABEL: usize = 10;
    let value = if value.trim().is_empty() { "—" } else { value };
    let w = (width as usize).saturating_sub(LABEL + 2).max(8);
    messages::wrap(value, w)
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let head = if i == 0 { format!("{label:<LABEL$}") } else { " ".repeat(LABEL) };
            Line::from(vec![Span::styled(head, t.dim()), Span::styled(l, style)])
        })
        .collect()
}

/// `label: value` for a detail pane.
pub(crate) fn field<'a>(label: &'a str, value: impl Into<String>, style: Style, t: &Theme) -> Line<'a> {
    Line::from(vec![Span::styled(format!("{label:<10}"), t.dim()), Span::styled(value.into(), style)])
}

/// `HH:MM` (today) or `MM-DD HH:MM` of Unix ms `at`, in the state's time zone.
pub(crate) fn clock(s: &State, at: u64) -> String {
    let local = |ms: u64| ms as i64 / 1000 + i64::from(s.utc_offset_secs);
    let (t, now) = (local(at), local(s.now_ms));
    let Some(dt) = chrono::DateTime::from_timestamp(t, 0) else { return "?".into() };
    if t.div_euclid(86_400) == now.div_euclid(86_400) {
        dt.format("%H:%M").to_string()
    } else {
        dt.format("%m-%d %H:%M").to_string()
    }
}

/// How long ago Unix ms `at` was, shortly: `12s`, `5m`, `3h`, `2d`.
pub(crate) fn ago(s: &State, at: u64) -> String {
    let secs = s.now_ms.saturating_sub(at) / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A sparkline of `values` as block characters, one per value, scaled to the largest.
pub(crate) fn spark(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| if v == 0 || max == 0 { ' ' } else { BARS[((v * 7).div_ceil(max)) as usize] })
        .collect()
}
