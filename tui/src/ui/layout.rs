//! Where everything goes on screen, as a pure function of the terminal size and the view, so
//! the renderers and the mouse handling in `update` agree on every rectangle.

use ratatui::layout::{Constraint, Direction, Layout, Rect};

use crate::state::{State, View};

/// Below this width a detail pane goes under its table instead of beside it.
pub const WIDE: u16 = 120;

/// The screen's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// Agent state and each mesh's link and unread count.
    pub header: Rect,
    /// View tabs and the mesh selector.
    pub tabs: Rect,
    /// The view's main table (with its border).
    pub table: Rect,
    /// The detail pane (Peers, Members, Meshes) or the thread (Messages); empty for Events.
    pub detail: Rect,
    /// Key hints, a toast or the filter line.
    pub footer: Rect,
}

impl Areas {
    /// Rows of the table that show data: inside the border, under the column header.
    pub fn table_rows(&self) -> usize {
        self.table.height.saturating_sub(3) as usize
    }

    /// The first screen row of table data.
    pub fn first_row_y(&self) -> u16 {
        self.table.y + 2
    }
}

/// The areas for `s`'s size and view.
pub fn areas(s: &State) -> Areas {
    let full = Rect::new(0, 0, s.size.0, s.size.1);
    let [header, tabs, body, footer] = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(full);
    let wide = full.width >= WIDE;
    let (table, detail) = match s.view {
        View::Events => (body, Rect::new(body.x, body.y + body.height, body.width, 0)),
        View::Messages => {
            let list_w = if wide { 40 } else { (body.width / 3).max(22) };
            split(body, Direction::Horizontal, Constraint::Length(list_w))
        }
        View::Peers | View::Members | View::Meshes if wide => {
            split(body, Direction::Horizontal, Constraint::Percentage(62))
        }
        View::Peers | View::Members | View::Meshes => {
            let detail_h = if body.height >= 18 { 8 } else { body.height / 3 };
            split(body, Direction::Vertical, Constraint::Length(body.height.saturating_sub(detail_h)))
        }
    };
    Areas { header, tabs, table, detail, footer }
}

fn split(r: Rect, d: Direction, first: Constraint) -> (Rect, Rect) {
    let [a, b] = Layout::default().direction(d).constraints([first, Constraint::Min(0)]).areas(r);
    (a, b)
}

/// A centered rectangle of at most `w` × `h` inside `r`.
pub fn centered(r: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(r.width);
    let h = h.min(r.height);
    Rect::new(r.x + (r.width - w) / 2, r.y + (r.height - h) / 2, w, h)
}
