//! What the dashboard reads from disk for a call (the runner does it, `update` stays free of
//! I/O): a vault value from a file, sent as `value_b64` and wiped after encoding; a skill from
//! a `SKILL.md` file or a directory holding one and its text files, checked with
//! [`validate_skill`] before anything is sent.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use claudemesh_protocol::frames::{ErrorCode, Skill};
use claudemesh_protocol::limits::{MAX_SKILL_BYTES, MAX_SKILL_FILES, MAX_VAULT_VALUE_BYTES};
use claudemesh_protocol::local::{AgentCall, SkillShareParams};
use claudemesh_protocol::sharing::validate_skill;
use zeroize::Zeroizing;

use crate::effect::FileCall;
use crate::event::CallError;

/// The instructions' file in a skill directory.
pub const SKILL_MD: &str = "SKILL.md";
/// How deep a skill directory is walked.
const MAX_DEPTH: usize = 8;

fn io_error(path: &Path, e: &std::io::Error) -> CallError {
    CallError { code: None, message: format!("cannot read {}: {e}", path.display()) }
}

fn invalid(message: String) -> CallError {
    CallError { code: Some(ErrorCode::Invalid), message }
}

/// `~/x` under the home directory; any other path as it is.
pub fn expand(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Reads the file and builds the call.
pub fn prepare(call: FileCall) -> Result<AgentCall, CallError> {
    match call {
        FileCall::VaultSet { mut params, path } => {
            let bytes = read_secret(&expand(&path))?;
            params.value = None;
            params.value_b64 = Some(base64::engine::general_purpose::STANDARD.encode(&*bytes));
            Ok(AgentCall::VaultSet(params))
        }
        FileCall::SkillShare { mesh, path, name, description, tags } => {
            let skill = load_skill(&expand(&path), &name, &description, tags)?;
            Ok(AgentCall::SkillShare(Box::new(SkillShareParams { mesh: Some(mesh), skill })))
        }
    }
}

/// A secret's bytes, at most [`MAX_VAULT_VALUE_BYTES`]; wiped when dropped.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, CallError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    file.take(MAX_VAULT_VALUE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| io_error(path, &e))?;
    if bytes.len() > MAX_VAULT_VALUE_BYTES {
        return Err(CallError {
            code: Some(ErrorCode::TooLarge),
            message: format!("{} is larger than {MAX_VAULT_VALUE_BYTES} bytes", path.display()),
        });
    }
    if bytes.is_empty() {
        return Err(invalid(format!("{} is empty", path.display())));
    }
    Ok(bytes)
}

/// The name a skill at `path` gets by default: a directory's name; for a `SKILL.md` file, its
/// directory's; for another file, its stem.
pub fn default_name(path: &Path) -> Option<String> {
    let abs = std::path::absolute(path).ok()?;
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    if abs.is_dir() {
        // `std::path::absolute` keeps `..`; the canonical path names the directory.
        return named(&abs.canonicalize().unwrap_or(abs));
    }
    if abs.file_name().is_some_and(|n| n == SKILL_MD) {
        return abs.parent().and_then(|p| named(&p.canonicalize().unwrap_or_else(|_| p.to_path_buf())));
    }
    abs.file_stem().map(|n| n.to_string_lossy().into_owned())
}

/// `description:` of a Markdown file's front matter (`---` lines at its top), if any.
pub fn front_matter_description(md: &str) -> Option<String> {
    let rest = md.strip_prefix("---\n").or_else(|| md.strip_prefix("---\r\n"))?;
    for line in rest.lines() {
        let line = line.trim_end();
        if line == "---" {
            return None;
        }
        if let Some(v) = line.strip_prefix("description:") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            return (!v.is_empty()).then(|| v.to_string());
        }
    }
    None
}

/// A skill from `path` (a `SKILL.md`-like file, or a directory with `SKILL.md` and text
/// files; hidden entries and symbolic links are left out), checked with [`validate_skill`].
/// An empty `name` or `description` takes its default.
pub fn load_skill(path: &Path, name: &str, description: &str, tags: Vec<String>) -> Result<Skill, CallError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, &e))?;
    let (md_path, mut files) = if meta.is_dir() {
        let md = path.join(SKILL_MD);
        if !md.is_file() {
            return Err(invalid(format!("{} has no {SKILL_MD}", path.display())));
        }
        let mut files = BTreeMap::new();
        let mut total = 0;
        walk(path, path, 0, &mut files, &mut total)?;
        (md, files)
    } else {
        (path.to_path_buf(), BTreeMap::new())
    };
    files.remove(SKILL_MD);
    let instructions = text_file(&md_path)?;
    let name = match name.trim() {
        "" => default_name(path).ok_or_else(|| invalid(format!("{}: no name to give it", path.display())))?,
        n => n.to_string(),
    };
    let description = match description.trim() {
        "" => front_matter_description(&instructions).unwrap_or_default(),
        d => d.to_string(),
    };
    let skill = Skill { name, description, instructions, tags, files };
    validate_skill(&skill).map_err(|e| invalid(e.message))?;
    Ok(skill)
}

fn text_file(path: &Path) -> Result<String, CallError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let mut bytes = Vec::new();
    file.take(MAX_SKILL_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| io_error(path, &e))?;
    if bytes.len() > MAX_SKILL_BYTES {
        return Err(invalid(format!("{} is larger than {MAX_SKILL_BYTES} bytes", path.display())));
    }
    String::from_utf8(bytes).map_err(|_| {
        invalid(format!("{} is not a text file (UTF-8): only text files are shared", path.display()))
    })
}

/// Adds the text files under `dir` by their path relative to `root` (`/`-separated), stopping
/// as soon as they are more or larger than a skill may hold.
fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut BTreeMap<String, String>,
    total: &mut usize,
) -> Result<(), CallError> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!("{} is nested deeper than {MAX_DEPTH} directories", dir.display())));
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io_error(dir, &e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = e.file_type().map_err(|err| io_error(&p, &err))?;
        if ty.is_dir() {
            walk(root, &p, depth + 1, files, total)?;
        } else if ty.is_file() {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            let rel: Vec<String> =
                rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            let rel = rel.join("/");
            if rel == SKILL_MD {
                continue;
            }
            let text = text_file(&p)?;
            *total += rel.len() + text.len();
            files.insert(rel, text);
            if files.len() > MAX_SKILL_FILES || *total > MAX_SKILL_BYTES {
                return Err(invalid(format!(
                    "{}: more than {MAX_SKILL_FILES} files or {MAX_SKILL_BYTES} bytes",
                    root.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use claudemesh_protocol::local::VaultSetParams;

    use super::*;

    #[test]
    fn a_skill_directory_with_its_text_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("code-review");
        std::fs::create_dir_all(dir.join("refs/deep")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(
            dir.join(SKILL_MD),
            "---\nname: x\ndescription: \"Review Rust code\"\n---\nCheck it.\n",
        )
        .unwrap();
        std::fs::write(dir.join("refs/style.md"), "use rustfmt").unwrap();
        std::fs::write(dir.join("refs/deep/a.txt"), "a").unwrap();
        std::fs::write(dir.join(".git/config"), "hidden").unwrap();
        let s = load_skill(&dir, "", "", vec!["rust".into()]).unwrap();
        assert_eq!(s.name, "code-review");
        assert_eq!(s.description, "Review Rust code");
        assert!(s.instructions.ends_with("Check it.\n"));
        assert_eq!(s.files.keys().collect::<Vec<_>>(), ["refs/deep/a.txt", "refs/style.md"]);
        // Named explicitly, and described.
        let s = load_skill(&dir, "review", "mine", vec![]).unwrap();
        assert_eq!((s.name.as_str(), s.description.as_str()), ("review", "mine"));
        // A SKILL.md file alone is named after its directory; another file after its stem.
        let s = load_skill(&dir.join(SKILL_MD), "", "", vec![]).unwrap();
        assert_eq!((s.name.as_str(), s.files.len()), ("code-review", 0));
        let s = load_skill(&dir.join("refs/style.md"), "", "", vec![]).unwrap();
        assert_eq!(s.name, "style");
    }

    #[test]
    fn what_cannot_be_shared_is_said_before_sending() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("bin-skill");
        std::fs::create_dir_all(&dir).unwrap();
        let e = load_skill(&dir, "", "", vec![]).unwrap_err();
        assert!(e.message.contains("has no SKILL.md"), "{}", e.message);
        std::fs::write(dir.join(SKILL_MD), "do it").unwrap();
        std::fs::write(dir.join("logo.png"), [0x89, 0x50, 0xff, 0xfe]).unwrap();
        let e = load_skill(&dir, "", "", vec![]).unwrap_err();
        assert!(e.message.contains("logo.png is not a text file"), "{}", e.message);
        std::fs::remove_file(dir.join("logo.png")).unwrap();
        // validate_skill: a bad name, an empty body, a tag with a space.
        let e = load_skill(&dir, "Bad Name", "", vec![]).unwrap_err();
        assert_eq!(e.code, Some(ErrorCode::Invalid));
        std::fs::write(dir.join(SKILL_MD), "  \n").unwrap();
        assert!(load_skill(&dir, "", "", vec![]).unwrap_err().message.contains("empty"));
        std::fs::write(dir.join(SKILL_MD), "x").unwrap();
        assert!(load_skill(&dir, "", "", vec!["two words".into()]).is_err());
        let e = load_skill(&d.path().join("nope"), "", "", vec![]).unwrap_err();
        assert_eq!(e.code, None, "an I/O error is not the agent's");
    }

    #[test]
    fn a_secret_file_goes_as_base64_within_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sa.json");
        std::fs::write(&p, [0u8, 1, 2, 255]).unwrap();
        let params = VaultSetParams {
            mesh: Some("team".into()),
            key: "sa".into(),
            value: None,
            value_b64: None,
            kind: None,
            mount_path: None,
            description: None,
        };
        let call = prepare(FileCall::VaultSet { params: params.clone(), path: p.clone() }).unwrap();
        let AgentCall::VaultSet(got) = call else { panic!("{call:?}") };
        assert_eq!((got.value, got.value_b64.as_deref()), (None, Some("AAEC/w==")));
        std::fs::write(&p, vec![b'x'; MAX_VAULT_VALUE_BYTES + 1]).unwrap();
        let e = prepare(FileCall::VaultSet { params: params.clone(), path: p.clone() }).unwrap_err();
        assert_eq!(e.code, Some(ErrorCode::TooLarge));
        std::fs::write(&p, b"").unwrap();
        assert!(prepare(FileCall::VaultSet { params, path: p }).unwrap_err().message.contains("empty"));
    }

    #[test]
    fn front_matter_and_home() {
        assert_eq!(front_matter_description("---\ndescription: a b\n---\nx").as_deref(), Some("a b"));
        assert_eq!(front_matter_description("---\nname: a\n---\ndescription: no"), None);
        assert_eq!(front_matter_description("# title\ndescription: no"), None);
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(expand(Path::new("~/x/y")), PathBuf::from(home).join("x/y"));
        }
        assert_eq!(expand(Path::new("/a/~/b")), PathBuf::from("/a/~/b"));
    }
}
