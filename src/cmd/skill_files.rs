//! A skill on disk, both ways: reading one to share (`skill share --file`: SKILL.md alone, or a
//! directory with SKILL.md and other text files, walked within the protocol's limits), the
//! `description:` of SKILL.md's YAML front matter, and writing a fetched skill into a
//! directory (`skill get --out`) without leaving it or replacing files unasked.
//!
//! In a directory, hidden files and directories (`.git`, `.DS_Store`) are skipped; a symlink
//! is followed only when it stays inside the directory; a file that is not UTF-8 text, or holds
//! a NUL byte, is refused (skills carry text only). The front matter stays in the instructions
//! as written, so `skill get --out` gives back the SKILL.md that was shared.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use claudemesh_protocol::limits::{MAX_SKILL_BYTES, MAX_SKILL_FILES, MAX_SKILL_INSTRUCTIONS_BYTES};
use claudemesh_protocol::vault_ref::validate_relative_path;

/// The instructions (SKILL.md) of a skill read from disk, and its other files by relative path.
#[derive(Debug, Default)]
pub struct Loaded {
    pub instructions: String,
    pub files: BTreeMap<String, String>,
}

/// Reads `path`: a SKILL.md file, or a directory holding one (see the module docs).
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let shown = format!("--file {}", path.display());
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {shown}; give a SKILL.md file or a directory holding one"))?;
    if meta.is_dir() {
        return load_dir(path);
    }
    let instructions = read_text(path, &shown, MAX_SKILL_INSTRUCTIONS_BYTES, "the instructions hold")?;
    Ok(Loaded { instructions, files: BTreeMap::new() })
}

/// A text file of at most `max` bytes (checked by its size before it is read); `what` says
/// what the limit is for ("the instructions hold").
fn read_text(path: &Path, shown: &str, max: usize, what: &str) -> anyhow::Result<String> {
    let len = std::fs::metadata(path).with_context(|| format!("cannot read {shown}"))?.len();
    if len > u64::try_from(max).unwrap_or(u64::MAX) {
        anyhow::bail!("{shown} is {len} bytes; {what} at most {max} bytes: nothing was shared");
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {shown}"))?;
    match String::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => Ok(s),
        _ => anyhow::bail!(
            "{shown} is not a text file (UTF-8 without NUL bytes); a skill carries text only: move it out of the directory or hide it (a name starting with '.')"
        ),
    }
}

/// Reads a skill directory: SKILL.md and every other visible text file below it.
fn load_dir(dir: &Path) -> anyhow::Result<Loaded> {
    let root = std::fs::canonicalize(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let skill_md = dir.join("SKILL.md");
    if !skill_md.is_file() {
        anyhow::bail!(
            "{} has no SKILL.md; a skill directory keeps its instructions in SKILL.md",
            dir.display()
        );
    }
    let instructions = read_text(
        &skill_md,
        &skill_md.display().to_string(),
        MAX_SKILL_INSTRUCTIONS_BYTES,
        "the instructions hold",
    )?;
    let mut total = instructions.len();
    let mut files = BTreeMap::new();
    let mut seen = HashSet::from([root.clone()]);
    let mut stack = vec![(root.clone(), String::new())];
    while let Some((at, prefix)) = stack.pop() {
        let mut entries = std::fs::read_dir(&at)
            .with_context(|| format!("cannot read {}", at.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot read {}", at.display()))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                anyhow::bail!("{} has a name that is not UTF-8; rename it", entry.path().display());
            };
            let rel = format!("{prefix}{name}");
            if name.starts_with('.') || rel == "SKILL.md" {
                continue;
            }
            let real = inside(&root, dir, &entry.path(), &rel)?;
            let meta = std::fs::metadata(&real).with_context(|| format!("cannot read {}", real.display()))?;
            if meta.is_dir() {
                // A symlink back up the tree is walked once.
                if seen.insert(real.clone()) {
                    stack.push((real, format!("{rel}/")));
                }
                continue;
            }
            if !meta.is_file() {
                anyhow::bail!(
                    "{rel} in {} is not a regular file; move it out of the directory",
                    dir.display()
                );
            }
            if files.len() == MAX_SKILL_FILES {
                anyhow::bail!(
                    "{} has more than {MAX_SKILL_FILES} files besides SKILL.md; a skill carries at most {MAX_SKILL_FILES}: nothing was shared",
                    dir.display()
                );
            }
            validate_relative_path(&rel).map_err(|r| anyhow::anyhow!("{rel}: {r}; rename it"))?;
            let room = MAX_SKILL_BYTES.saturating_sub(total + rel.len());
            let what = format!(
                "with what comes before it, a skill holds {MAX_SKILL_BYTES} bytes in all, so it may have"
            );
            let text = read_text(&real, &rel, room, &what)?;
            total += rel.len() + text.len();
            files.insert(rel, text);
        }
    }
    Ok(Loaded { instructions, files })
}

/// Where `path` (entry `rel` of `dir`, whose canonical form is `root`) really is: itself, or a
/// symlink's target when that stays inside `root`.
fn inside(root: &Path, dir: &Path, path: &Path, rel: &str) -> anyhow::Result<PathBuf> {
    let link = std::fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !link.file_type().is_symlink() {
        return Ok(path.to_path_buf());
    }
    let target = std::fs::canonicalize(path)
        .with_context(|| format!("{rel} in {} is a symlink to nothing; remove it", dir.display()))?;
    if !target.starts_with(root) {
        anyhow::bail!(
            "{rel} in {} is a symlink to {}, outside the directory; copy what it points to into the directory instead",
            dir.display(),
            target.display()
        );
    }
    Ok(target)
}

/// The `description:` of `md`'s YAML front matter (`---` lines around `key: value` lines at the
/// very top), unquoted, with `|`/`>` block values joined into one line; `None` without one.
pub fn front_matter_description(md: &str) -> Option<String> {
    let rest = md.strip_prefix("---\n").or_else(|| md.strip_prefix("---\r\n"))?;
    let lines: Vec<&str> = rest.lines().map(|l| l.trim_end_matches('\r')).collect();
    let end = lines.iter().position(|l| l.trim_end() == "---")?;
    let block = &lines[..end];
    for (i, line) in block.iter().enumerate() {
        let Some((k, v)) = line.split_once(':') else { continue };
        if k != "description" {
            continue;
        }
        let v = v.trim();
        if v.starts_with(['|', '>']) {
            let more: Vec<&str> = block[i + 1..]
                .iter()
                .take_while(|l| l.starts_with([' ', '\t']) || l.trim().is_empty())
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect();
            return Some(more.join(" ")).filter(|d| !d.is_empty());
        }
        return Some(unquote(v).to_string()).filter(|d| !d.is_empty());
    }
    None
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Writes SKILL.md (`instructions`) and `files` into `dir` (created if missing); returns the
/// paths written. Paths are checked again to stay inside `dir` (no `..`, no absolute path, no
/// symlink on the way). Nothing is written when a file exists and `force` is not set.
pub fn write_out(
    dir: &Path,
    instructions: &str,
    files: &BTreeMap<String, String>,
    force: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let all: Vec<(&str, &str)> = std::iter::once(("SKILL.md", instructions))
        .chain(files.iter().map(|(p, t)| (p.as_str(), t.as_str())))
        .collect();
    let mut existing = Vec::new();
    for (rel, _) in &all {
        validate_relative_path(rel)
            .map_err(|r| anyhow::anyhow!("the skill has a file {rel:?} that {r}; nothing was written"))?;
        let mut at = dir.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            at.push(part);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => anyhow::bail!(
                    "{} is a symlink; a skill is not written through one: nothing was written",
                    at.display()
                ),
                Ok(m) if last && m.is_dir() => {
                    anyhow::bail!("{} is a directory; nothing was written", at.display())
                }
                Ok(m) if !last && !m.is_dir() => {
                    anyhow::bail!("{} is not a directory; nothing was written", at.display())
                }
                Ok(_) if last => existing.push(rel.to_string()),
                _ => {}
            }
        }
    }
    if !existing.is_empty() && !force {
        anyhow::bail!(
            "{} already has {}; nothing was written: pass --force to replace them, or choose another --out",
            dir.display(),
            existing.join(", ")
        );
    }
    let mut written = Vec::with_capacity(all.len());
    for (rel, text) in all {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_comes_from_the_front_matter() {
        let md = "---\nname: review\ndescription: \"Code review checklist\"\n---\n# Review\n";
        assert_eq!(front_matter_description(md).as_deref(), Some("Code review checklist"));
        let md = "---\r\nname: x\r\ndescription: plain words: with colon\r\n---\r\nbody";
        assert_eq!(front_matter_description(md).as_deref(), Some("plain words: with colon"));
        let md = "---\ndescription: >\n  folded\n  over lines\nname: x\n---\n";
        assert_eq!(front_matter_description(md).as_deref(), Some("folded over lines"));
        assert_eq!(front_matter_description("# no front matter\ndescription: no"), None);
        assert_eq!(front_matter_description("---\ndescription: never closed\n"), None);
        assert_eq!(front_matter_description("---\nname: x\n---\ndescription: after\n"), None);
    }

    #[test]
    fn a_directory_is_read_without_hidden_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("SKILL.md"), "Do it.").unwrap();
        std::fs::create_dir_all(d.path().join("refs/.cache")).unwrap();
        std::fs::write(d.path().join("refs/a.md"), "A").unwrap();
        std::fs::write(d.path().join("refs/.cache/x"), "hidden").unwrap();
        std::fs::write(d.path().join(".env"), "hidden").unwrap();
        let l = load(d.path()).unwrap();
        assert_eq!(l.instructions, "Do it.");
        assert_eq!(l.files.keys().collect::<Vec<_>>(), ["refs/a.md"]);
    }

    #[test]
    fn binary_files_and_symlinks_out_of_the_directory_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("SKILL.md"), "Do it.").unwrap();
        std::fs::write(d.path().join("blob.bin"), [0u8, 159, 146, 150]).unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("blob.bin is not a text file"), "{e}");
        std::fs::remove_file(d.path().join("blob.bin")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("link in") && e.contains("outside the directory"), "{e}");
        std::fs::remove_file(d.path().join("link")).unwrap();
        std::os::unix::fs::symlink(d.path().join("SKILL.md"), d.path().join("again.md")).unwrap();
        std::os::unix::fs::symlink(d.path(), d.path().join("loop")).unwrap();
        let l = load(d.path()).unwrap();
        assert_eq!(l.files.keys().collect::<Vec<_>>(), ["again.md"], "inside links are followed, loops once");
    }

    #[test]
    fn writing_out_refuses_to_replace_unless_forced() {
        let d = tempfile::tempdir().unwrap();
        let files = BTreeMap::from([("refs/a.md".to_string(), "A".to_string())]);
        let w = write_out(d.path(), "Do it.", &files, false).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(std::fs::read_to_string(d.path().join("refs/a.md")).unwrap(), "A");
        let e = write_out(d.path(), "New.", &files, false).unwrap_err().to_string();
        assert!(e.contains("SKILL.md, refs/a.md") && e.contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(d.path().join("SKILL.md")).unwrap(), "Do it.");
        write_out(d.path(), "New.", &files, true).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("SKILL.md")).unwrap(), "New.");
        let bad = BTreeMap::from([("../escape".to_string(), "x".to_string())]);
        assert!(write_out(d.path(), "x", &bad, true).is_err());
    }
}
