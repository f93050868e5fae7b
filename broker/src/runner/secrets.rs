//! A service's secrets at start time (DESIGN §8): the runner opens the sealed vault values the
//! deploy carried, sets `$vault:KEY` variables to them and writes `$vault:KEY:file:PATH`
//! values to `<service dir>/secrets/PATH` (0600, dir 0700), setting the variable to the file's
//! path. The files exist while the service is loaded ([`SecretFiles`] removes them). The
//! values are also what a service's log is scrubbed of ([`Opened::redactions`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use claudemesh_protocol::crypto::{RunnerKeypair, open_sealed};
use claudemesh_protocol::vault_ref::{VaultRef, parse};
use zeroize::Zeroizing;

use super::wire::ServiceSpec;

/// The directory under a service's dir that holds its secret files.
pub const SECRETS_DIR: &str = "secrets";

/// Why a service's secrets could not be put in place. Never carries a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("service {name} needs vault secrets, but this runner has no key: {reason}")]
    NoKey { name: String, reason: String },
    #[error("service {name}: environment variable {var}: {reason}")]
    Reference { name: String, var: String, reason: String },
    #[error(
        "service {name}: environment variable {var} references vault key {key}, but the deploy carried no sealed value for it; deploy it again with claudemesh"
    )]
    Missing { name: String, var: String, key: String },
    #[error(
        "service {name}: vault key {key} cannot be opened by this runner (it was sealed to another runner key, e.g. before the runner's key file was replaced); its deployer can seal it again with `claudemesh update {name}`"
    )]
    Open { name: String, key: String },
    #[error(
        "service {name}: environment variable {var}: vault key {key} holds a NUL byte or non-UTF-8 bytes, which an environment variable cannot carry; its deployer can reference it as a file (`$vault:{key}:file:REL_PATH`) or set it again as a file entry, then `claudemesh update {name}`"
    )]
    NotEnvText { name: String, var: String, key: String },
    #[error("service {name}: cannot write secret file {path}: {source}")]
    Write { name: String, path: PathBuf, source: std::io::Error },
}

/// The environment a service starts with, its references resolved; values zeroized on drop.
#[derive(Default)]
pub struct Opened {
    pub env: BTreeMap<String, Zeroizing<String>>,
    /// Secret values as text, for scrubbing the log.
    redact: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("env", &self.env.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Opened {
    /// What a log line must not show: each value, and each line of a multi-line value long
    /// enough (8 bytes) not to match ordinary text.
    pub fn redactions(&self) -> Vec<Zeroizing<String>> {
        let mut out: Vec<Zeroizing<String>> = Vec::new();
        for v in &self.redact {
            if v.trim().len() >= 4 {
                out.push(Zeroizing::new(v.trim().to_string()));
            }
            if v.contains('\n') {
                for line in v.lines().map(str::trim).filter(|l| l.len() >= 8) {
                    out.push(Zeroizing::new(line.to_string()));
                }
            }
        }
        // Longest first, so a value is replaced whole before a part of it could be.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }
}

/// Removes a service's secret files when dropped.
#[derive(Debug)]
pub struct SecretFiles(pub PathBuf);

impl Drop for SecretFiles {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a service's secret files");
        }
    }
}

/// Opens `spec`'s secrets with `key` and writes its secret files afresh.
pub fn open(spec: &ServiceSpec, key: Result<&RunnerKeypair, &str>) -> Result<Opened, SecretError> {
    let name = &spec.name;
    let mut out = Opened::default();
    let dir = spec.dir.join(SECRETS_DIR);
    let mut wrote_dir = false;
    for (var, value) in &spec.env {
        let Some(r) = parse(value) else {
            out.env.insert(var.clone(), Zeroizing::new(value.clone()));
            continue;
        };
        let r = r.map_err(|e| SecretError::Reference {
            name: name.clone(),
            var: var.clone(),
            reason: e.to_string(),
        })?;
        let k = r.key();
        let sealed = spec.secrets.iter().find(|s| s.key == k).ok_or_else(|| SecretError::Missing {
            name: name.clone(),
            var: var.clone(),
            key: k.to_string(),
        })?;
        let key =
            key.map_err(|reason| SecretError::NoKey { name: name.clone(), reason: reason.to_string() })?;
        let plain = open_sealed(&sealed.sealed, key)
            .map_err(|_| SecretError::Open { name: name.clone(), key: k.to_string() })?;
        match r {
            VaultRef::Env { .. } => {
                if !claudemesh_protocol::vault_ref::env_safe(&plain) {
                    return Err(SecretError::NotEnvText {
                        name: name.clone(),
                        var: var.clone(),
                        key: k.to_string(),
                    });
                }
                let text = Zeroizing::new(String::from_utf8_lossy(&plain).into_owned());
                out.redact.push(text.clone());
                out.env.insert(var.clone(), text);
            }
            VaultRef::File { path, .. } => {
                if !wrote_dir {
                    fresh_dir(&dir).map_err(|source| SecretError::Write {
                        name: name.clone(),
                        path: dir.clone(),
                        source,
                    })?;
                    wrote_dir = true;
                }
                let file = dir.join(path);
                write_secret(&dir, &file, &plain).map_err(|source| SecretError::Write {
                    name: name.clone(),
                    path: file.clone(),
                    source,
                })?;
                out.redact.push(Zeroizing::new(String::from_utf8_lossy(&plain).into_owned()));
                out.env.insert(var.clone(), Zeroizing::new(file.to_string_lossy().into_owned()));
            }
        }
    }
    Ok(out)
}

/// An empty `secrets/` dir (0700), whatever an earlier start left there.
fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

/// Writes one secret file 0600, making its parent dirs (0700) under `root`. The path was
/// checked to be relative without `..` (`protocol::vault_ref`).
fn write_secret(root: &Path, file: &Path, value: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = file.parent()
        && parent != root
    {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file)?;
    f.write_all(value)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use claudemesh_protocol::crypto::{MemberKeypair, encrypt_vault_entry, reseal_to};
    use claudemesh_protocol::frames::SealedSecret;

    use super::*;

    fn spec(dir: &Path, env: &[(&str, &str)], secrets: Vec<SealedSecret>) -> ServiceSpec {
        let json = serde_json::json!({
            "name": "svc", "dir": dir, "source": {"kind": "command", "argv": ["true"]},
            "env": env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            "secrets": secrets, "prepare": "reuse",
            "limits": {"memory_bytes": 1, "open_files": 1, "processes": 1, "prepare_timeout_ms": 1},
            "health": {"interval_ms": 1, "timeout_ms": 1, "misses": 1, "start_timeout_ms": 1},
            "restart": {"backoff_min_ms": 1, "backoff_max_ms": 1, "max_crashes": 1, "crash_window_ms": 1}
        });
        serde_json::from_value(json).unwrap()
    }

    fn seal(value: &[u8], runner: &RunnerKeypair, key: &str) -> SealedSecret {
        let owner = MemberKeypair::generate();
        let blob = encrypt_vault_entry(value, &owner).unwrap();
        SealedSecret { key: key.into(), sealed: reseal_to(&blob, &owner, runner.public()).unwrap() }
    }

    #[test]
    fn env_and_file_secrets_are_opened_and_written_privately() {
        let dir = tempfile::tempdir().unwrap();
        let runner = RunnerKeypair::generate();
        let secrets =
            vec![seal(b"tok-123", &runner, "T"), seal(b"{\n  \"k\": \"line-of-secret\"\n}", &runner, "F")];
        let s = spec(
            dir.path(),
            &[("A", "$vault:T"), ("B", "$vault:F:file:gcp/sa.json"), ("C", "plain")],
            secrets,
        );
        let opened = open(&s, Ok(&runner)).unwrap();
        assert_eq!(opened.env["A"].as_str(), "tok-123");
        assert_eq!(opened.env["C"].as_str(), "plain");
        let file = dir.path().join("secrets/gcp/sa.json");
        assert_eq!(opened.env["B"].as_str(), file.to_str().unwrap());
        assert!(std::fs::read_to_string(&file).unwrap().contains("line-of-secret"));
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let red: Vec<String> = opened.redactions().iter().map(|s| s.to_string()).collect();
        assert!(
            red.contains(&"tok-123".to_string()) && red.contains(&"\"k\": \"line-of-secret\"".to_string())
        );
        // A second start rewrites the files; dropping the guard removes them.
        open(&s, Ok(&runner)).unwrap();
        drop(SecretFiles(dir.path().join(SECRETS_DIR)));
        assert!(!dir.path().join(SECRETS_DIR).exists());
    }

    #[test]
    fn errors_name_the_key_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let runner = RunnerKeypair::generate();
        let other = RunnerKeypair::generate();
        let s = spec(dir.path(), &[("A", "$vault:T")], vec![seal(b"sekrit-value", &other, "T")]);
        let e = open(&s, Ok(&runner)).unwrap_err().to_string();
        assert!(e.contains("vault key T") && !e.contains("sekrit"), "{e}");
        let s = spec(dir.path(), &[("A", "$vault:T")], vec![]);
        assert!(open(&s, Ok(&runner)).unwrap_err().to_string().contains("no sealed value"));
        let s = spec(dir.path(), &[("A", "$vault:T")], vec![seal(b"x", &runner, "T")]);
        assert!(open(&s, Err("key file unreadable")).unwrap_err().to_string().contains("unreadable"));
        // A NUL byte cannot be in an environment variable: named, with the file form to use.
        let s = spec(dir.path(), &[("N", "$vault:B")], vec![seal(b"ab\0cd", &runner, "B")]);
        let e = open(&s, Ok(&runner)).unwrap_err().to_string();
        assert!(e.contains("variable N") && e.contains("vault key B") && e.contains("$vault:B:file:"), "{e}");
        // As a file it is fine, byte for byte.
        let s = spec(dir.path(), &[("N", "$vault:B:file:b.bin")], vec![seal(b"ab\0cd", &runner, "B")]);
        let opened = open(&s, Ok(&runner)).unwrap();
        assert_eq!(std::fs::read(opened.env["N"].as_str()).unwrap(), b"ab\0cd");
    }
}
