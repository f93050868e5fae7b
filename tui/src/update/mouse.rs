//! The mouse: a click on a tab switches view, on a row selects it (a second click on the
//! selected conversation opens it), on the thread gives it the keys; the wheel scrolls the
//! table or the thread under the pointer. Dialogs take no mouse input (text in them stays
//! selectable with the terminal's own selection, usually Shift+drag).

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use crate::effect::Effect;
use crate::state::{Focus, State, View};
use crate::ui::layout;

/// Rows the wheel moves per notch.
const WHEEL_ROWS: isize = 3;

pub(super) fn apply(s: &mut State, m: MouseEvent, fx: &mut Vec<Effect>) {
    if s.modal.is_some() {
        return;
    }
    let a = layout::areas(s);
    let at = Position::new(m.column, m.row);
    match m.kind {
        MouseEventKind::Down(MouseButton::Left) => {
            if a.tabs.contains(at) {
                if let Some(v) = crate::ui::tab_at(s, m.column) {
                    super::switch(s, v, fx);
                }
            } else if a.table.contains(at) {
                click_row(s, a.table, a.first_row_y(), m.row, fx);
            } else if s.view == View::Messages && a.detail.contains(at) {
                s.focus = Focus::Thread;
            }
        }
        MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
            let d = if m.kind == MouseEventKind::ScrollDown { WHEEL_ROWS } else { -WHEEL_ROWS };
            if s.view == View::Messages && a.detail.contains(at) {
                s.thread_scroll = (s.thread_scroll as isize - d).max(0) as usize;
            } else if a.table.contains(at) {
                let (len, h) = (crate::rows::len(s, s.view), a.table_rows());
                s.cursors.entry(s.view).or_default().scroll(d, len, h);
                super::remember(s);
            }
        }
        _ => {}
    }
}

fn click_row(s: &mut State, table: Rect, first_y: u16, y: u16, fx: &mut Vec<Effect>) {
    if y < first_y || y >= table.y + table.height.saturating_sub(1) {
        return;
    }
    let c = s.cursor(s.view);
    let row = c.offset + (y - first_y) as usize;
    let len = crate::rows::len(s, s.view);
    if row >= len {
        return;
    }
    if s.view == View::Messages && row == c.selected {
        let msgs = crate::rows::convs(s).get(row).map(|c| c.msgs.clone()).unwrap_or_default();
        s.focus = Focus::Thread;
        super::views::mark_read(s, &msgs, fx);
        return;
    }
    let h = layout::areas(s).table_rows();
    s.cursors.entry(s.view).or_default().select(row, len, h);
    super::remember(s);
    if s.view == View::Messages {
        s.focus = Focus::List;
        s.thread_scroll = 0;
        super::views::conversation_opened(s, fx);
    }
}
