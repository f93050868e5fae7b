//! The mesh actor's handling of its runner's lines ([`FromRunner`]): statuses, loads and
//! load failures answering deploys, unloads finishing undeploys, tool changes, crashes, log lines
//! into the ring and to followers, call results; and the runner exiting (calls failed, services
//! restarting, the runner started again with backoff).

use std::time::Duration;

use claudemesh_protocol::frames::{ErrorCode, Event, ServerFrame, ServiceStatus, encode};
use tokio::time::Instant;

use super::actor::MeshActor;
use super::now_ms;
use super::proc::RunnerMsg;
use crate::hub::Outgoing;
use crate::runner::wire::{CallErrorCode, FromRunner};

impl MeshActor {
    pub(super) async fn runner_msg(&mut self, msg: RunnerMsg) {
        match msg {
            RunnerMsg::Line(line) => self.runner_line(line).await,
            RunnerMsg::Exited(why) => self.runner_exited(why),
        }
    }

    fn runner_exited(&mut self, why: String) {
        tracing::warn!(mesh = %self.mesh.slug, why, "runner exited");
        self.runner = None;
        self.generation += 1;
        self.runner_key_gone();
        for (c, _) in self.key.waiters.drain(..) {
            c.error(
                ErrorCode::Unavailable,
                format!("the service runner exited before it said its key ({why})"),
            );
        }
        for (_, p) in self.calls.drain() {
            p.caller.error(
                ErrorCode::Unavailable,
                format!(
                    "the runner of service {} exited during the call ({why}); it is being restarted",
                    p.service
                ),
            );
        }
        let names: Vec<String> = self.svcs.keys().cloned().collect();
        for name in &names {
            let failed = self.svcs.get_mut(name).map(|s| {
                for c in s.unloading.drain(..) {
                    c.ok();
                }
                !s.waiters.is_empty()
            });
            if failed == Some(true) {
                self.set_status(
                    name,
                    ServiceStatus::Failed,
                    Some(format!("the service runner exited ({why})")),
                );
                self.answer_waiters(name);
                if let Some(s) = self.svcs.get_mut(name) {
                    s.rec.enabled = false;
                }
            } else if self.svcs.get(name).is_some_and(|s| s.rec.enabled) {
                self.set_status(name, ServiceStatus::Restarting, None);
            }
        }
        if self.svcs.values().any(|s| s.rec.enabled) {
            self.runner_failures += 1;
            let backoff = Duration::from_millis(
                (self.hub.config.services.restart.backoff_min_ms << self.runner_failures.min(6))
                    .min(self.hub.config.services.restart.backoff_max_ms),
            );
            self.respawn_at = Some(Instant::now() + backoff);
        }
    }

    async fn runner_line(&mut self, line: FromRunner) {
        match line {
            FromRunner::Ready { version, pid, public_key, key_error } => {
                tracing::debug!(mesh = %self.mesh.slug, version, pid, "runner ready");
                self.runner_ready(public_key, key_error);
            }
            FromRunner::Status { name, status, error } => self.set_status(&name, status, error),
            FromRunner::Loaded { name, tools, resolved } => {
                self.runner_failures = 0;
                let Some(svc) = self.svcs.get_mut(&name) else { return };
                svc.rec.tools = tools;
                svc.rec.resolved = resolved;
                svc.rec.enabled = true;
                svc.rec.updated_at = now_ms();
                let rec = svc.rec.clone();
                let updated = svc.waiters.iter().any(|(_, _, update)| *update);
                self.persist(&rec).await;
                self.set_status(&name, ServiceStatus::Running, None);
                if let Some(svc) = self.svcs.get(&name) {
                    let entry = svc.rec.entry(&svc.rt);
                    let ev = if updated { Event::McpUpdated(entry) } else { Event::McpDeployed(entry) };
                    self.tell(&rec.scope, &rec.deployer, &ev);
                }
                self.answer_waiters(&name);
            }
            FromRunner::LoadFailed { name, step, error, log_tail } => {
                let Some(svc) = self.svcs.get_mut(&name) else { return };
                svc.push_log(&log_tail.iter().filter(|l| !svc.log.contains(l)).cloned().collect::<Vec<_>>());
                svc.rec.enabled = false;
                let rec = svc.rec.clone();
                self.persist(&rec).await;
                self.set_status(&name, ServiceStatus::Failed, Some(format!("{step}: {error}")));
                self.answer_waiters(&name);
            }
            FromRunner::Unloaded { name } => {
                let done = self.svcs.get(&name).is_some_and(|s| !s.unloading.is_empty());
                if done && let Some(mut svc) = self.svcs.remove(&name) {
                    for c in svc.unloading.drain(..) {
                        c.ok();
                    }
                    let dir =
                        super::record::service_dir(&self.hub.config.services_dir(), &self.mesh.id, &name);
                    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(mesh = %self.mesh.slug, service = %name, error = %e, "cannot remove the service directory");
                    }
                }
                self.stop_runner_if_idle().await;
            }
            FromRunner::ToolsChanged { name, tools } => {
                let Some(svc) = self.svcs.get_mut(&name) else { return };
                svc.rec.tools = tools.clone();
                let rec = svc.rec.clone();
                self.persist(&rec).await;
                self.tell(&rec.scope, &rec.deployer, &Event::McpToolsChanged { name, tools });
            }
            FromRunner::Crashed { name, error } => {
                self.set_status(&name, ServiceStatus::Crashed, Some(error.clone()));
                if let Some(s) = self.svcs.get(&name) {
                    let (scope, dep) = (s.rec.scope.clone(), s.rec.deployer.clone());
                    self.tell(&scope, &dep, &Event::McpCrashed { name, error });
                }
            }
            FromRunner::Log { name, lines } => {
                let Some(svc) = self.svcs.get_mut(&name) else { return };
                svc.push_log(&lines);
                if !svc.followers.is_empty() {
                    let frame = encode(&ServerFrame::Event(Event::McpLog { name: name.clone(), lines }));
                    svc.followers.retain(|_, c| c.send(Outgoing::Frame(frame.clone(), "event")));
                }
            }
            FromRunner::Result { id, result } => {
                if let Some(p) = self.calls.remove(&id) {
                    p.caller.reply(&ServerFrame::McpCallResult { req: p.caller.req, result });
                }
            }
            FromRunner::CallError { id, code, message } => {
                if let Some(p) = self.calls.remove(&id) {
                    let code = match code {
                        CallErrorCode::Timeout => ErrorCode::Timeout,
                        CallErrorCode::Tool => ErrorCode::Invalid,
                        CallErrorCode::NotLoaded | CallErrorCode::NotRunning | CallErrorCode::Crashed => {
                            ErrorCode::Unavailable
                        }
                        CallErrorCode::Cancelled => return,
                    };
                    p.caller.error(code, format!("service {}: {message}", p.service));
                }
            }
            FromRunner::Pong { .. } => {}
        }
    }
}
