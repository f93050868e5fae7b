//! `claudemesh vault set KEY (VALUE | - | --file PATH) [--mount REL/PATH] [--kind env|file]
//! [--description D]`: hand a secret to the agent, which encrypts it with this member's key
//! before the broker stores it. The value is never printed, logged, nor put in an error.
//!
//! Where the value comes from decides its bytes: `-` reads stdin and drops one trailing line
//! break (what `echo` and editors add; `printf` gives exact bytes); `--file` keeps the file's
//! bytes exactly; text goes to the agent as `value`, anything not UTF-8 as `value_b64`.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use claudemesh_protocol::codec::to_b64;
use claudemesh_protocol::frames::{ErrorCode, VaultKind};
use claudemesh_protocol::limits::MAX_VAULT_VALUE_BYTES;
use claudemesh_protocol::local::{AgentCall, VaultItem, VaultSetParams};
use claudemesh_protocol::text;

use crate::cli::VaultSetArgs;
use crate::out::outln;

/// The value's bytes, checked; errors name where they came from, never the bytes.
fn value(a: &VaultSetArgs) -> anyhow::Result<Vec<u8>> {
    let (bytes, from) = match (a.value.as_slice(), &a.file) {
        (_, Some(path)) => (read_file(path)?, format!("--file {}", path.display())),
        ([v], None) if v == "-" => (read_stdin(&a.key)?, "stdin".to_string()),
        ([v], None) => (v.clone().into_bytes(), "the value".to_string()),
        ([], None) => {
            anyhow::bail!("give the value: `-` to read it from stdin, --file PATH, or as an argument")
        }
        (words, None) => anyhow::bail!(
            "the value came as {} separate words: quote it, or give `-` and type it on stdin; nothing was stored",
            words.len()
        ),
    };
    check(&bytes, &from)?;
    Ok(bytes)
}

/// A file's bytes; a file over the limit is refused by its size before it is read.
fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let cannot = || format!("cannot read --file {}; check the path", path.display());
    let len = std::fs::metadata(path).with_context(cannot)?.len();
    if len > u64::try_from(MAX_VAULT_VALUE_BYTES).unwrap_or(u64::MAX) {
        anyhow::bail!("{}", too_large(&format!("--file {}", path.display())));
    }
    std::fs::read(path).with_context(cannot)
}

/// stdin's bytes without one trailing line break.
fn read_stdin(key: &str) -> anyhow::Result<Vec<u8>> {
    if std::io::stdin().is_terminal() {
        eprintln!("value for {key} (it is shown as you type; end with Enter, then Ctrl-D):");
    }
    let mut b = Vec::new();
    // Past the limit and a CRLF, one byte more is enough to know it is too large.
    let limit = u64::try_from(MAX_VAULT_VALUE_BYTES + 3).unwrap_or(u64::MAX);
    std::io::stdin().lock().take(limit).read_to_end(&mut b).context("cannot read the value from stdin")?;
    Ok(strip_line_break(b))
}

/// `b` without one trailing `\n` or `\r\n`.
fn strip_line_break(mut b: Vec<u8>) -> Vec<u8> {
    if b.ends_with(b"\r\n") {
        b.truncate(b.len() - 2);
    } else if b.ends_with(b"\n") {
        b.truncate(b.len() - 1);
    }
    b
}

fn too_large(from: &str) -> String {
    format!(
        "{from} is larger than {} KiB ({MAX_VAULT_VALUE_BYTES} bytes), the most a vault value holds: nothing was stored",
        MAX_VAULT_VALUE_BYTES / 1024
    )
}

/// Refuses an empty or oversized value, naming where it came from.
fn check(bytes: &[u8], from: &str) -> anyhow::Result<()> {
    if bytes.is_empty() {
        anyhow::bail!("{from} is empty; nothing was stored");
    }
    if bytes.len() > MAX_VAULT_VALUE_BYTES {
        anyhow::bail!("{}", too_large(from));
    }
    Ok(())
}

/// The agent call for `bytes`: text as `value`, other bytes as `value_b64`.
fn params(a: &VaultSetArgs, bytes: Vec<u8>) -> VaultSetParams {
    let (value, value_b64) = match String::from_utf8(bytes) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(to_b64(e.as_bytes()))),
    };
    let kind = match a.kind.as_deref() {
        Some("file") => Some(VaultKind::File),
        Some(_) => Some(VaultKind::Env),
        None => None,
    };
    VaultSetParams {
        mesh: a.mesh.clone(),
        key: a.key.clone(),
        value,
        value_b64,
        kind,
        mount_path: a.mount.clone(),
        description: a.description.clone(),
    }
}

pub async fn run(a: VaultSetArgs) -> anyhow::Result<ExitCode> {
    // A bad key or mount is refused before stdin is read.
    claudemesh_protocol::names::validate_vault_key(&a.key)
        .map_err(|e| anyhow::anyhow!("{e}; e.g. GH_TOKEN or gcp.sa-json"))?;
    if a.kind.as_deref() == Some("env") && a.mount.is_some() {
        anyhow::bail!("--mount makes a file entry; drop --kind env or --mount");
    }
    if let Some(m) = &a.mount {
        claudemesh_protocol::vault_ref::validate_relative_path(m).map_err(|r| {
            anyhow::anyhow!("--mount {m:?} {r}; give a path inside secrets/, e.g. gcp/sa.json")
        })?;
    }
    let p = params(&a, value(&a)?);
    let mut c = super::agent().await?;
    let r: VaultItem = c.request(AgentCall::VaultSet(p)).await.map_err(|e| {
        super::advise(e, |code| match code {
            ErrorCode::Limit => Some("delete entries you no longer use (`claudemesh vault list`)".into()),
            ErrorCode::Unavailable => Some("`claudemesh status` shows the broker link".into()),
            _ => None,
        })
    })?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!("set {} in {} ({})", text::name(&r.entry.key), text::name(&r.mesh), kind_shown(&r))?;
        eprintln!(
            "services deployed with $vault:{} keep the value they were given; `claudemesh update <service>` hands them this one",
            text::name(&r.entry.key)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `env`, or `file, mounted at PATH` (the key when no mount path was given).
pub fn kind_shown(r: &VaultItem) -> String {
    match r.entry.kind {
        VaultKind::Env => "env".into(),
        VaultKind::File => format!(
            "file, mounted at secrets/{}",
            text::name(r.entry.mount_path.as_deref().unwrap_or(&r.entry.key))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_line_break_is_dropped() {
        assert_eq!(strip_line_break(b"s3cret\n".to_vec()), b"s3cret");
        assert_eq!(strip_line_break(b"s3cret\r\n".to_vec()), b"s3cret");
        assert_eq!(strip_line_break(b"two\n\n".to_vec()), b"two\n");
        assert_eq!(strip_line_break(b"exact".to_vec()), b"exact");
    }

    #[test]
    fn empty_and_oversized_values_are_refused_without_their_bytes() {
        assert_eq!(check(b"", "stdin").unwrap_err().to_string(), "stdin is empty; nothing was stored");
        assert!(check(&vec![b'x'; MAX_VAULT_VALUE_BYTES], "x").is_ok());
        let e = check(&vec![b'x'; MAX_VAULT_VALUE_BYTES + 1], "--file big").unwrap_err().to_string();
        assert!(e.starts_with("--file big is larger than 64 KiB (65536 bytes)"), "{e}");
        assert!(!e.contains("xxx"));
    }

    #[test]
    fn binary_values_go_as_base64() {
        let a = VaultSetArgs {
            key: "K".into(),
            value: vec![],
            file: None,
            mount: Some("certs/k.der".into()),
            kind: None,
            description: None,
            mesh: None,
            json: false,
        };
        let p = params(&a, vec![0xff, 0x00, 0x01]);
        assert_eq!((p.value, p.value_b64.as_deref()), (None, Some("/wAB")));
        assert_eq!(p.mount_path.as_deref(), Some("certs/k.der"));
        let p = params(&a, b"text".to_vec());
        assert_eq!((p.value.as_deref(), p.value_b64), (Some("text"), None));
    }
}
