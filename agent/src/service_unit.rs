//! `agent install` / `agent uninstall`: renders, writes, enables and removes the systemd user unit
//! (Linux) or launchd agent (macOS) that keeps `claudemesh agent run` alive (DESIGN §2, §10, §11).
//! Rendering and planning are pure; an unreachable service manager (containers, CI) is reported
//! with the auto-start fallback explained, not treated as an error.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// systemd unit name.
pub const SYSTEMD_UNIT: &str = "claudemesh-agent.service";
/// launchd label (and plist file stem).
pub const LAUNCHD_LABEL: &str = "dev.claudemesh.agent";
const DESCRIPTION: &str = "claudemesh agent (local daemon: broker connections, keys, inbox, outbox)";
const AUTO_START: &str =
    "Meanwhile nothing else is needed: every claudemesh command auto-starts the agent on demand.";

/// Which service manager to target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// systemd user manager (`systemctl --user`).
    Linux,
    /// launchd per-user agent (`launchctl`).
    MacOs,
}

impl Platform {
    /// The platform this binary was built for (anything that is not macOS is treated as Linux).
    pub fn current() -> Self {
        if cfg!(target_os = "macos") { Platform::MacOs } else { Platform::Linux }
    }
}

/// Everything `install` needs: where the unit goes, its text, and the activation commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    pub unit_path: PathBuf,
    pub contents: String,
    /// Run before anything else; if it fails the service manager is considered unavailable.
    /// `None`: the first of `commands` doubles as the probe.
    pub probe: Option<Vec<String>>,
    pub commands: Vec<Vec<String>>,
}

/// What `uninstall` does: stop/disable, remove `unit_path`, then run `after_remove`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallPlan {
    pub unit_path: PathBuf,
    /// Same meaning as [`InstallPlan::probe`].
    pub probe: Option<Vec<String>>,
    /// Run before the file is removed (disable and stop / unload).
    pub stop: Vec<Vec<String>>,
    /// Run after the file is removed (daemon-reload).
    pub after_remove: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub unit_path: PathBuf,
    pub unit_written: bool,
    /// The service manager accepted, enabled and started the unit.
    pub activated: bool,
    /// Human-readable outcome, meant to be printed as is.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallReport {
    pub unit_path: PathBuf,
    /// A unit file existed and was removed.
    pub removed: bool,
    /// The service manager stopped and disabled the unit.
    pub deactivated: bool,
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("cannot determine the path of the running claudemesh binary: {0}")]
    CurrentExe(#[source] std::io::Error),
    #[error("creating directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("removing {}: {source}", path.display())]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("running `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
}

/// Result of one command run by a [`CommandRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub success: bool,
    /// Exit status as text, e.g. `exit status: 1`.
    pub status: String,
    pub stderr: String,
}

/// Runs one argv (no shell). Exists so tests can exercise install/uninstall without a real
/// service manager.
pub trait CommandRunner {
    fn run(&self, argv: &[String]) -> std::io::Result<CommandOutput>;
}

/// Spawns argv with `std::process::Command` (never a shell); `output()` captures stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, argv: &[String]) -> std::io::Result<CommandOutput> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
        let out = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).output()?;
        Ok(CommandOutput {
            success: out.status.success(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Absolute path of the running binary (not canonicalized, so package-manager symlinks such as
/// Homebrew's keep working across upgrades).
pub fn running_exe() -> Result<PathBuf, UnitError> {
    let exe = std::env::current_exe().map_err(UnitError::CurrentExe)?;
    std::path::absolute(&exe).map_err(UnitError::CurrentExe)
}

/// `~/.config/systemd/user/claudemesh-agent.service` or `~/Library/LaunchAgents/dev.claudemesh.agent.plist`.
pub fn unit_path(platform: Platform, home: &Path) -> PathBuf {
    match platform {
        Platform::Linux => home.join(".config/systemd/user").join(SYSTEMD_UNIT),
        Platform::MacOs => home.join("Library/LaunchAgents").join(format!("{LAUNCHD_LABEL}.plist")),
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Plans an install. Relative `exe` / `config_dir` / `log` are made absolute against the current
/// directory, since the service manager starts the agent elsewhere.
pub fn plan_install(
    platform: Platform,
    home: &Path,
    exe: &Path,
    config_dir: &Path,
    log: &Path,
) -> InstallPlan {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (exe, config_dir, log) = (abs(exe), abs(config_dir), abs(log));
    let unit_path = unit_path(platform, home);
    match platform {
        Platform::Linux => InstallPlan {
            contents: render_systemd(&exe, &config_dir),
            probe: Some(argv(&["systemctl", "--user", "show-environment"])),
            commands: vec![
                argv(&["systemctl", "--user", "daemon-reload"]),
                argv(&["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT]),
            ],
            unit_path,
        },
        Platform::MacOs => InstallPlan {
            contents: render_launchd(&exe, &config_dir, &log),
            probe: None,
            commands: vec![argv(&["launchctl", "load", "-w", &unit_path.to_string_lossy()])],
            unit_path,
        },
    }
}

pub fn plan_uninstall(platform: Platform, home: &Path) -> UninstallPlan {
    let unit_path = unit_path(platform, home);
    match platform {
        Platform::Linux => UninstallPlan {
            probe: Some(argv(&["systemctl", "--user", "show-environment"])),
            stop: vec![argv(&["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT])],
            after_remove: vec![argv(&["systemctl", "--user", "daemon-reload"])],
            unit_path,
        },
        Platform::MacOs => UninstallPlan {
            probe: None,
            stop: vec![argv(&["launchctl", "unload", "-w", &unit_path.to_string_lossy()])],
            after_remove: Vec::new(),
            unit_path,
        },
    }
}

/// Quotes one word for a systemd unit line (systemd.syntax): double quotes with C escapes for `\`,
/// `"` and control characters, and `%` doubled (specifiers). `$` is left alone: systemd does not
/// expand variables in ExecStart's executable path (checked with `systemd-analyze verify`) nor in
/// Environment=. systemd refuses `"`, `'` and `\` in an executable path whatever the quoting; such
/// a unit then fails at `systemctl enable --now`, whose error (with systemd's stderr) is reported.
fn systemd_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The systemd user unit running `<exe> agent run` with `CLAUDEMESH_CONFIG_DIR=<config_dir>`.
pub fn render_systemd(exe: &Path, config_dir: &Path) -> String {
    let env = format!("CLAUDEMESH_CONFIG_DIR={}", config_dir.to_string_lossy());
    format!(
        "[Unit]\n\
         Description={DESCRIPTION}\n\
         \n\
         [Service]\n\
         Type=simple\n\
         Environment={}\n\
         ExecStart={} agent run\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        systemd_quote(&env),
        systemd_quote(&exe.to_string_lossy()),
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The launchd agent plist running `<exe> agent run`, logging to `log`.
pub fn render_launchd(exe: &Path, config_dir: &Path, log: &Path) -> String {
    let [exe, config_dir, log] = [exe, config_dir, log].map(|p| xml_escape(&p.to_string_lossy()));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{LAUNCHD_LABEL}</string>
	<key>ProgramArguments</key>
	<array>
		<string>{exe}</string>
		<string>agent</string>
		<string>run</string>
	</array>
	<key>EnvironmentVariables</key>
	<dict>
		<key>CLAUDEMESH_CONFIG_DIR</key>
		<string>{config_dir}</string>
	</dict>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>StandardOutPath</key>
	<string>{log}</string>
	<key>StandardErrorPath</key>
	<string>{log}</string>
</dict>
</plist>
"#
    )
}

fn display(argv: &[String]) -> String {
    argv.iter()
        .map(|a| if a.is_empty() || a.contains(char::is_whitespace) { format!("'{a}'") } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_checked(runner: &dyn CommandRunner, argv: &[String]) -> Result<(), UnitError> {
    let command = display(argv);
    let out = runner.run(argv).map_err(|source| UnitError::Spawn { command: command.clone(), source })?;
    if out.success {
        Ok(())
    } else {
        Err(UnitError::Command { command, status: out.status, stderr: out.stderr })
    }
}

/// Why the service manager cannot be used, as a short phrase.
fn unavailable_reason(runner: &dyn CommandRunner, argv: &[String]) -> Option<String> {
    let program = argv.first().map(String::as_str).unwrap_or("");
    match runner.run(argv) {
        Ok(out) if out.success => None,
        Ok(out) if out.stderr.is_empty() => Some(format!("`{}` failed ({})", display(argv), out.status)),
        Ok(out) => Some(format!("`{}` failed: {}", display(argv), out.stderr)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!("`{program}` is not on PATH")),
        Err(e) => Some(format!("cannot run `{}`: {e}", display(argv))),
    }
}

/// Runs the probe (or, without one, the first command as the probe). `Ok(Some(reason))` means
/// the service manager is unavailable; remaining commands are then not run.
fn activate(
    runner: &dyn CommandRunner,
    probe: Option<&[String]>,
    commands: &[Vec<String>],
) -> Result<Option<String>, UnitError> {
    let (probe, rest) = match (probe, commands.split_first()) {
        (Some(p), _) => (Some(p), commands),
        (None, Some((first, rest))) => (Some(first.as_slice()), rest),
        (None, None) => (None, commands),
    };
    if let Some(reason) = probe.and_then(|p| unavailable_reason(runner, p)) {
        return Ok(Some(reason));
    }
    rest.iter().try_for_each(|c| run_checked(runner, c))?;
    Ok(None)
}

/// Whether the plan's service manager is reachable: `Err(reason)` if not. Without a probe
/// (launchd) this cannot tell and returns `Ok`.
pub fn probe_service_manager(probe: Option<&[String]>, runner: &dyn CommandRunner) -> Result<(), String> {
    probe.and_then(|p| unavailable_reason(runner, p)).map_or(Ok(()), Err)
}

/// "<manager> … here" opening of an unavailability note.
fn unavailable_phrase(unit_path: &Path) -> &'static str {
    if unit_path.extension().is_some_and(|e| e == "plist") {
        "launchd could not load the agent here"
    } else {
        "systemd user services are not available here"
    }
}

/// Writes `contents` to `path` atomically (parent dirs created; temp file, fsync, rename; 0644 —
/// a unit file holds no secret).
fn write_unit(path: &Path, contents: &str) -> Result<(), UnitError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|source| UnitError::CreateDir { path: dir.to_path_buf(), source })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        UnitError::Write { path: path.to_path_buf(), source }
    })
}

/// Writes the unit and enables/starts it. An unreachable service manager is not an error: the
/// report says so (`activated: false`) and explains the auto-start fallback.
pub fn install(plan: &InstallPlan, runner: &dyn CommandRunner) -> Result<InstallReport, UnitError> {
    write_unit(&plan.unit_path, &plan.contents)?;
    let path = plan.unit_path.display();
    let (activated, note) = match activate(runner, plan.probe.as_deref(), &plan.commands)? {
        None => {
            (true, format!("Installed {path}; the agent is enabled and running, and restarts if it fails."))
        }
        Some(reason) => (
            false,
            format!(
                "{} ({reason}). The unit was written to {path} and will be used if a user \
                 service manager runs later (run `claudemesh agent install` again there to enable \
                 it). {AUTO_START}",
                unavailable_phrase(&plan.unit_path)
            ),
        ),
    };
    Ok(InstallReport { unit_path: plan.unit_path.clone(), unit_written: true, activated, note })
}

/// Stops and disables the unit, then removes exactly `plan.unit_path`. Idempotent: a missing unit
/// file is not an error and nothing is run.
pub fn uninstall(plan: &UninstallPlan, runner: &dyn CommandRunner) -> Result<UninstallReport, UnitError> {
    let path = plan.unit_path.display();
    if !plan.unit_path.exists() {
        return Ok(UninstallReport {
            unit_path: plan.unit_path.clone(),
            removed: false,
            deactivated: false,
            note: format!("Nothing to uninstall: {path} does not exist."),
        });
    }
    let unavailable = activate(runner, plan.probe.as_deref(), &plan.stop)?;
    if let Err(source) = std::fs::remove_file(&plan.unit_path)
        && source.kind() != std::io::ErrorKind::NotFound
    {
        return Err(UnitError::Remove { path: plan.unit_path.clone(), source });
    }
    let note = match &unavailable {
        None => {
            plan.after_remove.iter().try_for_each(|c| run_checked(runner, c))?;
            format!("Stopped and disabled the agent service and removed {path}.")
        }
        Some(reason) => format!(
            "{} ({reason}), so no service was stopped; removed {path}. \
             A running agent keeps running until `claudemesh agent stop`.",
            unavailable_phrase(&plan.unit_path)
        ),
    };
    Ok(UninstallReport {
        unit_path: plan.unit_path.clone(),
        removed: true,
        deactivated: unavailable.is_none(),
        note,
    })
}
