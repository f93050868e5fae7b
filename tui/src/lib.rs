//! claudemesh-tui: the terminal dashboard, a client of the local agent (DESIGN §2).
//!
//! Code map: [`state`] is plain data; [`update::update`] applies one [`event::Event`] and
//! returns [`effect::Effect`]s, with no I/O; [`ui::render`] draws a frame as a pure function of
//! the state (one view per file under `ui/`); [`rows`] is what each table shows, shared by both;
//! [`app::run`] is the loop, generic over ratatui's backend; [`runner`] performs effects (agent
//! subscription with retry, calls, joins), reading what a call sends from a file with
//! [`files`]; [`terminal`] enters and restores the terminal.

pub mod app;
pub mod effect;
pub mod event;
pub mod files;
/// Fixed data for tests, snapshots and the benchmark (feature `fixture`).
#[cfg(feature = "fixture")]
pub mod fixture;
pub mod rows;
pub mod runner;
pub mod state;
pub mod terminal;
pub mod ui;
pub mod update;

use std::io::IsTerminal;
use std::path::PathBuf;

use claudemesh_agent::Paths;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::effect::Effect;
use crate::state::State;

/// Why the dashboard could not run.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// `what` (its input or its output) is not a terminal.
    #[error("claudemesh tui needs a terminal: its {0} is not one (use `claudemesh status` in scripts)")]
    NotATerminal(&'static str),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// What the dashboard runs against.
#[derive(Debug, Clone)]
pub struct Options {
    pub paths: Paths,
    /// This program, to start the agent as `exe agent run` when none runs.
    pub exe: PathBuf,
}

/// The events channel's size: input, ticks and agent events share it.
const EVENTS: usize = 1024;

/// The performer of effects in a real terminal.
struct Real {
    runner: runner::Runner,
}

impl app::Outside for Real {
    fn perform(&mut self, e: Effect) {
        match e {
            Effect::Call { tag, call } => self.runner.call(tag, call),
            Effect::CallWithFile { tag, call } => self.runner.call_with_file(tag, call),
            Effect::Join { tag, invite, name } => self.runner.join(tag, invite, name),
            Effect::Bell => terminal::bell(),
            Effect::Copy(text) => terminal::copy(&text),
            Effect::Reconnect => self.runner.reconnect(true),
            Effect::Follow(f) => self.runner.follow(f),
            Effect::Quit => {}
        }
    }
}

/// Whether colours are wanted: NO_COLOR set to anything non-empty turns them off.
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The name a join offers: the configured one, else `user@host` (what `claudemesh join` uses).
fn default_name(paths: &Paths) -> String {
    if let Some(n) = claudemesh_agent::Config::load(paths).ok().and_then(|c| c.display_name) {
        return n;
    }
    let user = std::env::var("USER").unwrap_or_default();
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    match (user.is_empty(), host.is_empty()) {
        (true, _) => String::new(),
        (false, true) => user,
        (false, false) => format!("{user}@{host}"),
    }
}

/// Runs the dashboard until the person quits or a signal comes; the terminal is restored on
/// every way out.
pub async fn run(opts: Options) -> Result<(), TuiError> {
    if !std::io::stdout().is_terminal() {
        return Err(TuiError::NotATerminal("output"));
    }
    if !std::io::stdin().is_terminal() {
        return Err(TuiError::NotATerminal("input"));
    }
    let mut guard = terminal::init()?;
    let size = guard.terminal.size()?;
    let mut s = State::new((size.width, size.height), color_wanted(), app::now_ms());
    s.utc_offset_secs = chrono::Local::now().offset().local_minus_utc();
    s.default_name = default_name(&opts.paths);
    let (tx, mut rx) = mpsc::channel(EVENTS);
    let cancel = CancellationToken::new();
    let inputs = tokio_util::task::TaskTracker::new();
    app::spawn_inputs(tx.clone(), cancel.clone(), &inputs);
    let mut real = Real { runner: runner::Runner::start(opts.paths, opts.exe, tx, cancel.clone()) };
    let r = app::run(&mut guard.terminal, &mut s, &mut rx, &mut real).await;
    cancel.cancel();
    drop(rx);
    real.runner.shutdown().await;
    inputs.close();
    drop(guard);
    r.map_err(TuiError::Terminal)
}
