//! The demo's running commentary goes to stdout, unless stdout carries
//! the `--json` summary: then it goes to stderr, so stdout is one JSON
//! object a script can parse.

use std::sync::atomic::{AtomicBool, Ordering};

static TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Sends the commentary to stderr from now on (for `--json`).
pub(crate) fn to_stderr(yes: bool) {
    TO_STDERR.store(yes, Ordering::Relaxed);
}

pub(crate) fn on_stderr() -> bool {
    TO_STDERR.load(Ordering::Relaxed)
}

/// `println!` for the commentary, except that a closed stdout or stderr
/// (a reader that stopped after the URLs it wanted) is ignored instead of
/// panicking: the demo keeps serving.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = if $crate::demo::narration::on_stderr() {
            writeln!(std::io::stderr(), $($arg)*)
        } else {
            writeln!(std::io::stdout(), $($arg)*)
        };
    }};
}
pub(crate) use say;
