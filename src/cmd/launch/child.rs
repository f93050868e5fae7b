//! Running `claude` as launch's child without coming between it and the terminal.
//!
//! `claude` is spawned in launch's own process group (the one the shell made the foreground
//! group of the terminal) with stdin, stdout and stderr inherited: it owns the tty directly,
//! as plain `claude` does. So input and output are never copied, resizes reach it (the kernel
//! sends SIGWINCH to the foreground group), Ctrl-C and Ctrl-\ reach it from the tty, and Ctrl-Z
//! stops the whole group while `fg` continues both. A pseudo-terminal in between would make
//! launch proxy every byte and every resize and get job control subtly wrong; nothing here
//! needs one, since launch only has to outlive `claude` to clean up after it.
//!
//! While `claude` runs, launch ignores SIGINT and SIGQUIT (`claude` gets them from the tty
//! itself), forwards SIGTERM and SIGHUP to it, and stops itself when `claude` stopped itself
//! (Claude Code's own Ctrl-Z), so the shell regains the terminal. The terminal modes of stdin
//! are saved before and restored after, whatever way `claude` ended.

use std::process::ExitCode;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use super::plan::Plan;

/// The terminal modes of stdin when launch started (when stdin is a terminal).
#[derive(Debug)]
pub struct Terminal {
    saved: Option<Termios>,
}

impl Terminal {
    /// Saves stdin's terminal modes, if stdin is a terminal.
    pub fn save() -> Self {
        Self { saved: tcgetattr(std::io::stdin()).ok() }
    }

    /// Puts the saved modes back (a crashed `claude` may leave the terminal raw, without echo).
    /// Only from the foreground: a background process changing them would be stopped (SIGTTOU).
    pub fn restore(&self) {
        let Some(t) = &self.saved else { return };
        let stdin = std::io::stdin();
        if nix::unistd::tcgetpgrp(&stdin).is_ok_and(|fg| fg == nix::unistd::getpgrp()) {
            let _ = tcsetattr(&stdin, SetArg::TCSADRAIN, t);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The signals launch catches from its start to its end. Catching (rather than ignoring) them
/// means `claude` starts with the default actions: a caught signal is reset by exec.
#[derive(Debug)]
pub struct Signals {
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn catch() -> anyhow::Result<Self> {
        let s = |k| signal(k).context("cannot handle signals");
        Ok(Self {
            int: s(SignalKind::interrupt())?,
            quit: s(SignalKind::quit())?,
            term: s(SignalKind::terminate())?,
            hup: s(SignalKind::hangup())?,
        })
    }

    /// The next of the four signals to arrive.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.quit.recv() => Signal::SIGQUIT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.hup.recv() => Signal::SIGHUP,
        }
    }
}

/// Exit code 128 + `sig`, as a shell reports a process killed by `sig`.
pub fn signal_code(sig: Signal) -> ExitCode {
    ExitCode::from(128u8.saturating_add(sig as u8))
}

/// How `claude` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Killed(Signal),
}

impl Ended {
    /// launch's own exit code: `claude`'s, or 128 + the signal that killed it.
    pub fn code(self) -> ExitCode {
        match self {
            // Exit statuses are 0..=255 on Unix.
            Ended::Exited(c) => ExitCode::from(u8::try_from(c & 0xff).unwrap_or(1)),
            Ended::Killed(s) => signal_code(s),
        }
    }
}

/// Runs `plan` and waits for it, handling `signals` meanwhile; returns how it ended. A
/// `claude` that cannot be started is an error naming how to install it.
pub async fn run(plan: &Plan, signals: &mut Signals) -> anyhow::Result<Ended> {
    let mut cmd = std::process::Command::new(&plan.program);
    cmd.args(&plan.args).envs(plan.env.iter().map(|(k, v)| (k, v)));
    let child = cmd.spawn().with_context(|| {
        format!(
            "cannot run {}: install Claude Code (npm install -g @anthropic-ai/claude-code) or set \
             CLAUDEMESH_CLAUDE to its path",
            plan.program.to_string_lossy()
        )
    })?;
    // Pids fit in i32 (the kernel's pid_t).
    let pid = Pid::from_raw(i32::try_from(child.id()).context("child pid out of range")?);
    // `child` is reaped by the waiter below, never by `Child::wait`; dropping it does neither.
    drop(child);
    let (tx, mut ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("claude-waiter".into())
        .spawn(move || {
            let _ = tx.send(wait(pid));
        })
        .context("cannot start a thread")?;
    loop {
        tokio::select! {
            r = &mut ended => return r.context("the waiter thread ended")?,
            sig = signals.next() => {
                if matches!(sig, Signal::SIGTERM | Signal::SIGHUP) {
                    // Until the waiter reaped it the pid is still `claude`'s (a zombie at worst).
                    let _ = kill(pid, sig);
                }
            }
        }
    }
}

/// Waits until `pid` exits or is killed; when it stops itself while launch runs on, launch
/// stops too, so that the shell sees the job stopped (both continue with `fg`).
fn wait(pid: Pid) -> anyhow::Result<Ended> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Ended::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Ended::Killed(sig)),
            Ok(WaitStatus::Stopped(..)) => {
                // A stop from the terminal stopped launch too, and the `fg` that continues both
                // may wake launch a moment before `claude`: only a `claude` that stays stopped
                // while launch runs stopped alone.
                if stopped_alone(pid, STOP_SETTLE) {
                    let _ = kill(Pid::this(), Signal::SIGSTOP);
                }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("cannot wait for claude"),
        }
    }
}

/// How long a stopped `claude` must stay stopped, with launch running, before launch takes it
/// for a stop of `claude`'s own and stops itself. `fg` continues the job's processes one after
/// another in one `kill(-pgid, SIGCONT)`, so the gap is far shorter than this.
const STOP_SETTLE: std::time::Duration = std::time::Duration::from_millis(150);

/// Whether `pid` stays stopped for `settle` (checked every 10 ms): a `claude` that a job-control
/// continue is about to wake is seen running again within it.
fn stopped_alone(pid: Pid, settle: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if !still_stopped(pid) {
            return false;
        }
        if start.elapsed() >= settle {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether `pid` is stopped now: state `T` in `/proc/<pid>/stat`, or from `ps` without /proc.
fn still_stopped(pid: Pid) -> bool {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        return stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) == Some("T");
    }
    std::process::Command::new("ps")
        .args(["-o", "state=", "-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii_start().starts_with(b"T"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_as_a_shell_reports_them() {
        assert_eq!(Ended::Exited(7).code(), ExitCode::from(7));
        assert_eq!(Ended::Killed(Signal::SIGSEGV).code(), ExitCode::from(139));
        assert_eq!(Ended::Killed(Signal::SIGTERM).code(), ExitCode::from(143));
        assert_eq!(signal_code(Signal::SIGKILL), ExitCode::from(137));
    }

    /// A `sleep` child stopped with SIGSTOP; killed and reaped on drop.
    struct Stopped(std::process::Child);

    impl Stopped {
        fn start() -> Self {
            let c = std::process::Command::new("sleep").arg("30").spawn().unwrap();
            let pid = Pid::from_raw(c.id() as i32);
            kill(pid, Signal::SIGSTOP).unwrap();
            let s = Self(c);
            let t = std::time::Instant::now();
            while !still_stopped(s.pid()) {
                assert!(t.elapsed() < std::time::Duration::from_secs(5), "sleep never stopped");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            s
        }
        fn pid(&self) -> Pid {
            Pid::from_raw(self.0.id() as i32)
        }
    }

    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_child_that_stays_stopped_stopped_alone() {
        let c = Stopped::start();
        assert!(stopped_alone(c.pid(), std::time::Duration::from_millis(100)));
    }

    /// The race CI found: `fg` woke launch first, launch saw `claude` still stopped and stopped
    /// itself again ("Stopped (signal)"). A child continued during the settle is not alone.
    #[test]
    fn a_child_continued_a_moment_later_did_not_stop_alone() {
        let c = Stopped::start();
        let pid = c.pid();
        let cont = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            kill(pid, Signal::SIGCONT).unwrap();
        });
        assert!(!stopped_alone(pid, std::time::Duration::from_secs(2)));
        cont.join().unwrap();
    }
}
