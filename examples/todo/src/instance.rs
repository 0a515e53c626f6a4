//! Which instance of the app this is, for pages and the demo's reports.

use std::sync::OnceLock;

/// Fly's machine id when on Fly (`FLY_MACHINE_ID`, else `FLY_ALLOC_ID`),
/// otherwise `pid-<process id>`.
pub(crate) fn id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        ["FLY_MACHINE_ID", "FLY_ALLOC_ID"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| format!("pid-{}", std::process::id()))
    })
}
