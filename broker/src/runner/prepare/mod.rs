//! Preparing a service before its start (stub: only `command` sources; the full version with
//! npx, uvx, git and bundle replaces this file).

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;

use super::log::LogSink;
use super::wire::{PrepareSource, Resolved, ServiceSpec};

/// What preparation settled on: the command to start and the extra env its runtime needs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The command to start.
    pub argv: Vec<String>,
    /// Extra env vars the runtime needs (e.g. a PATH prefix).
    pub env: BTreeMap<String, String>,
    /// What it settled on, for the broker.
    pub resolved: Resolved,
}

/// A failed preparation step, with the end of its output.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct PrepareError {
    /// The step that failed (`npm install`, `git clone`, …).
    pub step: String,
    /// What went wrong.
    pub message: String,
    /// The end of the step's output.
    pub log_tail: Vec<String>,
}

/// Prepares `spec` (this stub: `command` sources only).
pub async fn prepare(
    spec: &ServiceSpec,
    _log: &LogSink,
    _cancel: &CancellationToken,
) -> Result<Prepared, PrepareError> {
    match &spec.source {
        PrepareSource::Command { argv } if !argv.is_empty() => {
            let argv: Vec<String> = argv.iter().chain(&spec.args).cloned().collect();
            let resolved = Resolved { command: argv.clone(), ..Resolved::default() };
            Ok(Prepared { argv, env: BTreeMap::new(), resolved })
        }
        PrepareSource::Command { .. } => Err(PrepareError {
            step: "prepare".into(),
            message: format!("service {}: empty command", spec.name),
            log_tail: Vec::new(),
        }),
        _ => Err(PrepareError {
            step: "prepare".into(),
            message: format!("service {}: this source is not built in this branch", spec.name),
            log_tail: Vec::new(),
        }),
    }
}
