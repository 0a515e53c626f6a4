//! Finding a cluster's processes, to prove teardown left nothing running.

/// Process ids of live (not zombie) processes whose command line contains
/// `tag`, such as a [`crate::PgCluster::tag`]. Reads `/proc`, so Linux only;
/// elsewhere it returns an empty list.
pub fn live_processes_tagged(tag: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            if !cmdline.contains(tag) {
                return None;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            (state != 'Z' && state != 'X').then_some(pid)
        })
        .collect()
}
