//! `FLY_RPC_INSECURE=true` read from the environment, as a developer sets
//! it: the node listens on loopback, and a non-loopback address is refused
//! at start with a message naming both settings.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

fn rpc_node(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flypg"));
    command
        .args(["rpc-node", "--name", "dev"])
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

#[test]
fn insecure_from_env_listens_on_loopback_only() {
    let mut child = rpc_node(&[("FLY_RPC_INSECURE", "true"), ("FLY_RPC_PORT", "0")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
}

#[test]
fn insecure_from_env_refuses_all_interfaces() {
    for listen in ["0.0.0.0:0", "[::]:7878"] {
        let out = rpc_node(&[("FLY_RPC_INSECURE", "true"), ("FLY_RPC_LISTEN", listen)])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{listen}: started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in ["FLY_RPC_INSECURE", "FLY_RPC_LISTEN", "loopback"] {
            assert!(stderr.contains(needle), "{listen}: {stderr}");
        }
    }
}

#[test]
fn bad_previous_secrets_from_env_refuse_to_start_naming_the_entry() {
    let secret = "a cluster secret of 16+ bytes";
    for (previous, needles) in [
        (
            "another secret of 16+ bytes,,x",
            ["FLY_RPC_SECRET_PREVIOUS", "entry 2", "empty"],
        ),
        ("short", ["FLY_RPC_SECRET_PREVIOUS", "entry 1", "16 bytes"]),
    ] {
        let out = rpc_node(&[
            ("FLY_RPC_SECRET", secret),
            ("FLY_RPC_SECRET_PREVIOUS", previous),
            ("FLY_RPC_LISTEN", "127.0.0.1:0"),
        ])
        .output()
        .unwrap();
        assert!(!out.status.success(), "{previous:?}: started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in needles {
            assert!(stderr.contains(needle), "{previous:?}: {stderr}");
        }
    }
}
