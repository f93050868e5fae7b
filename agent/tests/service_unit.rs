//! Tests for `agent install` / `agent uninstall` unit rendering, planning and file handling.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use claudemesh_agent::service_unit::{
    CommandOutput, CommandRunner, InstallPlan, Platform, SystemRunner, plan_install, plan_uninstall,
    probe_service_manager, render_launchd, render_systemd,
};
use claudemesh_agent::service_unit::{install, uninstall};

/// Recording runner: systemd/launchd cannot run in this container, so install/uninstall are
/// exercised against this double, which records every argv and answers success, or failure for
/// any command whose argv contains `fail_on`.
#[derive(Default)]
struct RecordingRunner {
    calls: RefCell<Vec<Vec<String>>>,
    fail_on: Option<&'static str>,
    not_found: bool,
}

impl CommandRunner for RecordingRunner {
    fn run(&self, argv: &[String]) -> std::io::Result<CommandOutput> {
        self.calls.borrow_mut().push(argv.to_vec());
        if self.not_found {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"));
        }
        let fail = self.fail_on.is_some_and(|f| argv.iter().any(|a| a == f));
        Ok(CommandOutput {
            success: !fail,
            status: if fail { "exit status: 1".into() } else { "exit status: 0".into() },
            stderr: if fail { "Failed to connect to bus: No medium found".into() } else { String::new() },
        })
    }
}

fn v(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

const SYSTEMD_SIMPLE: &str = "[Unit]
Description=claudemesh agent (local daemon: broker connections, keys, inbox, outbox)

[Service]
Type=simple
Environment=\"CLAUDEMESH_CONFIG_DIR=/home/u/.claudemesh\"
ExecStart=\"/usr/local/bin/claudemesh\" agent run
Restart=on-failure
RestartSec=2

[Install]
WantedBy=default.target
";

#[test]
fn systemd_unit_snapshot() {
    let got = render_systemd(Path::new("/usr/local/bin/claudemesh"), Path::new("/home/u/.claudemesh"));
    assert_eq!(got, SYSTEMD_SIMPLE);
}

#[test]
fn systemd_unit_quotes_spaces_percent_quotes_and_backslashes() {
    let got =
        render_systemd(Path::new("/opt/My Apps/100%/$bin/claude\"mesh"), Path::new("/home/u/cfg 50%\\x"));
    assert!(got.contains("ExecStart=\"/opt/My Apps/100%%/$bin/claude\\\"mesh\" agent run\n"), "{got}");
    // `$` stays literal (no expansion in the executable path or Environment=).
    assert!(got.contains("Environment=\"CLAUDEMESH_CONFIG_DIR=/home/u/cfg 50%%\\\\x\"\n"), "{got}");
    let got = render_systemd(Path::new("/a\nb"), Path::new("/c"));
    assert!(got.contains("ExecStart=\"/a\\x0ab\" agent run\n"), "{got}");
    assert_eq!(got.lines().count(), SYSTEMD_SIMPLE.lines().count());
}

const PLIST_SIMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>dev.claudemesh.agent</string>
	<key>ProgramArguments</key>
	<array>
		<string>/usr/local/bin/claudemesh</string>
		<string>agent</string>
		<string>run</string>
	</array>
	<key>EnvironmentVariables</key>
	<dict>
		<key>CLAUDEMESH_CONFIG_DIR</key>
		<string>/Users/u/.claudemesh</string>
	</dict>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>StandardOutPath</key>
	<string>/Users/u/.claudemesh/agent.log</string>
	<key>StandardErrorPath</key>
	<string>/Users/u/.claudemesh/agent.log</string>
</dict>
</plist>
"#;

#[test]
fn launchd_plist_snapshot() {
    let got = render_launchd(
        Path::new("/usr/local/bin/claudemesh"),
        Path::new("/Users/u/.claudemesh"),
        Path::new("/Users/u/.claudemesh/agent.log"),
    );
    assert_eq!(got, PLIST_SIMPLE);
}

#[test]
fn launchd_plist_escapes_xml() {
    let got = render_launchd(
        Path::new("/Apps/Tom & Jerry/<bin>/claudemesh"),
        Path::new("/Users/u/it's \"cfg\""),
        Path::new("/Users/u/a&b.log"),
    );
    assert!(got.contains("<string>/Apps/Tom &amp; Jerry/&lt;bin&gt;/claudemesh</string>"), "{got}");
    assert!(got.contains("<string>/Users/u/it&apos;s &quot;cfg&quot;</string>"), "{got}");
    assert_eq!(got.matches("<string>/Users/u/a&amp;b.log</string>").count(), 2, "{got}");
    assert!(!got.contains("& "), "{got}");
}

fn linux_plan(home: &Path) -> InstallPlan {
    plan_install(
        Platform::Linux,
        home,
        Path::new("/usr/bin/claudemesh"),
        &home.join(".claudemesh"),
        &home.join(".claudemesh/agent.log"),
    )
}

#[test]
fn plans_put_units_in_the_user_locations() {
    let home = Path::new("/home/u");
    let plan = linux_plan(home);
    assert_eq!(plan.unit_path, PathBuf::from("/home/u/.config/systemd/user/claudemesh-agent.service"));
    assert_eq!(plan.probe, Some(v(&["systemctl", "--user", "show-environment"])));
    assert_eq!(
        plan.commands,
        vec![
            v(&["systemctl", "--user", "daemon-reload"]),
            v(&["systemctl", "--user", "enable", "--now", "claudemesh-agent.service"])
        ]
    );
    assert!(plan.contents.contains("Environment=\"CLAUDEMESH_CONFIG_DIR=/home/u/.claudemesh\""));
    let un = plan_uninstall(Platform::Linux, home);
    assert_eq!(un.unit_path, plan.unit_path);
    assert_eq!(un.stop, vec![v(&["systemctl", "--user", "disable", "--now", "claudemesh-agent.service"])]);
    assert_eq!(un.after_remove, vec![v(&["systemctl", "--user", "daemon-reload"])]);

    let mac = plan_install(
        Platform::MacOs,
        home,
        Path::new("/usr/local/bin/claudemesh"),
        Path::new("/home/u/.claudemesh"),
        Path::new("/home/u/.claudemesh/agent.log"),
    );
    let plist = "/home/u/Library/LaunchAgents/dev.claudemesh.agent.plist";
    assert_eq!(mac.unit_path, PathBuf::from(plist));
    assert_eq!(mac.commands, vec![v(&["launchctl", "load", "-w", plist])]);
    assert!(
        mac.contents.contains("<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>")
    );
    let un = plan_uninstall(Platform::MacOs, home);
    assert_eq!(un.unit_path, PathBuf::from(plist));
    assert_eq!(un.stop, vec![v(&["launchctl", "unload", "-w", plist])]);
}

#[test]
fn relative_paths_are_made_absolute() {
    let plan = plan_install(
        Platform::Linux,
        Path::new("/home/u"),
        Path::new("bin/claudemesh"),
        Path::new("cfg"),
        Path::new("cfg/agent.log"),
    );
    let cwd = std::env::current_dir().unwrap();
    assert!(
        plan.contents.contains(&format!("ExecStart=\"{}\" agent run", cwd.join("bin/claudemesh").display()))
    );
}

/// Files under `dir`, recursively (directories themselves are not listed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() { walk(&p, out)? } else { out.push(p) }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if let Err(e) = walk(dir, &mut out) {
        panic!("walking {}: {e}", dir.display());
    }
    out
}

#[test]
fn install_then_uninstall_leaves_nothing_behind() {
    let home = tempfile::tempdir().unwrap();
    let plan = linux_plan(home.path());
    let runner = RecordingRunner::default();
    let report = install(&plan, &runner).unwrap();
    assert!(report.unit_written && report.activated, "{report:?}");
    assert_eq!(std::fs::read_to_string(&plan.unit_path).unwrap(), plan.contents);
    assert_eq!(files_under(home.path()), vec![plan.unit_path.clone()], "no temp file left");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&plan.unit_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o133, 0, "not executable, not group/world writable: {mode:o}");
    }
    let mut expected = vec![plan.probe.clone().unwrap()];
    expected.extend(plan.commands.clone());
    assert_eq!(*runner.calls.borrow(), expected);

    // Reinstalling overwrites in place.
    install(&plan, &runner).unwrap();
    assert_eq!(files_under(home.path()), vec![plan.unit_path.clone()]);

    let un = plan_uninstall(Platform::Linux, home.path());
    let runner = RecordingRunner::default();
    let report = uninstall(&un, &runner).unwrap();
    assert!(report.removed && report.deactivated, "{report:?}");
    assert!(files_under(home.path()).is_empty());
    assert_eq!(
        *runner.calls.borrow(),
        vec![un.probe.clone().unwrap(), un.stop[0].clone(), un.after_remove[0].clone()]
    );

    // Idempotent: a second uninstall succeeds and runs nothing.
    let runner = RecordingRunner::default();
    let report = uninstall(&un, &runner).unwrap();
    assert!(!report.removed, "{report:?}");
    assert!(runner.calls.borrow().is_empty());
}

#[test]
fn uninstall_removes_only_the_unit_file() {
    let home = tempfile::tempdir().unwrap();
    let plan = linux_plan(home.path());
    install(&plan, &RecordingRunner::default()).unwrap();
    let neighbour = plan.unit_path.with_file_name("other.service");
    std::fs::write(&neighbour, "x").unwrap();
    uninstall(&plan_uninstall(Platform::Linux, home.path()), &RecordingRunner::default()).unwrap();
    assert_eq!(files_under(home.path()), vec![neighbour]);
}

#[test]
fn unreachable_user_manager_writes_unit_and_explains_fallback() {
    let home = tempfile::tempdir().unwrap();
    let plan = linux_plan(home.path());
    let runner = RecordingRunner { fail_on: Some("show-environment"), ..Default::default() };
    let report = install(&plan, &runner).unwrap();
    assert!(report.unit_written && !report.activated, "{report:?}");
    assert!(report.note.contains("systemd user services are not available here"), "{}", report.note);
    assert!(report.note.contains("Failed to connect to bus"), "{}", report.note);
    assert!(report.note.contains(&plan.unit_path.display().to_string()), "{}", report.note);
    assert!(report.note.contains("auto-starts the agent on demand"), "{}", report.note);
    assert_eq!(runner.calls.borrow().len(), 1, "nothing after the failed probe");
    assert!(plan.unit_path.exists());

    let report = uninstall(&plan_uninstall(Platform::Linux, home.path()), &runner).unwrap();
    assert!(report.removed && !report.deactivated, "{report:?}");
    assert!(files_under(home.path()).is_empty());
}

#[test]
fn missing_systemctl_is_explained() {
    let home = tempfile::tempdir().unwrap();
    let runner = RecordingRunner { not_found: true, ..Default::default() };
    let report = install(&linux_plan(home.path()), &runner).unwrap();
    assert!(!report.activated);
    assert!(report.note.contains("`systemctl` is not on PATH"), "{}", report.note);
}

#[test]
fn failure_after_a_successful_probe_is_an_error_naming_the_command() {
    let home = tempfile::tempdir().unwrap();
    let runner = RecordingRunner { fail_on: Some("enable"), ..Default::default() };
    let err = install(&linux_plan(home.path()), &runner).unwrap_err().to_string();
    assert!(err.contains("systemctl --user enable --now claudemesh-agent.service"), "{err}");
    assert!(err.contains("exit status: 1"), "{err}");
}

#[test]
fn launchctl_failure_has_the_same_shape() {
    let home = tempfile::tempdir().unwrap();
    let plan = plan_install(
        Platform::MacOs,
        home.path(),
        Path::new("/usr/local/bin/claudemesh"),
        &home.path().join(".claudemesh"),
        &home.path().join(".claudemesh/agent.log"),
    );
    let runner = RecordingRunner { fail_on: Some("load"), ..Default::default() };
    let report = install(&plan, &runner).unwrap();
    assert!(report.unit_written && !report.activated, "{report:?}");
    assert!(report.note.contains("launchd could not load the agent here"), "{}", report.note);
    assert!(report.note.contains("auto-starts the agent on demand"), "{}", report.note);
    let runner = RecordingRunner { fail_on: Some("unload"), ..Default::default() };
    let report = uninstall(&plan_uninstall(Platform::MacOs, home.path()), &runner).unwrap();
    assert!(report.removed && !report.deactivated);
    assert!(files_under(home.path()).is_empty());
}

/// Real `SystemRunner` in this environment. Only when the probe says the user manager is
/// unreachable does it run `install` (which then runs nothing beyond the probe); on a machine with
/// a working `systemctl --user` it never enables anything real.
#[test]
fn system_runner_reports_unavailable_user_manager() {
    let home = tempfile::tempdir().unwrap();
    let plan = linux_plan(home.path());
    if let Ok(()) = probe_service_manager(plan.probe.as_deref(), &SystemRunner) {
        eprintln!("systemctl --user is available here; not activating a real unit");
        return;
    }
    let report = install(&plan, &SystemRunner).unwrap();
    assert!(report.unit_written && !report.activated, "{report:?}");
    assert!(report.note.contains("systemd user services are not available here"), "{}", report.note);
    assert!(report.note.contains("auto-starts the agent on demand"), "{}", report.note);
    assert!(plan.unit_path.exists());
    let report = uninstall(&plan_uninstall(Platform::Linux, home.path()), &SystemRunner).unwrap();
    assert!(report.removed);
    assert!(files_under(home.path()).is_empty());
}

#[test]
fn system_runner_spawns_argv_without_a_shell() {
    // A shell would expand `$HOME` and split on `;`; argv passes them through literally.
    let out = SystemRunner.run(&v(&["sh", "-c", "echo \"$0\" >&2", "$HOME; false"])).unwrap();
    assert!(out.success, "{out:?}");
    assert_eq!(out.stderr, "$HOME; false");
    assert!(SystemRunner.run(&[]).is_err());
    let err = SystemRunner.run(&v(&["/nonexistent/claudemesh-test-bin"])).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

/// When `systemd-analyze` exists (it does in this container even without a running manager), let
/// systemd itself parse the rendered unit: `verify` fails if the unquoted, unescaped ExecStart
/// binary does not exist, so this proves the quoting of a path with spaces, `%`, `$` and `;`.
/// (systemd refuses `"`, `'` and `\` in an executable path outright, whatever the quoting.)
#[test]
fn systemd_analyze_accepts_rendered_unit_with_awkward_path() {
    use std::os::unix::fs::PermissionsExt;
    if SystemRunner.run(&v(&["systemd-analyze", "--version"])).is_err() {
        eprintln!("systemd-analyze not on PATH; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin_dir = tmp.path().join("My Apps/100% $x;y");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let exe = bin_dir.join("claude mesh");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let unit = tmp.path().join("claudemesh-agent.service");
    let runtime = tmp.path().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    let verify = |contents: &str| {
        std::fs::write(&unit, contents).unwrap();
        std::process::Command::new("systemd-analyze")
            .args(["verify", "--user"])
            .arg(&unit)
            .env("XDG_RUNTIME_DIR", &runtime)
            .output()
            .unwrap()
    };
    let out = verify(&render_systemd(&exe, &tmp.path().join("cfg 50% \\ \"q\"")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Control: a unit naming a missing binary is rejected, so the check above is meaningful.
    let out = verify(&render_systemd(&bin_dir.join("missing"), tmp.path()));
    assert!(!out.status.success(), "verify should reject a missing ExecStart binary");
}
