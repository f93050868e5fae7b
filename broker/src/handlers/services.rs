//! Service frames (DESIGN §7): thin handlers that validate, authorize what can be decided
//! from the frame alone (deploy policy, the `command` source's admin token), take uploads, and
//! hand the rest to the mesh's services actor, which checks scopes and answers.

use std::time::Duration;

use claudemesh_protocol::frames::{
    ClientFrame, ErrorCode, McpDeploy, McpUpdate, Role, ServerFrame, ServiceSource,
};
use claudemesh_protocol::names::validate_service_name;

use crate::conn::Conn;
use crate::services::access::Who;
use crate::services::{Caller, Cmd, DeployPolicy, ServiceRecord, now_ms};

/// The caller of `req`, or `None` after answering why not.
fn caller(conn: &Conn, req: u64) -> Option<(Caller, std::sync::Arc<crate::hub::Mesh>)> {
    let a = conn.auth.as_ref()?;
    let who = Who::of(&a.mesh.lock(), &a.member_id);
    let Some(who) = who else {
        conn.error(Some(req), ErrorCode::Revoked, format!("member {} is not an active member", a.member_id));
        return None;
    };
    Some((Caller { who, conn: conn.out.clone(), req }, a.mesh.clone()))
}

/// Queues `cmd` for the mesh's actor; a full queue is `unavailable`.
fn submit(conn: &Conn, mesh: &std::sync::Arc<crate::hub::Mesh>, req: u64, cmd: Cmd) {
    let tx = conn.hub.services.actor(&conn.hub, mesh);
    if tx.try_send(cmd).is_err() {
        conn.error(
            Some(req),
            ErrorCode::Unavailable,
            format!("the services of mesh {} are busy; try again", mesh.slug),
        );
    }
}

/// Handles the service frames; returns the frame back when it is not one.
pub async fn dispatch(conn: &mut Conn, frame: ClientFrame) -> Option<ClientFrame> {
    use ClientFrame as C;
    let req = frame.req();
    match frame {
        C::McpDeploy(d) => deploy(conn, d),
        C::McpUpdate(u) => update(conn, u),
        C::McpUndeploy { req, name } => simple(conn, req, |caller| Cmd::Undeploy { caller, name }),
        C::McpScope { req, name, scope } => simple(conn, req, |caller| Cmd::Scope { caller, name, scope }),
        C::McpCatalog { req } => simple(conn, req, |caller| Cmd::Catalog { caller }),
        C::McpRunnerKey { req } => {
            let (caller, mesh) = caller(conn, req)?;
            if conn.hub.config.services.deploy_policy == DeployPolicy::Admins
                && caller.who.role != Role::Admin
            {
                conn.error(
                    Some(req),
                    ErrorCode::Forbidden,
                    format!("only admins may deploy services on mesh {}", mesh.slug),
                );
                return None;
            }
            submit(conn, &mesh, req, Cmd::RunnerKey { caller });
        }
        C::McpSchema { req, name, tool } => simple(conn, req, |caller| Cmd::Schema { caller, name, tool }),
        C::McpLogs { req, name, lines, follow } => {
            simple(conn, req, |caller| Cmd::Logs { caller, name, lines, follow })
        }
        C::McpLogsUnfollow { req, name } => simple(conn, req, |caller| Cmd::Unfollow { caller, name }),
        C::McpCall { req, service, tool, arguments, timeout_ms } => {
            let cfg = &conn.hub.config.services;
            let timeout =
                timeout_ms.map_or(cfg.call_timeout, Duration::from_millis).min(cfg.max_call_timeout);
            simple(conn, req, |caller| Cmd::Call { caller, service, tool, arguments, timeout })
        }
        C::McpRegister { req, name, description, tools, scope } => {
            if let Err(e) = validate_service_name(&name) {
                conn.error(Some(req), ErrorCode::Invalid, e.to_string());
                return None;
            }
            simple(conn, req, |caller| Cmd::Register { caller, name, description, tools, scope })
        }
        C::McpUnregister { req, name } => simple(conn, req, |caller| Cmd::Unregister { caller, name }),
        C::McpCallResponse { call_id, result, error } => {
            if let Some(a) = conn.auth.as_ref() {
                let member_id = a.member_id.clone();
                let mesh = a.mesh.clone();
                let cmd = Cmd::CallResponse { member_id, call_id, result, error };
                if let Some(tx) = conn.hub.services.existing(&mesh.id) {
                    let _ = tx.try_send(cmd);
                }
            }
        }
        C::UploadBegin { req, name: _, size, sha256 } => {
            let dir = conn.hub.config.data_dir.join("uploads");
            match conn.uploads.begin(&dir, size, &sha256, conn.hub.config.services.max_bundle_bytes) {
                Ok(upload_id) => {
                    conn.reply(&ServerFrame::UploadReady { req, upload_id, chunk_size: UPLOAD_CHUNK })
                }
                Err(e) => conn.error(Some(req), e.code(), e.to_string()),
            }
        }
        C::UploadChunk { upload_id, offset, data } => conn.uploads.chunk(&upload_id, offset, &data),
        C::UploadEnd { req, upload_id } => match conn.uploads.end(&upload_id) {
            Ok((size, sha256)) => conn.reply(&ServerFrame::UploadDone { req, upload_id, size, sha256 }),
            Err(e) => conn.error(Some(req), e.code(), e.to_string()),
        },
        other => return Some(other),
    }
    let _ = req;
    None
}

/// Raw bytes per `upload_chunk` (base64 makes frames a third larger, well under 4 MiB).
pub const UPLOAD_CHUNK: u32 = 1024 * 1024;

fn simple(conn: &Conn, req: u64, cmd: impl FnOnce(Caller) -> Cmd) {
    if let Some((caller, mesh)) = caller(conn, req) {
        submit(conn, &mesh, req, cmd(caller));
    }
}

/// Checks what a deploy's frame alone decides, and takes its bundle.
fn deploy(conn: &mut Conn, d: McpDeploy) {
    let req = d.req;
    let Some((caller, mesh)) = caller(conn, req) else { return };
    if let Err(e) = validate_service_name(&d.name) {
        return conn.error(Some(req), ErrorCode::Invalid, e.to_string());
    }
    if conn.hub.config.services.deploy_policy == DeployPolicy::Admins && caller.who.role != Role::Admin {
        return conn.error(
            Some(req),
            ErrorCode::Forbidden,
            format!("only admins may deploy services on mesh {}", mesh.slug),
        );
    }
    if let Err(e) = check_source(conn, &d.source, d.admin_token.as_ref()) {
        return conn.error(Some(req), e.0, e.1);
    }
    let bundle = match &d.source {
        ServiceSource::Bundle { upload_id } => match take_bundle(conn, upload_id) {
            Ok(p) => Some(p),
            Err((code, m)) => return conn.error(Some(req), code, m),
        },
        _ => None,
    };
    let secrets = match crate::services::secrets::check(&d.env, &d.secrets) {
        Ok(s) => s,
        Err(e) => return conn.error(Some(req), ErrorCode::Invalid, format!("service {}: {e}", d.name)),
    };
    let now = now_ms();
    let rec = ServiceRecord {
        mesh_id: mesh.id.clone(),
        name: d.name,
        description: d.description,
        source: d.source,
        args: d.args,
        entry: d.entry,
        env: d.env,
        secrets,
        scope: d.scope,
        deployer: caller.who.member_id.clone(),
        enabled: true,
        resolved: Default::default(),
        tools: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    submit(conn, &mesh, req, Cmd::Deploy { caller, rec: Box::new(rec), bundle });
}

fn update(conn: &mut Conn, u: McpUpdate) {
    let req = u.req;
    let Some((caller, mesh)) = caller(conn, req) else { return };
    let mut bundle = None;
    if let Some(s) = &u.source {
        if matches!(s, ServiceSource::Command { .. }) {
            return conn.error(
                Some(req),
                ErrorCode::Forbidden,
                "a command source is set at deploy time by the broker's operator",
            );
        }
        if let ServiceSource::Bundle { upload_id } = s {
            match take_bundle(conn, upload_id) {
                Ok(p) => bundle = Some(p),
                Err((code, m)) => return conn.error(Some(req), code, m),
            }
        }
    }
    submit(conn, &mesh, req, Cmd::Update { caller, update: Box::new(u), bundle });
}

/// A finished upload of this connection whose zip entries pass the checks.
fn take_bundle(conn: &mut Conn, upload_id: &str) -> Result<std::path::PathBuf, (ErrorCode, String)> {
    let path = conn.uploads.take(upload_id).map_err(|e| (e.code(), e.to_string()))?;
    if let Err(e) = crate::runner::prepare::bundle::check_zip(&path, &Default::default()) {
        let _ = std::fs::remove_file(&path);
        return Err((ErrorCode::Invalid, format!("bundle refused: {e}")));
    }
    Ok(path)
}

/// `command` sources run an executable on the broker host: only the broker's operator (who holds
/// its admin token) may deploy one. Other sources' fields are checked by the runner's preparation.
fn check_source(
    conn: &Conn,
    source: &ServiceSource,
    token: Option<&claudemesh_protocol::frames::Secret>,
) -> Result<(), (ErrorCode, String)> {
    if let ServiceSource::Command { command } = source {
        let ok = token.is_some_and(|t| super::admin::token_eq(&t.0, &conn.hub.admin_token));
        if !ok {
            return Err((
                ErrorCode::Forbidden,
                "a command source runs an executable on the broker host: only the broker's operator may deploy one \
                 (pass the broker admin token: `claudemesh deploy --command --admin-token-file FILE`)"
                    .into(),
            ));
        }
        if command.trim().is_empty() {
            return Err((ErrorCode::Invalid, "the command is empty".into()));
        }
    }
    Ok(())
}
