//! Driving the dashboard's pure state in tests: keys typed, agent replies given, frames drawn on
//! ratatui's `TestBackend`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use claudemesh_tui::effect::Effect;
use claudemesh_tui::event::{AgentEvent, CallError, Event};
use claudemesh_tui::state::State;
use claudemesh_tui::update::update;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// The screen `s` draws, as text.
pub fn draw(s: &State) -> String {
    let mut t = Terminal::new(TestBackend::new(s.size.0, s.size.1)).unwrap();
    t.draw(|f| claudemesh_tui::ui::render(f, s)).unwrap();
    format!("{}", t.backend())
}

/// One key without modifiers; the effects it asks for.
pub fn key(s: &mut State, code: KeyCode) -> Vec<Effect> {
    update(s, Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

/// Each character of `text` as a key; every effect asked for.
pub fn typed(s: &mut State, text: &str) -> Vec<Effect> {
    text.chars().flat_map(|c| key(s, KeyCode::Char(c))).collect()
}

/// Answers the first call of `fx` (one the runner makes itself or one reading a file) with
/// `result`; the effects that asks for.
pub fn answer(s: &mut State, fx: &[Effect], result: Result<serde_json::Value, CallError>) -> Vec<Effect> {
    let tag = fx
        .iter()
        .find_map(|e| match e {
            Effect::Call { tag, .. } | Effect::CallWithFile { tag, .. } => Some(*tag),
            _ => None,
        })
        .expect("a call");
    update(s, Event::Agent(AgentEvent::Reply { tag, result }))
}
