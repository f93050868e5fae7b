//! The broker's plain HTTP endpoints: `/health`, and `/metrics`, which can require a bearer
//! token read from a private file and can be served on a separate address
//! (`--metrics-listen`) instead of the public one. Also the check that secret files (the admin
//! token, the metrics token) are private to the broker's user.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::handlers::admin::token_eq;
use crate::hub::Hub;

/// A secret file is readable or writable by users other than the broker's.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path} is readable by group or others (mode {mode:03o}); run `chmod 600 {path}`")]
    NotPrivate { path: String, mode: u32 },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is empty")]
    Empty { path: String },
}

/// Refuses a secret file that group or others may read or write (any of mode 0o077).
pub fn check_private(path: &Path) -> Result<(), SecretFileError> {
    let p = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| SecretFileError::Io { path: p.clone(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::NotPrivate { path: p, mode });
    }
    Ok(())
}

/// Reads a token from a private file (see [`check_private`]), trimmed. The token is never
/// logged or put in an error.
pub fn read_secret(path: &Path) -> Result<String, SecretFileError> {
    check_private(path)?;
    let p = path.display().to_string();
    let s =
        std::fs::read_to_string(path).map_err(|source| SecretFileError::Io { path: p.clone(), source })?;
    let t = s.trim();
    if t.is_empty() {
        return Err(SecretFileError::Empty { path: p });
    }
    Ok(t.to_string())
}

/// `GET /health`: liveness and a few numbers, no secrets.
pub async fn health(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "ok": true,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": hub.started.elapsed().as_secs(),
        "meshes": hub.meshes().len(),
        "connections": hub.connection_count(),
        "public_url": hub.config.public_url,
    }))
}

/// `GET /metrics` in Prometheus text; with a metrics token, only for
/// `Authorization: Bearer <token>` (401 otherwise).
pub async fn metrics(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if let Some(token) = &hub.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token_eq(given.trim(), &token.0) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need Authorization: Bearer <token from --metrics-token-file>\n",
            )
                .into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], hub.metrics.render()).into_response()
}

/// `/metrics` moved to `--metrics-listen`: the public listener says where it is not.
pub async fn metrics_elsewhere() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "metrics are served on the broker's --metrics-listen address\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "s3cret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret(&f).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, SecretFileError::NotPrivate { mode: 0o644, .. }), "{msg}");
        assert!(msg.contains("chmod 600") && msg.contains(&f.display().to_string()), "{msg}");
        assert!(!msg.contains("s3cret"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&f).unwrap(), "s3cret");
    }
}
