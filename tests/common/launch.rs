//! The one way the tests start the `followupd` binary, and the one place
//! that cleans the environment it inherits from the test process.

use std::path::Path;
use std::process::{Command, Stdio};

/// The binary under test: this build's, or `FOLLOWUPD_TEST_BIN` (to run
/// the same tests against another build, such as one from before a fix).
pub fn bin() -> std::path::PathBuf {
    std::env::var_os("FOLLOWUPD_TEST_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_followupd").into())
}

/// Variables the binary reads that a developer's shell, CI or a systemd
/// session may have set: left in, they would point a test at the wrong
/// config or database, or make it talk to a real service manager. Every
/// `FOLLOWUPD_*` variable goes too, except the suite's own settings.
const INHERITED: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "LISTEN_FDS",
    "LISTEN_PID",
];

/// The suite's own settings (read by the tests, never by the binary).
const SUITE_SETTINGS: [&str; 2] = ["FOLLOWUPD_TEST_", "FOLLOWUPD_FAULTS_"];

/// Removes what the binary must not inherit and sets `RUST_LOG=warn` and
/// stdin to /dev/null; the caller may set any of them again.
pub fn clean(command: &mut Command) -> &mut Command {
    for var in INHERITED {
        command.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        let ours = SUITE_SETTINGS.iter().any(|p| var.starts_with(p))
            || var == "FOLLOWUPD_REQUIRE_POSTGRES";
        if var.starts_with("FOLLOWUPD_") && !ours {
            command.env_remove(var.as_ref());
        }
    }
    // Always removed, whether or not this process has them.
    command
        .env_remove("FOLLOWUPD_CONFIG")
        .env_remove("FOLLOWUPD_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
}

/// `followupd -c CONFIG`, ready for its arguments.
pub fn followupd(config: &Path) -> Command {
    let mut command = Command::new(bin());
    command.arg("-c").arg(config);
    clean(&mut command);
    command
}

/// `sh -c SCRIPT followupd -c CONFIG`: for a test that needs a shell to
/// exec the binary (to give it the shell's pid in a variable, say); the
/// script ends with `exec "$0" "$@"`.
pub fn through_shell(script: &str, config: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .arg(bin())
        .arg("-c")
        .arg(config);
    clean(&mut command);
    command
}
