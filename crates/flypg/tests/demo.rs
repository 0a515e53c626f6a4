//! The demo, end to end: real PostgreSQL, real app processes, over HTTP.

use std::process::Command;

#[test]
fn the_demo_scenario_holds_its_consistency_checks_and_cleans_up() {
    // Inherited by the demo's app processes: tells them apart from those of
    // other tests running at the same time.
    let tag = format!("demo-test-{}", std::process::id());
    let demo = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .args(["demo", "--rtt-ms", "100", "--writes", "8", "--json"])
        .env("FLYPG_TEST_TAG", &tag)
        .env_remove("FLY_APP_NAME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The demo's PostgreSQL servers name themselves after its process.
    let servers_tag = format!("flypg-{}-", demo.id());
    let out = demo.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // stdout is the summary alone, for scripts; the steps go to stderr.
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["stale_reads_with_wait"], 0, "{summary}");
    assert_eq!(summary["unique_violation_status"], 409, "{summary}");
    assert!(
        summary["unique_violation_message"]
            .as_str()
            .unwrap()
            .contains("todos_title_key"),
        "{summary}"
    );
    // With 100 ms on the replication link, reads right after a no-wait write
    // are stale: the wait is what makes them consistent.
    assert!(
        summary["stale_reads_without_wait"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(
        summary["mutation3_p50_ms"].as_f64().unwrap() < summary["direct3_p50_ms"].as_f64().unwrap(),
        "{summary}"
    );
    assert!(
        stderr.contains("5. a 3-statement operation"),
        "the steps are printed as they go"
    );

    // Nothing left running: no app process of this demo, no postgres.
    let exe = env!("CARGO_BIN_EXE_flypg");
    let marker = format!("FLYPG_TEST_TAG={tag}");
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            let ours = String::from_utf8_lossy(&environ)
                .split('\0')
                .any(|var| var == marker);
            (state != 'Z' && ours && cmdline.contains(exe) && cmdline.contains("todo-app"))
                .then_some(cmdline)
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "app processes left behind: {leftovers:?}"
    );
    let servers = fly_postgres_testkit::live_processes_tagged(&servers_tag);
    assert!(
        servers.is_empty(),
        "PostgreSQL processes of the demo left behind: {servers:?}"
    );
}

#[test]
fn three_regions_and_two_primary_instances_carry_the_lsn_and_spread_the_writes() {
    let out = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .args([
            "demo",
            "--regions",
            "syd,lax,fra",
            "--primary-instances",
            "2",
            "--writes",
            "5",
            "--json",
        ])
        .env_remove("FLY_APP_NAME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout is the summary alone, for scripts; the steps go to stderr.
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let split = summary["primary_instance_writes"].as_array().unwrap();
    assert_eq!(split.len(), 2, "{summary}");
    assert!(
        split.iter().all(|n| n.as_u64().unwrap() > 0),
        "writes spread over both syd instances: {summary}"
    );
    let cross = &summary["cross_region"];
    assert_eq!(cross["written_in"], "lax", "{summary}");
    assert_eq!(cross["read_in"], "fra", "{summary}");
    // fra waited for its replica: the write is there.
    assert_eq!(cross["stale_reads_with_lsn"], 0, "{summary}");
    // Without the LSN, fra (60 ms of WAL away) answers before it has it.
    assert!(
        cross["stale_reads_without_lsn"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(cross["third_region_stale_reads"], 0, "{summary}");
    // fra is 120 ms from syd: its writes cost at least that.
    assert!(
        cross["third_region_write_p50_ms"].as_f64().unwrap() >= 120.0,
        "{summary}"
    );
    // Bounded reads in fra: local while it replays, from the primary when
    // it stops replaying or goes down, local again after its return, and
    // never missing an item older than the bound.
    let bounded = &summary["bounded"];
    assert_eq!(bounded["region"], "fra", "{summary}");
    assert_eq!(bounded["stale_beyond_bound"], 0, "{summary}");
    assert_eq!(bounded["replaying_local"], 5, "{summary}");
    assert_eq!(bounded["paused_from_primary"], 5, "{summary}");
    assert_eq!(bounded["down_from_primary"], 5, "{summary}");
    assert!(bounded["back_local_ms"].is_number(), "{summary}");
    // Down, no read waits for the replica: one round trip to syd (120 ms),
    // well under the 2 s the bound's wait could take.
    assert!(
        bounded["down_p50_ms"].as_f64().unwrap() < 1000.0,
        "{summary}"
    );
}

#[test]
fn bad_region_lists_are_refused_clearly() {
    for (regions, says) in [
        ("syd", "at least two"),
        ("syd,syd", "twice"),
        ("syd,l@x", "region code"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flypg"))
            .args(["demo", "--regions", regions])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{regions}: {stderr}");
    }
}

#[test]
fn the_demo_explains_a_missing_postgres_in_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .arg("demo")
        .env("PG_BIN", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    assert!(stderr.contains("PG_BIN=/nonexistent"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// `flypg demo --fly` (root only; CI requires it): the template app on the
/// emulated Fly network, deployed twice with writers running, then scaled
/// into a third region; every check held and nothing left behind.
#[test]
fn the_fly_demo_deploys_twice_without_a_failed_write_and_scales_out() {
    let Some(probe) = fly_postgres_testkit::FlyNet::start_or_skip(
        "the_fly_demo_deploys_twice_without_a_failed_write_and_scales_out",
    ) else {
        return;
    };
    drop(probe);
    let demo = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .args(["demo", "--fly", "--writes", "5", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The world's namespaces carry the process id of the one that made it.
    let its_namespaces = format!("flypg-{}-", demo.id());
    let out = demo.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo --fly failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["walk"]["stale_reads"], 0, "{summary}");
    assert_eq!(summary["walk"]["forwarded"], 5, "{summary}");
    let deploys = summary["deploys"].as_array().unwrap();
    assert_eq!(deploys.len(), 2, "{summary}");
    assert_eq!(deploys[0]["strategy"], "rolling");
    assert_eq!(deploys[0]["new_addresses"], 0);
    assert_eq!(deploys[1]["strategy"], "bluegreen");
    assert_eq!(deploys[1]["new_addresses"], 4);
    for deploy in deploys {
        assert_eq!(deploy["machines"], 4, "{deploy}");
        assert_eq!(deploy["clean_exits"], 4, "{deploy}");
    }
    let ledger = &summary["ledger"];
    assert!(ledger["writes"].as_u64().unwrap() > 0, "{ledger}");
    assert_eq!(ledger["writes"], ledger["ok"], "{ledger}");
    for broken in [
        "failed",
        "lost",
        "duplicated",
        "failed_but_committed",
        "stale_reads",
    ] {
        assert_eq!(ledger[broken], 0, "{broken}: {ledger}");
    }
    assert!(
        summary["first_forwarded_write_ms"]["median"].is_number(),
        "{summary}"
    );
    assert_eq!(summary["scale_out"]["region"], "fra");
    assert_eq!(summary["scale_out"]["read_back"], true, "{summary}");
    assert_eq!(summary["app_machines"], 5);
    // The demo's world is gone: no namespace of it, no app process.
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&its_namespaces)),
        "namespaces left: {left}"
    );
}
