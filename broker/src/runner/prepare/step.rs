//! The step runner: one preparation command (argv, never a shell) in a cleared environment,
//! with a timeout and cancellation that kill its whole process group, every output line sent to
//! the service's [`LogSink`] and the last [`TAIL_LINES`] kept for the error.

use claudemesh_protocol::limits::REGISTRY_ENV;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PrepareError;
use crate::runner::log::{LogSink, clean_line};

/// Lines of a failed step's output carried in its [`PrepareError::log_tail`].
pub const TAIL_LINES: usize = 40;
/// Most stdout lines a step keeps for its caller (`git rev-parse`, `uv pip show`).
const MAX_STDOUT_LINES: usize = 10_000;
/// Longest line read before it is cut (the rest comes as further lines).
const MAX_READ_LINE: u64 = 64 * 1024;
/// How long output may still drain after the step's process group is gone.
const DRAIN: Duration = Duration::from_secs(2);

/// Variables of the runner's own environment that steps (not children) inherit: how the
/// operator's host reaches the package registries (see [`REGISTRY_ENV`]).
pub const PASSTHROUGH: &[&str] = REGISTRY_ENV;

/// Where and how the steps of one service's preparation run.
#[derive(Debug, Clone)]
pub struct StepCtx {
    /// The service name, named in every error.
    pub service: String,
    /// The service directory: `HOME` of every step.
    pub dir: PathBuf,
    /// `PATH` of every step (the runner's), also where tools are looked up.
    pub path: OsString,
    /// Longest one step may run.
    pub timeout: Duration,
    /// Where every output line goes.
    pub log: LogSink,
    /// Cancelling it kills the running step (and its group).
    pub cancel: CancellationToken,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the step is called in logs and errors (`npm install`, `git clone`): never holds
    /// secrets.
    pub name: String,
    /// The program (an absolute path, as [`StepCtx::require_tool`] finds it).
    pub program: PathBuf,
    /// Arguments after the program.
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Added to the base environment (PATH, HOME, LANG).
    pub env: Vec<(String, OsString)>,
    /// A non-zero exit is reported in [`StepOutput::success`] instead of as an error.
    pub allow_failure: bool,
}

impl Step {
    /// A step running `program` in `cwd`.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: Vec::new(),
            allow_failure: false,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Lets the step fail without an error (see [`StepOutput::success`]).
    pub fn allow_failure(mut self) -> Self {
        self.allow_failure = true;
        self
    }
}

/// What a finished step left.
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    /// It exited with status 0.
    pub success: bool,
    /// Its stdout lines (at most 10,000), without line ends.
    pub stdout: Vec<String>,
    /// The last [`TAIL_LINES`] lines of stdout and stderr, as logged.
    pub tail: Vec<String>,
}

enum Outcome {
    Exited(std::process::ExitStatus),
    TimedOut,
    Cancelled,
}

impl StepCtx {
    /// A context for service `service` in `dir`, `PATH` from the runner's environment.
    pub fn new(
        service: &str,
        dir: &Path,
        timeout: Duration,
        log: &LogSink,
        cancel: &CancellationToken,
    ) -> Self {
        Self {
            service: service.to_owned(),
            dir: dir.to_owned(),
            path: std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin")),
            timeout,
            log: log.clone(),
            cancel: cancel.clone(),
        }
    }

    /// An error of step `step` for this service.
    pub fn error(&self, step: &str, message: impl std::fmt::Display, log_tail: Vec<String>) -> PrepareError {
        PrepareError {
            step: step.to_owned(),
            message: format!("{message} (service `{}`)", self.service),
            log_tail,
        }
    }

    /// The environment every step and the service's child start from: PATH, HOME, LANG.
    pub fn base_env(&self) -> Vec<(String, OsString)> {
        let lang = std::env::var_os("LANG").unwrap_or_else(|| OsString::from("C.UTF-8"));
        vec![
            ("PATH".to_owned(), self.path.clone()),
            ("HOME".to_owned(), self.dir.clone().into_os_string()),
            ("LANG".to_owned(), lang),
        ]
    }

    /// `tool` as found on this context's `PATH` (an executable regular file).
    pub fn which(&self, tool: &str) -> Option<PathBuf> {
        which_in(tool, &self.path)
    }

    /// Like [`which`](Self::which), or an error of `step` saying what to install.
    pub fn require_tool(&self, tool: &str, step: &str, install: &str) -> Result<PathBuf, PrepareError> {
        self.which(tool).ok_or_else(|| {
            self.error(step, format_args!("`{tool}` was not found on PATH: install {install}"), Vec::new())
        })
    }

    /// Runs `step` to its end, its timeout or the context's cancellation, whichever is first.
    pub async fn run(&self, step: &Step) -> Result<StepOutput, PrepareError> {
        if self.cancel.is_cancelled() {
            return Err(self.error(&step.name, "cancelled before it started", Vec::new()));
        }
        self.log.line(format!("==> {}", step.name));
        let mut cmd = Command::new(&step.program);
        cmd.args(&step.args)
            .current_dir(&step.cwd)
            .env_clear()
            .envs(self.base_env())
            .envs(PASSTHROUGH.iter().filter_map(|k| std::env::var_os(k).map(|v| (*k, v))))
            .envs(step.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            self.error(
                &step.name,
                format_args!("could not start {}: {e}", step.program.display()),
                Vec::new(),
            )
        })?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, true, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, false, tx));
        }

        let mut output = Collected::default();
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let outcome = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break Outcome::Cancelled,
                _ = &mut deadline => break Outcome::TimedOut,
                Some((is_stdout, line)) = rx.recv() => output.push(&self.log, is_stdout, &line),
                status = child.wait() => match status {
                    Ok(status) => break Outcome::Exited(status),
                    Err(e) => {
                        kill_group(pgid);
                        return Err(self.error(&step.name, format_args!("waiting for it failed: {e}"), output.tail()));
                    }
                },
            }
        };
        // Whatever the outcome, nothing the step started may outlive it.
        kill_group(pgid);
        if !matches!(outcome, Outcome::Exited(_)) {
            let _ = child.kill().await;
        }
        let _ = tokio::time::timeout(DRAIN, async {
            while let Some((is_stdout, line)) = rx.recv().await {
                output.push(&self.log, is_stdout, &line);
            }
        })
        .await;
        match outcome {
            Outcome::Exited(status) if status.success() || step.allow_failure => Ok(StepOutput {
                success: status.success(),
                stdout: output.stdout,
                tail: output.tail.into_iter().collect(),
            }),
            Outcome::Exited(status) => {
                let how = match status.code() {
                    Some(code) => format!("exited with code {code}"),
                    None => format!("was killed ({status})"),
                };
                Err(self.error(&step.name, how, output.tail()))
            }
            Outcome::TimedOut => Err(self.error(
                &step.name,
                format_args!("timed out after {} ms and was killed", self.timeout.as_millis()),
                output.tail(),
            )),
            Outcome::Cancelled => Err(self.error(&step.name, "cancelled", output.tail())),
        }
    }
}

#[derive(Default)]
struct Collected {
    stdout: Vec<String>,
    tail: VecDeque<String>,
}

impl Collected {
    fn push(&mut self, log: &LogSink, is_stdout: bool, raw: &str) {
        let line = clean_line(raw);
        log.line(&line);
        if is_stdout && self.stdout.len() < MAX_STDOUT_LINES {
            self.stdout.push(line.clone());
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// SIGKILL to the step's process group (its own, from `process_group(0)`); gone already is fine.
fn kill_group(pgid: Option<Pid>) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

/// Sends each line of `r` (lossy UTF-8, cut at [`MAX_READ_LINE`]) until EOF.
async fn pump<R: AsyncRead + Unpin>(r: R, is_stdout: bool, tx: mpsc::UnboundedSender<(bool, String)>) {
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader).take(MAX_READ_LINE).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tx.send((is_stdout, String::from_utf8_lossy(&buf).into_owned())).is_err() {
                    break;
                }
            }
        }
    }
}

/// `tool` in the directories of `path`: an executable regular file. A `tool` with a `/` is
/// not looked up.
pub fn which_in(tool: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    if tool.is_empty() || tool.contains('/') {
        return None;
    }
    std::env::split_paths(path).filter(|d| d.is_absolute()).map(|d| d.join(tool)).find(|p| is_executable(p))
}

/// A regular file (after symlinks) with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_only_executables_by_bare_name() {
        let path = OsString::from("/usr/bin:/bin");
        assert!(which_in("sh", &path).is_some());
        assert!(which_in("/bin/sh", &path).is_none());
        assert!(which_in("no-such-tool-here", &path).is_none());
    }
}
