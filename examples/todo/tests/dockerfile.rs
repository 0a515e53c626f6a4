//! The Dockerfile agrees with Cargo and fly.toml: it builds the binary the
//! package declares, exposes the ports fly.toml uses, and sets the same env
//! names. (No image can be built on the machines that run these tests.)

const DOCKERFILE: &str = include_str!("../Dockerfile");
const FLY_TOML: &str = include_str!("../fly.toml");
const CARGO_TOML: &str = include_str!("../Cargo.toml");

/// The value of `key = "..."` or `key = N` on its own line.
fn value<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.trim().split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"'))
        })
        .collect()
}

#[test]
fn the_dockerfile_builds_the_declared_binary() {
    let bins = value(CARGO_TOML, "name");
    assert!(
        bins.contains(&"todo"),
        "Cargo.toml declares bin `todo`: {bins:?}"
    );
    assert!(DOCKERFILE.contains("--bin todo"), "builds it");
    assert!(DOCKERFILE.contains("target/release/todo /usr/local/bin/todo"));
    assert!(DOCKERFILE.contains(r#"CMD ["/usr/local/bin/todo"]"#));
    assert!(DOCKERFILE.contains("--package fly-postgres-todo"));
    assert!(DOCKERFILE.contains("USER app"), "runs as a non-root user");
    assert_eq!(value(FLY_TOML, "dockerfile"), ["Dockerfile"]);
}

#[test]
fn the_dockerfile_exposes_and_sets_what_fly_toml_uses() {
    let http = value(FLY_TOML, "internal_port");
    let port = value(FLY_TOML, "PORT");
    let rpc = value(FLY_TOML, "FLY_RPC_PORT");
    assert_eq!(http, port, "the HTTP service is the app's PORT");
    let exposed: Vec<&str> = DOCKERFILE
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE")
        .split_whitespace()
        .collect();
    for wanted in [port[0], rpc[0]] {
        assert!(exposed.contains(&wanted), "EXPOSE {wanted}: {exposed:?}");
    }
    assert!(DOCKERFILE.contains(&format!("PORT={}", port[0])));
    assert!(DOCKERFILE.contains(&format!("FLY_RPC_PORT={}", rpc[0])));
    assert_eq!(value(FLY_TOML, "strategy"), ["rolling"]);
    assert_eq!(value(FLY_TOML, "path"), ["/healthz"], "the health check");
}
