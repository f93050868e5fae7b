//! Descriptor hygiene for auto-start: the agent a CLI starts must not keep the caller's
//! inherited descriptors open for its whole life (a shell's `exec 3>&1` pipe, say, which would
//! make `… | cat` wait until the agent exits). `unsafe` is forbidden here, so descriptors are
//! not closed in the child; they are marked close-on-exec around the spawn instead.

use std::os::fd::RawFd;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// Where the kernel lists this process's open descriptors.
const FD_DIR: &str = if cfg!(target_os = "linux") { "/proc/self/fd" } else { "/dev/fd" };

/// This process's descriptors from 3 up that a spawned child would inherit, with their flags.
fn inheritable() -> Vec<(RawFd, FdFlag)> {
    let Ok(entries) = std::fs::read_dir(FD_DIR) else {
        return Vec::new();
    };
    let fds: Vec<RawFd> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|fd| *fd >= 3).collect();
    // The directory's own descriptor is closed by now (and was close-on-exec): it fails here.
    fds.into_iter()
        .filter_map(|fd| {
            let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).ok()?);
            (!flags.contains(FdFlag::FD_CLOEXEC)).then_some((fd, flags))
        })
        .collect()
}

/// Runs `spawn` with every inherited descriptor (>= 3) marked close-on-exec, then restores
/// their flags, so the caller's own children (started later, by the shell) are unaffected.
pub fn spawn_without_inherited<T>(spawn: impl FnOnce() -> T) -> T {
    let marked: Vec<(RawFd, FdFlag)> = inheritable()
        .into_iter()
        .filter(|(fd, flags)| fcntl(*fd, FcntlArg::F_SETFD(*flags | FdFlag::FD_CLOEXEC)).is_ok())
        .collect();
    let out = spawn();
    for (fd, flags) in marked {
        if let Err(e) = fcntl(fd, FcntlArg::F_SETFD(flags)) {
            tracing::debug!(fd, error = %e, "cannot restore descriptor flags after spawning the agent");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn cloexec(fd: RawFd) -> bool {
        FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn inherited_descriptors_are_hidden_from_the_child_and_restored_after() {
        let f = tempfile::tempfile().unwrap();
        let fd = f.as_raw_fd();
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        assert!(!cloexec(fd), "the test file starts inheritable");
        let out = spawn_without_inherited(|| {
            assert!(cloexec(fd), "marked close-on-exec while spawning");
            std::process::Command::new("sh")
                .args(["-c", &format!("test -e {FD_DIR}/{fd} && echo open || echo closed")])
                .output()
                .unwrap()
        });
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "closed");
        assert!(!cloexec(fd), "flags restored afterwards");
    }
}
