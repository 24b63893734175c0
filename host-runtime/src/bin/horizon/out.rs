//! How the command prints: cargo's style.

/// Prints a cargo-style status line: a right-aligned verb, then the message.
pub(crate) fn status(verb: &str, message: impl std::fmt::Display) {
    eprintln!("{verb:>12} {message}");
}

pub(crate) fn error(message: impl std::fmt::Display) {
    eprintln!("error: {message}");
}

/// The exit status of a command that failed (a build, a load, a `check`
/// that finds a library this host would refuse): 101, as cargo's. Usage
/// errors exit with 1 (see `main`).
pub(crate) fn failed() -> std::process::ExitCode {
    std::process::ExitCode::from(101)
}
