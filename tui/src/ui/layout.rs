//! Where everything goes on screen, as a pure function of the terminal size and the view, so
//! the renderers and the mouse handling in `update` agree on every rectangle.

use ratatui::layout::Rect;

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
    /// The detail pane (Peers, Members, Meshes, Services, Vault, Skills) or the thread
    /// (Messages); empty for Events.
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

/// The areas for `s`'s size and view. Plain arithmetic, no constraint solver: `update` asks
/// for them after every event.
pub fn areas(s: &State) -> Areas {
    let (w, h) = s.size;
    let header = Rect::new(0, 0, w, h.min(1));
    let tabs = Rect::new(0, 1.min(h), w, h.saturating_sub(1).min(1));
    let footer = Rect::new(0, h.saturating_sub(1), w, h.min(1));
    let body = Rect::new(0, 2.min(h), w, h.saturating_sub(3));
    let wide = w >= WIDE;
    let beside = |table_w: u16| {
        let table_w = table_w.min(body.width);
        (
            Rect::new(body.x, body.y, table_w, body.height),
            Rect::new(body.x + table_w, body.y, body.width - table_w, body.height),
        )
    };
    let (table, detail) = match s.view {
        View::Events => (body, Rect::new(body.x, body.y + body.height, body.width, 0)),
        View::Messages => beside(if wide { 40 } else { (w / 3).max(22) }),
        // Services: the detail (tools and a log tail) wants the whole width, under the table.
        View::Services => {
            let table_h = (body.height * 2 / 5).max(7).min(body.height);
            (
                Rect::new(body.x, body.y, body.width, table_h),
                Rect::new(body.x, body.y + table_h, body.width, body.height - table_h),
            )
        }
        // Vault and Skills: wide tables (descriptions), a short detail under them.
        View::Vault | View::Skills => {
            let detail_h = if body.height >= 18 { 7 } else { body.height / 3 };
            let table_h = body.height - detail_h;
            (
                Rect::new(body.x, body.y, body.width, table_h),
                Rect::new(body.x, body.y + table_h, body.width, detail_h),
            )
        }
        View::Peers | View::Members | View::Meshes if wide => beside((u32::from(w) * 62 / 100) as u16),
        View::Peers | View::Members | View::Meshes => {
            let detail_h = if body.height >= 18 { 8 } else { body.height / 3 };
            let table_h = body.height - detail_h;
            (
                Rect::new(body.x, body.y, body.width, table_h),
                Rect::new(body.x, body.y + table_h, body.width, detail_h),
            )
        }
    };
    Areas { header, tabs, table, detail, footer }
}

/// Where dialogs go: between the tabs and the footer.
pub fn dialog_body(s: &State) -> Rect {
    let a = areas(s);
    Rect::new(0, a.tabs.y + 1, s.size.0, a.footer.y.saturating_sub(a.tabs.y + 1))
}

/// The skill reader: as tall as the dialogs' room, at most 100 columns wide.
pub fn reader(s: &State) -> Rect {
    let body = dialog_body(s);
    centered(body, body.width.min(100), body.height)
}

/// The reader's text: columns and rows inside its border, less the line of keys.
pub fn reader_page(s: &State) -> (usize, usize) {
    let r = reader(s);
    (r.width.saturating_sub(2).max(8) as usize, r.height.saturating_sub(3).max(1) as usize)
}

/// A centered rectangle of at most `w` × `h` inside `r`.
pub fn centered(r: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(r.width);
    let h = h.min(r.height);
    Rect::new(r.x + (r.width - w) / 2, r.y + (r.height - h) / 2, w, h)
}
