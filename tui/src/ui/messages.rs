//! The Messages view: conversations (by peer member, by group, broadcasts) with unread counts,
//! and the selected one's thread: sender, time, priority and, for what this machine sent, each
//! recipient's delivery state. The thread is drawn from its newest message up, only as far as
//! the pane shows, so a long history costs nothing.

use claudemesh_protocol::frames::DeliveryState;
use claudemesh_protocol::local::SendState;
use ratatui::Frame;
use ratatui::layout::Constraint;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::Areas;
use super::theme::{Theme, priority_label};
use super::{CellText, TableSpec, clock, pane, table};
use crate::rows;
use crate::state::messages::{Conv, Direction, Msg, Outgoing};
use crate::state::{Focus, State, View};

pub(super) fn render(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas) {
    let list = rows::convs(s);
    let many_meshes = s.scope.is_none() && s.meshes.len() > 1;
    let row = |i: usize, t: &Theme| -> Vec<CellText> {
        let c = list[i];
        let unread = c.unread > 0;
        let title = if many_meshes { format!("{} · {}", c.title, c.key.mesh) } else { c.title.clone() };
        vec![
            (if unread { "●" } else { " " }.to_string(), t.unread()),
            (title, if unread { t.bold() } else { Style::default() }),
            (if unread { c.unread.to_string() } else { String::new() }, t.unread()),
            (clock(s, c.last_at), t.dim()),
        ]
    };
    let widths = [Constraint::Length(1), Constraint::Fill(1), Constraint::Length(4), Constraint::Length(5)];
    let focused = s.focus == Focus::List;
    let title = format!("Conversations ({})", list.len());
    let empty = if s.agent_up() { "no message yet: m to write one" } else { "waiting for the agent…" };
    let block = pane(title, focused, t);
    let spec = TableSpec { block, header: &["", "WITH", "NEW", "LAST"], widths: &widths, empty };
    table(f, a.table, spec, list.len(), s.cursor(View::Messages), t, row);
    thread(f, s, t, a, list.get(s.cursor(View::Messages).selected).copied());
}

fn thread(f: &mut Frame<'_>, s: &State, t: &Theme, a: &Areas, c: Option<&Conv>) {
    if a.detail.width < 4 || a.detail.height < 3 {
        return;
    }
    let focused = s.focus == Focus::Thread;
    let Some(c) = c else {
        f.render_widget(pane("Thread", focused, t), a.detail);
        return;
    };
    let inner_w = a.detail.width.saturating_sub(2) as usize;
    let inner_h = a.detail.height.saturating_sub(2) as usize;
    // Lines from the newest message up, until the pane and the scroll are covered.
    let want = inner_h + s.thread_scroll;
    let mut lines: Vec<Line<'_>> = Vec::new();
    for &i in c.msgs.iter().rev() {
        let mut block = message_lines(s, t, &s.messages.all[i], inner_w);
        block.append(&mut lines);
        lines = block;
        if lines.len() >= want {
            break;
        }
    }
    let scroll = s.thread_scroll.min(lines.len().saturating_sub(inner_h));
    let end = lines.len() - scroll;
    let start = end.saturating_sub(inner_h);
    // Anchored at the bottom, as chats are: the newest line sits just above the border.
    let mut shown: Vec<Line<'_>> = vec![Line::raw(""); inner_h.saturating_sub(end - start)];
    shown.extend(lines.drain(start..end));
    let hint = if scroll > 0 { format!(" · ↑{scroll}") } else { String::new() };
    let title = format!("{} · {}{hint}", c.title, c.key.mesh);
    f.render_widget(Paragraph::new(shown).block(pane(title, focused, t)), a.detail);
}

/// One message: a header line, then its body wrapped to `w` columns and indented.
fn message_lines<'a>(s: &State, t: &Theme, m: &'a Msg, w: usize) -> Vec<Line<'a>> {
    let mut head = vec![Span::styled(format!("{} ", clock(s, m.at)), t.dim())];
    match &m.dir {
        Direction::In(i) => {
            if !i.read {
                head.push(Span::styled("● ", t.unread()));
            }
            head.push(Span::styled(i.from.clone(), t.bold()));
        }
        Direction::Out(o) => {
            head.push(Span::styled(format!("you → {}", o.to), t.accent()));
        }
    }
    head.push(Span::styled(format!(" · {}", priority_label(m.priority)), t.priority(m.priority)));
    if let Direction::Out(o) = &m.dir {
        head.push(Span::raw(" · "));
        head.push(delivery(o, t));
    }
    let mut out = vec![Line::from(head)];
    if let Some(e) = &m.error {
        out.push(Line::styled(format!("  ✖ {e}"), t.bad()));
    }
    for l in wrap(&m.body, w.saturating_sub(2).max(8)) {
        out.push(Line::raw(format!("  {l}")));
    }
    out
}

/// Where a send stands: queued here, failed, or each recipient's state.
fn delivery<'a>(o: &Outgoing, t: &Theme) -> Span<'a> {
    match &o.state {
        SendState::Pending => Span::styled("◷ sending", t.warn()),
        SendState::Failed { error } => {
            Span::styled(format!("✖ failed: {}", claudemesh_protocol::text::one_line(error)), t.bad())
        }
        SendState::Accepted { .. } => {
            let n = o.recipients.len();
            let count = |st: &[DeliveryState]| o.recipients.values().filter(|d| st.contains(d)).count();
            let seen = count(&[DeliveryState::Seen]);
            let delivered = count(&[DeliveryState::Delivered, DeliveryState::Seen]);
            let expired = count(&[DeliveryState::Expired]);
            if n == 0 {
                return Span::styled("✓ sent", t.good());
            }
            if expired > 0 {
                return Span::styled(format!("✖ expired {expired}/{n}"), t.bad());
            }
            if n == 1 {
                return match o.recipients.values().next() {
                    Some(DeliveryState::Seen) => Span::styled("✓✓ seen", t.good()),
                    Some(DeliveryState::Delivered) => Span::styled("✓ delivered", t.good()),
                    _ => Span::styled("◷ queued", t.warn()),
                };
            }
            if seen == n {
                return Span::styled(format!("✓✓ seen by all {n}"), t.good());
            }
            Span::styled(format!("✓ delivered {delivered}/{n} · ✓✓ seen {seen}/{n}"), t.warn())
        }
    }
}

/// `text` broken into lines of at most `w` characters, at spaces where it can.
pub(crate) fn wrap(text: &str, w: usize) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut len = 0;
        for word in para.split(' ') {
            let wl = word.chars().count();
            if len > 0 && len + 1 + wl > w {
                out.push(std::mem::take(&mut line));
                len = 0;
            }
            if len > 0 {
                line.push(' ');
                len += 1;
            }
            let mut chars = word.chars().peekable();
            while chars.peek().is_some() {
                if len == w {
                    out.push(std::mem::take(&mut line));
                    len = 0;
                }
                if let Some(c) = chars.next() {
                    line.push(c);
                    len += 1;
                }
            }
        }
        out.push(line);
    }
    out
}
