//! Arguments of the vault verbs (`vault set|list|delete`, DESIGN §8) and the shared-skill verbs
//! (`skill share|list|get|remove`, §9).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::MeshArgs;

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Store a secret (encrypted by your agent; the broker never sees it) for `$vault:KEY`
    /// references in `deploy --env`: `vault set KEY -` reads it from stdin.
    #[command(
        override_usage = "claudemesh vault set <KEY> <VALUE | - | --file PATH> [--mount REL/PATH] [--kind env|file] [--description D] [--mesh SLUG]"
    )]
    Set(VaultSetArgs),
    /// Your vault entries: key, kind, mount path, description (never a value).
    List(MeshArgs),
    /// Delete one of your vault entries (services already deployed keep their copy).
    Delete(VaultDeleteArgs),
}

#[derive(Debug, Args)]
pub struct VaultSetArgs {
    /// The key: letters, digits, `_`, `.` and `-` (e.g. GH_TOKEN), at most 128.
    pub key: String,
    /// The value; `-` reads it from stdin (one trailing newline is dropped), which keeps it out
    /// of your shell history and `ps`. A value given here is visible to both; one that starts
    /// with `-` goes after `--` (`vault set K -- -value`), so a mistyped flag is never stored.
    #[arg(required_unless_present = "file", conflicts_with = "file", num_args = 1.., value_name = "VALUE")]
    pub value: Vec<String>,
    /// Read the value from this file, byte for byte (a binary file is fine), at most 64 KiB.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Make it a file secret: `$vault:KEY` then writes it to `secrets/<this path>` in the
    /// service's directory and passes that path (a relative path; implies --kind file).
    #[arg(long = "mount", value_name = "REL/PATH")]
    pub mount: Option<String>,
    /// env (the variable holds the value, the default) or file (the variable holds the path
    /// of a file holding it; mounted at the key unless --mount says where).
    #[arg(long, value_parser = ["env", "file"])]
    pub kind: Option<String>,
    /// What it is for, shown by `vault list`.
    #[arg(long)]
    pub description: Option<String>,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VaultDeleteArgs {
    /// The key.
    pub key: String,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SkillCommand {
    /// Share a skill with the mesh: a SKILL.md file, or a directory holding SKILL.md and other
    /// text files. Sharing a name again replaces it (its author or an admin).
    Share(SkillShareArgs),
    /// The skills of your meshes, or those whose name, description or tags hold every word
    /// of QUERY.
    List(SkillListArgs),
    /// Print a skill's instructions, or write it (SKILL.md and its files) into a directory.
    Get(SkillGetArgs),
    /// Remove a skill (its author or a mesh admin).
    Remove(SkillNameArgs),
}

#[derive(Debug, Args)]
pub struct SkillShareArgs {
    /// The skill's name (1–64 of lowercase letters, digits, `-` and `_`).
    pub name: String,
    /// SKILL.md, or a directory with SKILL.md and other text files (hidden ones are skipped).
    #[arg(long, value_name = "SKILL.md|DIR")]
    pub file: PathBuf,
    /// What it is for (default: the `description:` of SKILL.md's front matter).
    #[arg(long)]
    pub description: Option<String>,
    /// A tag to find it by (repeatable).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SkillListArgs {
    /// Words that must all appear in a skill's name, description or tags.
    pub query: Vec<String>,
    /// Only this mesh (slug).
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SkillGetArgs {
    /// The skill's name.
    pub name: String,
    /// Write SKILL.md and the skill's files into this directory (created if missing) instead of
    /// printing the instructions.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With --out: replace files that already exist.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SkillNameArgs {
    /// The skill's name.
    pub name: String,
    /// The mesh (slug), when you are in several.
    #[arg(long)]
    pub mesh: Option<String>,
    #[arg(long)]
    pub json: bool,
}
