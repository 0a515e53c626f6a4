//! Logs on stderr, filtered as `RUST_LOG` says.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Logs to stderr at `default` and above, or as `RUST_LOG` says:
/// comma-separated `target=level` directives and a bare level (no span or
/// field filters). A `RUST_LOG` that does not parse is reported once, on
/// stderr under `program`'s name, and the default is used.
pub fn log_to_stderr(program: &str, default: tracing::Level) {
    let filter = match std::env::var("RUST_LOG").map(|v| v.parse::<Targets>()) {
        Ok(Ok(filter)) => filter,
        Ok(Err(e)) => {
            eprintln!("{program}: RUST_LOG not understood ({e}); logging at {default}");
            Targets::new().with_default(default)
        }
        Err(_) => Targets::new().with_default(default),
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
}
