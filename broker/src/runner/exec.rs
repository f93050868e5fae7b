//! `runner-exec`: the trampoline a service child starts through. It sets the service's rlimits
//! on itself, asks to be killed with the runner, then execs the service's command (the
//! workspace forbids `unsafe`, so no `pre_exec` hook can do this in the runner).

use std::convert::Infallible;
use std::ffi::CString;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use super::wire::ChildLimits;

/// Why the trampoline could not exec the service.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no command to run")]
    NoCommand,
    #[error("argument holds a NUL byte: {0:?}")]
    Nul(String),
    #[error("cannot set {what} to {value}: {source}")]
    Limit { what: &'static str, value: u64, source: nix::Error },
    #[error("cannot run {command}: {source}")]
    Exec { command: String, source: nix::Error },
}

/// The rlimits part of [`ChildLimits`] as `runner-exec` flags.
pub fn limit_args(limits: &ChildLimits) -> Vec<String> {
    vec![
        "--memory-bytes".into(),
        limits.memory_bytes.to_string(),
        "--open-files".into(),
        limits.open_files.to_string(),
        "--processes".into(),
        limits.processes.to_string(),
    ]
}

/// Sets RLIMIT_DATA (not AS: V8 reserves gigabytes of address space it never touches),
/// RLIMIT_NOFILE and RLIMIT_NPROC (soft and hard) and the parent-death signal, then replaces
/// this process with `argv`. Returns only on failure.
pub fn exec(
    memory_bytes: u64,
    open_files: u64,
    processes: u64,
    argv: &[String],
) -> Result<Infallible, ExecError> {
    let Some(command) = argv.first() else {
        return Err(ExecError::NoCommand);
    };
    for (what, resource, value) in [
        ("RLIMIT_DATA", Resource::RLIMIT_DATA, memory_bytes),
        ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE, open_files),
        ("RLIMIT_NPROC", Resource::RLIMIT_NPROC, processes),
    ] {
        // An unprivileged process cannot raise its hard limit: never ask for more than it is.
        let value = match getrlimit(resource) {
            Ok((_, hard)) => value.min(hard),
            Err(_) => value,
        };
        setrlimit(resource, value, value).map_err(|source| ExecError::Limit { what, value, source })?;
    }
    // The runner starts children from its only thread (a current-thread runtime), so the
    // signal fires when the runner itself dies, even by SIGKILL. Best effort: not fatal.
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("runner-exec: cannot set the parent-death signal: {e}");
    }
    let args = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| ExecError::Nul(a.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    // `args` is non-empty: it has one entry per `argv` entry and `argv.first()` exists.
    let program = &args[0];
    nix::unistd::execvp(program, &args).map_err(|source| ExecError::Exec { command: command.clone(), source })
}
