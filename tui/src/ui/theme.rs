//! Colours and emphasis. Only the terminal's own 8 ANSI colours are used (its theme decides
//! how they look, so they stay readable on dark and light backgrounds), never white or black
//! text; the selection is reverse video. Under NO_COLOR (<https://no-color.org>) every colour
//! is dropped and only bold, dim, underline and reverse remain.

use claudemesh_protocol::frames::{Priority, ServiceStatus, SessionStatus};
use claudemesh_protocol::local::{LinkState, TrustState};
use ratatui::style::{Color, Modifier, Style};

/// The styles of one frame.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }

    pub fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    pub fn dim(&self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }

    /// Table column headers and pane titles.
    pub fn heading(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The selected row.
    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    pub fn accent(&self) -> Style {
        self.fg(Color::Blue).add_modifier(Modifier::BOLD)
    }

    pub fn good(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Unread markers and counts.
    pub fn unread(&self) -> Style {
        self.fg(Color::Magenta).add_modifier(Modifier::BOLD)
    }

    pub fn link(&self, l: LinkState) -> Style {
        match l {
            LinkState::Connected => self.good(),
            LinkState::Connecting | LinkState::Disconnected => self.warn(),
            LinkState::Refused | LinkState::KeyInUse => self.bad(),
        }
    }

    pub fn status(&self, s: SessionStatus) -> Style {
        match s {
            SessionStatus::Idle => self.good(),
            SessionStatus::Working => self.warn(),
            SessionStatus::Dnd => self.fg(Color::Red),
        }
    }

    /// A service's status: running green, on its way yellow, broken red, not running dim.
    pub fn service(&self, s: ServiceStatus) -> Style {
        match s {
            ServiceStatus::Running => self.good(),
            ServiceStatus::Preparing | ServiceStatus::Starting | ServiceStatus::Restarting => self.warn(),
            ServiceStatus::Crashed | ServiceStatus::Failed => self.fg(Color::Red),
            ServiceStatus::Stopped | ServiceStatus::Offline => self.dim(),
        }
    }

    pub fn priority(&self, p: Priority) -> Style {
        match p {
            Priority::Now => self.bad(),
            Priority::Next => Style::default(),
            Priority::Low => self.dim(),
        }
    }

    pub fn trust(&self, t: TrustState) -> Style {
        match t {
            TrustState::Verified => self.good(),
            TrustState::Unverified => self.warn(),
            TrustState::KeyChanged | TrustState::Removed => self.bad(),
        }
    }
}

/// A link state's symbol and word.
pub fn link_label(l: LinkState) -> (&'static str, &'static str) {
    match l {
        LinkState::Connected => ("●", "connected"),
        LinkState::Connecting => ("◌", "connecting"),
        LinkState::Disconnected => ("○", "disconnected"),
        LinkState::Refused => ("✖", "refused"),
        LinkState::KeyInUse => ("✖", "key in use"),
    }
}

pub fn status_label(s: SessionStatus) -> &'static str {
    match s {
        SessionStatus::Idle => "idle",
        SessionStatus::Working => "working",
        SessionStatus::Dnd => "dnd",
    }
}

pub fn priority_label(p: Priority) -> &'static str {
    match p {
        Priority::Now => "now",
        Priority::Next => "next",
        Priority::Low => "low",
    }
}

pub fn trust_label(t: TrustState) -> &'static str {
    match t {
        TrustState::Verified => "verified",
        TrustState::Unverified => "unverified",
        TrustState::KeyChanged => "KEY CHANGED",
        TrustState::Removed => "REMOVED",
    }
}
