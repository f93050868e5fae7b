//! `update(state, event) -> effects`: every change to the dashboard's state, with no I/O.
//! Keys go to the open dialog, else the filter line, else the global keys, else the current
//! view (`views.rs`); the agent's snapshot, events and replies are applied in `agent.rs` and
//! `replies.rs`; the mouse in `mouse.rs`; dialogs in `dialogs.rs`; the Services view, its forms
//! and its log follow in `services.rs`; the Vault and Skills views in `vault.rs` and
//! `skills.rs`.

mod agent;
mod dialogs;
mod mouse;
mod replies;
mod services;
mod skills;
mod vault;
mod views;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::effect::Effect;
use crate::event::Event;
use crate::rows;
use crate::state::{AgentConn, ComposeFocus, Focus, Modal, State, View};
use crate::ui::layout;

/// Applies one event; returns what to do outside.
pub fn update(s: &mut State, ev: Event) -> Vec<Effect> {
    let mut fx = Vec::new();
    match ev {
        Event::Tick(now) => tick(s, now),
        Event::Resize(w, h) => {
            s.size = (w, h);
            clamp_all(s);
        }
        Event::Signal => fx.push(Effect::Quit),
        Event::Agent(a) => agent::apply(s, a, &mut fx),
        Event::Key(k) if k.kind != KeyEventKind::Release => key(s, k, &mut fx),
        Event::Key(_) => {}
        Event::Mouse(m) => mouse::apply(s, m, &mut fx),
        Event::Paste(text) => paste(s, &text),
    }
    services::sync_follow(s, &mut fx);
    fx
}

fn tick(s: &mut State, now: u64) {
    s.now_ms = now;
    if s.toast.as_ref().is_some_and(|t| t.until_ms <= now) {
        s.toast = None;
    }
    for r in s.rates.values_mut() {
        r.advance(now);
    }
}

fn paste(s: &mut State, text: &str) {
    match &mut s.modal {
        Some(Modal::Compose(c)) => match c.focus {
            ComposeFocus::To => c.to.paste(text, false),
            ComposeFocus::Body => c.body.paste(text, true),
        },
        Some(Modal::Prompt(p)) => p.field.paste(text, false),
        Some(Modal::Form(f)) => {
            let focus = f.focus;
            if let Some(x) = f.fields.get_mut(focus).filter(|x| x.choices().is_empty()) {
                x.field.paste(text, false);
            }
        }
        _ if s.filtering => {
            let f = s.filters.entry(s.view).or_default();
            f.extend(text.chars().filter(|c| !c.is_control()));
            s.cursors.insert(s.view, Default::default());
        }
        _ => {}
    }
}

fn key(s: &mut State, k: KeyEvent, fx: &mut Vec<Effect>) {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && k.code == KeyCode::Char('c') {
        fx.push(Effect::Quit);
        return;
    }
    if s.modal.is_some() {
        dialogs::key(s, k, fx);
        return;
    }
    if s.filtering {
        filter_key(s, k, fx);
        return;
    }
    if matches!(s.agent, AgentConn::Gone { .. }) && matches!(k.code, KeyCode::Char('r')) {
        s.agent = AgentConn::Connecting;
        fx.push(Effect::Reconnect);
        return;
    }
    match k.code {
        KeyCode::Char('q') => fx.push(Effect::Quit),
        KeyCode::Char('?') => s.modal = Some(Modal::Help),
        KeyCode::Char(c @ '1'..='9') => {
            if let Some(v) = View::ALL.get(c as usize - '1' as usize) {
                switch(s, *v, fx);
            }
        }
        KeyCode::Tab => {
            let v = View::ALL[(s.view.index() + 1) % View::ALL.len()];
            switch(s, v, fx);
        }
        KeyCode::BackTab => {
            let v = View::ALL[(s.view.index() + View::ALL.len() - 1) % View::ALL.len()];
            switch(s, v, fx);
        }
        KeyCode::Char('[') => cycle_scope(s, -1),
        KeyCode::Char(']') => cycle_scope(s, 1),
        KeyCode::Char('/') => {
            s.filtering = true;
            s.filters.entry(s.view).or_default();
        }
        KeyCode::Esc if !s.filter(s.view).is_empty() => {
            s.filters.remove(&s.view);
            clamp_all(s);
            if s.view == View::Skills {
                skills::load(s, None, fx);
            }
        }
        _ => {
            let before = s.cursor(s.view).selected;
            if !navigate(s, k) {
                views::key(s, k, fx);
            } else if s.view == View::Messages && s.cursor(View::Messages).selected != before {
                views::conversation_opened(s, fx);
            }
        }
    }
}

/// Switches to `v` (what opening it needs, e.g. the statuses of the conversation shown).
pub(crate) fn switch(s: &mut State, v: View, fx: &mut Vec<Effect>) {
    s.view = v;
    s.focus = Focus::List;
    clamp_all(s);
    match v {
        View::Messages => views::conversation_opened(s, fx),
        View::Vault => vault::load(s, None, fx),
        View::Skills => skills::load(s, None, fx),
        _ => {}
    }
}

/// After a (re)connect: the list of the view shown is asked for again.
pub(crate) fn reload_view(s: &mut State, fx: &mut Vec<Effect>) {
    match s.view {
        View::Vault => vault::load(s, None, fx),
        View::Skills => skills::load(s, None, fx),
        _ => {}
    }
}

/// The next or previous mesh scope: every mesh, then each in turn.
fn cycle_scope(s: &mut State, dir: isize) {
    let n = s.meshes.len() as isize + 1;
    let cur = match &s.scope {
        None => 0,
        Some(slug) => s.meshes.iter().position(|m| &m.slug == slug).map_or(0, |i| i as isize + 1),
    };
    let next = (cur + dir).rem_euclid(n);
    s.scope = if next == 0 { None } else { s.meshes.get(next as usize - 1).map(|m| m.slug.clone()) };
    clamp_all(s);
}

fn filter_key(s: &mut State, k: KeyEvent, fx: &mut Vec<Effect>) {
    let view = s.view;
    match k.code {
        // The Skills view's filter, once confirmed, is also the broker's query.
        KeyCode::Enter => {
            s.filtering = false;
            if view == View::Skills {
                skills::load(s, None, fx);
            }
        }
        KeyCode::Esc => {
            s.filtering = false;
            s.filters.remove(&view);
            if view == View::Skills {
                skills::load(s, None, fx);
            }
        }
        KeyCode::Backspace => {
            s.filters.entry(view).or_default().pop();
        }
        KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
            s.filters.entry(view).or_default().push(c);
        }
        _ => return,
    }
    s.cursors.insert(view, Default::default());
    s.selected_rows.remove(&view);
    clamp_all(s);
}

/// Moves the selection of the current table (or scrolls the thread); false when `k` is not a
/// movement key.
fn navigate(s: &mut State, k: KeyEvent) -> bool {
    let page = layout::areas(s).table_rows().max(1) as isize;
    let delta: isize = match k.code {
        KeyCode::Down | KeyCode::Char('j') => 1,
        KeyCode::Up | KeyCode::Char('k') => -1,
        KeyCode::PageDown => page,
        KeyCode::PageUp => -page,
        KeyCode::Home | KeyCode::Char('g') => isize::MIN / 2,
        KeyCode::End | KeyCode::Char('G') => isize::MAX / 2,
        _ => return false,
    };
    if s.view == View::Messages && s.focus == Focus::Thread {
        // The thread scrolls up from its newest line.
        let up = -delta.clamp(-10_000, 10_000);
        s.thread_scroll = (s.thread_scroll as isize + up).max(0) as usize;
        return true;
    }
    move_cursor(s, delta);
    true
}

/// Moves the current view's selection by `delta` rows.
pub(crate) fn move_cursor(s: &mut State, delta: isize) {
    let before = s.cursor(s.view).selected;
    let (len, h) = (rows::len(s, s.view), layout::areas(s).table_rows());
    s.cursors.entry(s.view).or_default().move_by(delta, len, h);
    if s.view == View::Messages && s.cursor(View::Messages).selected != before {
        s.thread_scroll = 0;
    }
    remember(s);
}

/// Notes which row the current view's selection is on (after the person moved it).
pub(crate) fn remember(s: &mut State) {
    match rows::key_at(s, s.view, s.cursor(s.view).selected) {
        Some(k) => s.selected_rows.insert(s.view, k),
        None => s.selected_rows.remove(&s.view),
    };
}

/// Keeps the current view's selection on its row, and inside the rows, after the rows or the
/// size changed (another view's is kept when it is switched to). The Events view follows the
/// newest line while its selection is on the last one.
pub(crate) fn clamp_all(s: &mut State) {
    let (len, h) = (rows::len(s, s.view), layout::areas(s).table_rows());
    let at = s.selected_rows.get(&s.view).and_then(|k| rows::position(s, s.view, k));
    let c = s.cursors.entry(s.view).or_default();
    match at {
        Some(i) => c.select(i, len, h),
        None => c.clamp(len, h),
    }
}
