//! A table's selection and scroll offset, kept in the dashboard's state (not in a ratatui
//! `TableState` written during render), so rendering stays a pure function of the state and a
//! mouse click can be mapped to a row without the last frame.

/// Which row of a list is selected, and the first row shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Index into the (filtered) rows.
    pub selected: usize,
    /// First row shown.
    pub offset: usize,
}

impl Cursor {
    /// Moves by `delta` rows within `len` rows, scrolling so the selection stays inside a
    /// viewport of `height` rows.
    pub fn move_by(&mut self, delta: isize, len: usize, height: usize) {
        if len == 0 {
            *self = Cursor::default();
            return;
        }
        let to = (self.selected as isize + delta).clamp(0, len as isize - 1) as usize;
        self.select(to, len, height);
    }

    /// Selects row `i` (clamped to `len`), scrolling as little as possible to show it.
    pub fn select(&mut self, i: usize, len: usize, height: usize) {
        if len == 0 {
            *self = Cursor::default();
            return;
        }
        self.selected = i.min(len - 1);
        let height = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }

    /// Keeps the selection and offset valid after the rows changed to `len`.
    pub fn clamp(&mut self, len: usize, height: usize) {
        self.select(self.selected, len, height);
    }

    /// Scrolls the view by `delta` rows without moving past either end; the selection follows
    /// when it would leave the viewport (how a mouse wheel feels in k9s and gitui).
    pub fn scroll(&mut self, delta: isize, len: usize, height: usize) {
        if len == 0 {
            return;
        }
        let max_offset = len.saturating_sub(height.max(1));
        self.offset = (self.offset as isize + delta).clamp(0, max_offset as isize) as usize;
        let last = self.offset + height.max(1) - 1;
        if self.selected < self.offset {
            self.selected = self.offset;
        } else if self.selected > last {
            self.selected = last.min(len - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_stays_in_view_and_in_range() {
        let mut c = Cursor::default();
        c.move_by(5, 10, 3);
        assert_eq!(c, Cursor { selected: 5, offset: 3 });
        c.move_by(100, 10, 3);
        assert_eq!(c, Cursor { selected: 9, offset: 7 });
        c.move_by(-100, 10, 3);
        assert_eq!(c, Cursor { selected: 0, offset: 0 });
        c.clamp(0, 3);
        assert_eq!(c, Cursor::default());
        let mut c = Cursor { selected: 8, offset: 7 };
        c.clamp(4, 3);
        assert_eq!(c, Cursor { selected: 3, offset: 1 });
    }

    #[test]
    fn scrolling_drags_the_selection_along() {
        let mut c = Cursor::default();
        c.scroll(3, 10, 4);
        assert_eq!(c, Cursor { selected: 3, offset: 3 });
        c.scroll(100, 10, 4);
        assert_eq!(c, Cursor { selected: 6, offset: 6 });
        c.scroll(-1, 10, 4);
        assert_eq!(c.offset, 5);
        assert_eq!(c.selected, 6);
    }
}
