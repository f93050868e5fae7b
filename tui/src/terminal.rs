//! The real terminal: raw mode, the alternate screen, mouse capture and bracketed paste on
//! entry; all of it undone on exit, on a panic (the hook restores first, then reports) and by
//! the guard's `Drop` on any early return. Signals become an event the loop quits on.

use std::io::{Stdout, Write};

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The terminal in dashboard mode; restored when dropped.
#[derive(Debug)]
pub struct Guard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(
        out,
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = out.flush();
}

/// Enters dashboard mode and installs the panic hook.
pub fn init() -> std::io::Result<Guard> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode()?;
    let mut out = std::io::stdout();
    if let Err(e) = execute!(out, EnterAlternateScreen, EnableMouseCapture, EnableBracketedPaste) {
        restore();
        return Err(e);
    }
    let terminal = Terminal::new(CrosstermBackend::new(out)).inspect_err(|_| restore())?;
    Ok(Guard { terminal })
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Rings the bell.
pub fn bell() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x07");
    let _ = out.flush();
}

/// Writes `text` to the clipboard with OSC 52 (terminals that refuse it ignore the sequence).
pub fn copy(text: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b]52;c;{b64}\x07");
    let _ = out.flush();
}
