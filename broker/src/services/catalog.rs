//! The mesh actor's commands: deploy, update, undeploy, scope, catalog, schema, logs and
//! calls (peer-hosted registration and forwarding are in [`super::peer`]).
//! Every verb checks the caller against the service's scope (or deployer/admin) here, at the
//! time it acts, from the member's granted groups and role.

use claudemesh_protocol::frames::{CatalogEntry, ErrorCode, Event, HostedBy, ServerFrame, ServiceStatus};
use tokio::time::Instant;

use super::actor::{Caller, Cmd, MeshActor, Pending, Svc};
use super::now_ms;
use super::peer::peer_entry;
use super::record::{BUNDLE_FILE, service_dir};
use crate::runner::wire::{MAX_RESULT_BYTES, PrepareMode, ToRunner};

/// Longest wait for a host agent beyond the call's own timeout.
pub(super) const FORWARD_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl MeshActor {
    pub async fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Restore(recs) => {
                for rec in recs {
                    let name = rec.name.clone();
                    let enabled = rec.enabled;
                    let mut svc = Svc::new(rec);
                    if !enabled {
                        svc.rt.status = ServiceStatus::Failed;
                    }
                    self.svcs.insert(name.clone(), svc);
                    if enabled {
                        self.set_status(&name, ServiceStatus::Starting, None);
                        self.load(&name, PrepareMode::Reuse);
                    }
                }
            }
            Cmd::Deploy { caller, rec, bundle } => self.deploy(caller, *rec, bundle).await,
            Cmd::Update { caller, update, bundle } => self.update(caller, *update, bundle).await,
            Cmd::Undeploy { caller, name } => self.undeploy(caller, name).await,
            Cmd::Scope { caller, name, scope } => self.scope(caller, name, scope).await,
            Cmd::RunnerKey { caller } => self.runner_key(caller),
            Cmd::Catalog { caller } => {
                let services = self.catalog_for(&caller);
                caller.reply(&ServerFrame::McpCatalogResult { req: caller.req, services });
            }
            Cmd::Schema { caller, name, tool } => {
                let Some(tools) = self.usable(&caller, &name).map(|e| e.tools) else { return };
                let tools = match tool {
                    Some(t) => match tools.into_iter().find(|x| x.name == t) {
                        Some(x) => vec![x],
                        None => {
                            return caller
                                .error(ErrorCode::NotFound, format!("service {name} has no tool {t}"));
                        }
                    },
                    None => tools,
                };
                caller.reply(&ServerFrame::McpSchemaResult { req: caller.req, name, tools });
            }
            Cmd::Logs { caller, name, lines, follow } => {
                if self.usable(&caller, &name).is_none() {
                    return;
                }
                let Some(svc) = self.svcs.get_mut(&name) else {
                    return caller.error(
                        ErrorCode::Invalid,
                        format!("service {name} is hosted by a peer; its log stays with its host"),
                    );
                };
                let n = lines.unwrap_or(100).min(super::actor::LOG_RING as u32) as usize;
                if follow {
                    svc.followers.insert(caller.conn.id, caller.conn.clone());
                }
                caller.reply(&ServerFrame::McpLogsResult { req: caller.req, name, lines: svc.tail(n) });
            }
            Cmd::Unfollow { caller, name } => {
                if let Some(svc) = self.svcs.get_mut(&name) {
                    svc.followers.remove(&caller.conn.id);
                }
                caller.ok();
            }
            Cmd::Call { caller, service, tool, arguments, timeout } => {
                self.call(caller, service, tool, arguments, timeout)
            }
            Cmd::Register { caller, name, description, tools, scope } => {
                self.register(caller, name, description, tools, scope)
            }
            Cmd::Unregister { caller, name } => self.unregister(caller, name),
            Cmd::CallResponse { member_id, call_id, result, error } => {
                self.call_response(member_id, call_id, result, error)
            }
            Cmd::ConnGone { conn_id, member_id } => self.conn_gone(conn_id, &member_id),
        }
    }

    /// The entry `name` if the caller may use it; otherwise answers not found / forbidden.
    fn usable(&self, caller: &Caller, name: &str) -> Option<CatalogEntry> {
        let entry = if let Some(s) = self.svcs.get(name) {
            s.rec.entry(&s.rt)
        } else if let Some(p) = self.peers.get(name) {
            peer_entry(name, p)
        } else {
            caller.error(ErrorCode::NotFound, format!("no service {name} in mesh {}", self.mesh.slug));
            return None;
        };
        if !caller.who.can_use(&entry.scope, &entry.deployer) {
            caller.error(
                ErrorCode::Forbidden,
                format!("service {name} is not shared with you (ask its deployer to widen its scope)"),
            );
            return None;
        }
        Some(entry)
    }

    fn catalog_for(&self, caller: &Caller) -> Vec<CatalogEntry> {
        let broker = self.svcs.values().map(|s| s.rec.entry_for(&s.rt, &caller.who.member_id));
        let peers = self.peers.iter().map(|(n, p)| peer_entry(n, p));
        broker.chain(peers).filter(|e| caller.who.can_use(&e.scope, &e.deployer)).collect()
    }

    async fn deploy(
        &mut self,
        caller: Caller,
        rec: super::ServiceRecord,
        bundle: Option<std::path::PathBuf>,
    ) {
        let name = rec.name.clone();
        // A deploy that failed left its record (for its error and log); deploying again over it
        // replaces it, for whoever may manage it.
        let retry = self.svcs.get(&name).is_some_and(|s| {
            !s.rec.enabled
                && s.waiters.is_empty()
                && s.unloading.is_empty()
                && caller.who.can_manage(&s.rec.deployer)
        });
        if retry {
            // (The runner's `load` replaces whatever it holds under this name.)
            self.svcs.remove(&name);
        }
        if self.svcs.contains_key(&name) || self.peers.contains_key(&name) {
            return caller.error(ErrorCode::Conflict, format!("service {name} already exists in mesh {}; use `claudemesh update {name}` or undeploy it first", self.mesh.slug));
        }
        let max = self.hub.config.services.max_per_mesh;
        if self.svcs.len() >= max {
            return caller.error(
                ErrorCode::Limit,
                format!("mesh {} has its maximum of {max} services", self.mesh.slug),
            );
        }
        let dir = service_dir(&self.hub.config.services_dir(), &self.mesh.id, &name);
        if let Err(e) = prepare_dir(&dir, bundle.as_deref()).await {
            return caller
                .error(ErrorCode::Internal, format!("cannot create the directory of service {name}: {e}"));
        }
        self.persist(&rec).await;
        let deadline = Instant::now() + self.hub.config.services.deploy_timeout;
        let mut svc = Svc::new(rec);
        svc.waiters.push((caller, deadline, false));
        self.svcs.insert(name.clone(), svc);
        self.set_status(&name, ServiceStatus::Preparing, None);
        self.load(&name, PrepareMode::Fresh);
    }

    async fn update(
        &mut self,
        caller: Caller,
        u: claudemesh_protocol::frames::McpUpdate,
        bundle: Option<std::path::PathBuf>,
    ) {
        let Some(svc) = self.svcs.get_mut(&u.name) else {
            return caller.error(
                ErrorCode::NotFound,
                format!("no broker-hosted service {} in mesh {}", u.name, self.mesh.slug),
            );
        };
        if !caller.who.can_manage(&svc.rec.deployer) {
            return caller.error(
                ErrorCode::Forbidden,
                format!("only the deployer of {} or an admin may update it", u.name),
            );
        }
        if let Some(s) = u.source {
            svc.rec.source = s;
        }
        if let Some(d) = u.description {
            svc.rec.description = d;
        }
        if let Some(a) = u.args {
            svc.rec.args = a;
        }
        let env = u.env.as_ref().unwrap_or(&svc.rec.env);
        let secrets = u.secrets.as_ref().unwrap_or(&svc.rec.secrets);
        let secrets = match super::secrets::check(env, secrets) {
            Ok(s) => s,
            Err(e) => return caller.error(ErrorCode::Invalid, format!("service {}: {e}", u.name)),
        };
        svc.rec.secrets = secrets;
        if let Some(e) = u.env {
            svc.rec.env = e;
        }
        svc.rec.updated_at = now_ms();
        let deadline = Instant::now() + self.hub.config.services.deploy_timeout;
        svc.waiters.push((caller, deadline, true));
        let rec = svc.rec.clone();
        let dir = service_dir(&self.hub.config.services_dir(), &self.mesh.id, &u.name);
        if let Some(b) = bundle
            && let Err(e) = tokio::fs::rename(&b, dir.join(BUNDLE_FILE)).await
        {
            tracing::warn!(service = %u.name, error = %e, "cannot move the new bundle");
        }
        self.persist(&rec).await;
        self.set_status(&u.name, ServiceStatus::Preparing, None);
        self.load(&u.name, PrepareMode::Fresh);
    }

    async fn undeploy(&mut self, caller: Caller, name: String) {
        let Some(svc) = self.svcs.get_mut(&name) else {
            return caller.error(
                ErrorCode::NotFound,
                format!(
                    "no broker-hosted service {name} in mesh {} (peer-hosted ones are stopped by their host)",
                    self.mesh.slug
                ),
            );
        };
        if !caller.who.can_manage(&svc.rec.deployer) {
            return caller.error(
                ErrorCode::Forbidden,
                format!("only the deployer of {name} or an admin may undeploy it"),
            );
        }
        svc.rec.enabled = false;
        let (key, scope, deployer) = (svc.rec.key(), svc.rec.scope.clone(), svc.rec.deployer.clone());
        for (c, _, _) in svc.waiters.drain(..) {
            c.error(ErrorCode::Conflict, format!("service {name} was undeployed"));
        }
        let removed = self.hub.store.write(move |tx, _| tx.remove(crate::store::SERVICES, &key)).await;
        if let Err(e) = removed {
            return caller.error(ErrorCode::Internal, format!("cannot remove service {name}: {e}"));
        }
        self.tell(&scope, &deployer, &Event::McpUndeployed { name: name.clone() });
        let unloading = self.runner.as_ref().is_some_and(|r| r.send(ToRunner::Unload { name: name.clone() }));
        if unloading && let Some(svc) = self.svcs.get_mut(&name) {
            svc.rt.status = ServiceStatus::Stopped;
            svc.unloading.push(caller);
            return;
        }
        self.svcs.remove(&name);
        let _ = tokio::fs::remove_dir_all(service_dir(&self.hub.config.services_dir(), &self.mesh.id, &name))
            .await;
        caller.ok();
        self.stop_runner_if_idle().await;
    }

    async fn scope(&mut self, caller: Caller, name: String, scope: claudemesh_protocol::scope::Scope) {
        if let claudemesh_protocol::scope::Scope::Members(ids) = &scope {
            let st = self.mesh.lock();
            if let Some(bad) = ids.iter().find(|id| st.members.get(*id).is_none_or(|m| m.removed)) {
                return caller
                    .error(ErrorCode::NotFound, format!("{bad} is not a member of mesh {}", self.mesh.slug));
            }
        }
        let (before, deployer) = if let Some(s) = self.svcs.get(&name) {
            (s.rec.scope.clone(), s.rec.deployer.clone())
        } else if let Some(p) = self.peers.get(&name) {
            (p.scope.clone(), p.host.clone())
        } else {
            return caller
                .error(ErrorCode::NotFound, format!("no service {name} in mesh {}", self.mesh.slug));
        };
        if !caller.who.can_manage(&deployer) {
            return caller.error(
                ErrorCode::Forbidden,
                format!("only the deployer of {name} or an admin may change its scope"),
            );
        }
        let (gain, lose) = super::access::scope_change(&self.mesh.lock(), &deployer, &before, &scope);
        let entry = if let Some(s) = self.svcs.get_mut(&name) {
            s.rec.scope = scope.clone();
            s.rec.updated_at = now_ms();
            for m in &lose {
                let gone: Vec<u64> = {
                    let st = self.mesh.lock();
                    st.conns.get(m).map(|c| c.id).into_iter().collect()
                };
                s.followers.retain(|id, _| !gone.contains(id));
            }
            let rec = s.rec.clone();
            let entry = rec.entry(&s.rt);
            self.persist(&rec).await;
            entry
        } else if let Some(p) = self.peers.get_mut(&name) {
            p.scope = scope.clone();
            p.updated_at = now_ms();
            peer_entry(&name, p)
        } else {
            return;
        };
        self.tell_members(&gain, &Event::McpDeployed(entry));
        self.tell_members(&lose, &Event::McpUndeployed { name });
        caller.ok();
    }

    fn call(
        &mut self,
        caller: Caller,
        service: String,
        tool: String,
        arguments: serde_json::Value,
        timeout: std::time::Duration,
    ) {
        let Some(entry) = self.usable(&caller, &service) else { return };
        if entry.hosted_by == HostedBy::Peer {
            return self.forward(caller, service, tool, arguments, timeout);
        }
        if entry.status != ServiceStatus::Running {
            let why = entry.error.map(|e| format!(": {e}")).unwrap_or_default();
            return caller.error(
                ErrorCode::Unavailable,
                format!("service {service} is {:?}{why}", entry.status).to_lowercase(),
            );
        }
        let id = self.id();
        let sent = self.runner.as_ref().is_some_and(|r| {
            r.send(ToRunner::Call {
                id,
                name: service.clone(),
                tool,
                arguments,
                timeout_ms: timeout.as_millis() as u64,
                caller: caller.who.member_id.clone(),
            })
        });
        if !sent {
            return caller.error(
                ErrorCode::Unavailable,
                format!("the runner of service {service} is not accepting calls; try again"),
            );
        }
        let deadline = Instant::now() + timeout + FORWARD_GRACE;
        self.calls.insert(id, Pending { caller, service, deadline, host: None });
    }

    fn conn_gone(&mut self, conn_id: u64, member_id: &str) {
        let gone: Vec<u64> =
            self.calls.iter().filter(|(_, p)| p.caller.conn.id == conn_id).map(|(id, _)| *id).collect();
        for id in gone {
            self.calls.remove(&id);
            if let Some(r) = &self.runner {
                r.send(ToRunner::Cancel { id });
            }
        }
        self.forwards.retain(|_, p| p.caller.conn.id != conn_id);
        for svc in self.svcs.values_mut() {
            svc.followers.remove(&conn_id);
        }
        let hosted: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.host == member_id && p.host_conn == Some(conn_id))
            .map(|(n, _)| n.clone())
            .collect();
        for name in hosted {
            let failed: Vec<String> =
                self.forwards.iter().filter(|(_, p)| p.service == name).map(|(id, _)| id.clone()).collect();
            for id in failed {
                if let Some(p) = self.forwards.remove(&id) {
                    p.caller.error(
                        ErrorCode::Unavailable,
                        format!("service {name} went offline during the call: its host disconnected"),
                    );
                }
            }
            if let Some(p) = self.peers.get_mut(&name) {
                p.host_conn = None;
                let (scope, host) = (p.scope.clone(), p.host.clone());
                self.tell(
                    &scope,
                    &host,
                    &Event::McpStatus { name, status: ServiceStatus::Offline, error: None },
                );
            }
        }
    }
}

/// Creates the service dir (0700) and moves an uploaded bundle into it.
async fn prepare_dir(dir: &std::path::Path, bundle: Option<&std::path::Path>) -> std::io::Result<()> {
    crate::config::create_private_dir(dir)?;
    if let Some(b) = bundle {
        tokio::fs::rename(b, dir.join(BUNDLE_FILE)).await?;
    }
    Ok(())
}

/// A result over [`MAX_RESULT_BYTES`] replaced by its first text, cut, and a notice.
pub fn cut_result(result: serde_json::Value) -> serde_json::Value {
    let size = serde_json::to_string(&result).map(|s| s.len()).unwrap_or_default();
    if size <= MAX_RESULT_BYTES {
        return result;
    }
    let text: String = result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut end = text.len().min(MAX_RESULT_BYTES - 1024);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    serde_json::json!({
        "content": [
            {"type": "text", "text": &text[..end]},
            {"type": "text", "text": format!("[result truncated: {size} bytes, over the 1 MiB limit]")}
        ],
        "isError": result["isError"].as_bool().unwrap_or(false)
    })
}
