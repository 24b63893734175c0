//! How the command prints: cargo's style.

/// Prints a cargo-style status line: a right-aligned verb, then the message.
pub(crate) fn status(verb: &str, message: impl std::fmt::Display) {
    eprintln!("{verb:>12} {message}");
}

pub(crate) fn error(message: impl std::fmt::Display) {
    eprintln!("error: {message}");
}
