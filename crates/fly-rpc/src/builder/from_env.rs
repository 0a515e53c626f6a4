//! Reading a [`NodeBuilder`]'s configuration from the environment.

use std::net::{IpAddr, SocketAddr};

use super::{DEFAULT_PORT, NodeBuilder};
use crate::auth::MIN_SECRET_LEN;
use crate::discovery::StaticPeers;
use crate::error::Error;
use crate::regions::Regions;
#[cfg(feature = "tls")]
use crate::tls::TlsConfig;

/// Reads one variable; a blank one counts as unset.
type Var<'a> = &'a dyn Fn(&str) -> Option<String>;

impl NodeBuilder {
    /// A builder configured from the environment, as on Fly.io:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `FLY_REGION` / `MY_REGION`, `PRIMARY_REGION` | see [`Regions::from_env`] |
    /// | `FLY_RPC_PORT` | port to listen on (default 7878): on the machine's private address on Fly (`FLY_PRIVATE_IP`), else on all interfaces (loopback when insecure) |
    /// | `FLY_PRIVATE_IP` | set by Fly: the machine's 6PN address, the only one the RPC port listens on; required when `FLY_MACHINE_ID` is set |
    /// | `FLY_RPC_LISTEN` | full listen address instead, e.g. `127.0.0.1:7001` |
    /// | `FLY_RPC_PEERS` | static peers, `region=ip:port,ip:port;region=...` ([`StaticPeers`]) |
    /// | `FLY_APP_NAME` | without `FLY_RPC_PEERS`: discover peers by Fly DNS ([`FlyDns`]) |
    /// | `FLY_RPC_SECRET` | the cluster's shared secret (at least 16 bytes) |
    /// | `FLY_RPC_SECRET_PREVIOUS` | secrets that still verify, comma-separated (a rotation in progress) |
    /// | `FLY_RPC_INSECURE` | `true`: run without a secret, on loopback only (development only) |
    /// | `FLY_RPC_VERSION`, else `FLY_IMAGE_REF` | the build version this node reports |
    /// | `FLY_RPC_ADVERTISE` | other `ip:port`s callers reach this node at (a proxy, a NAT), comma-separated |
    /// | `FLY_RPC_MAX_CONNECTIONS` | cap on open connections (default: half the fd limit) |
    /// | `FLY_RPC_BATCH_CALLS` | `false`: one request per call ([`NodeBuilder::batch_calls`]) |
    /// | `FLY_RPC_TLS_CERT`, `FLY_RPC_TLS_KEY` | PEM files: serve and call over TLS ([`TlsConfig`]) |
    /// | `FLY_RPC_TLS_CA` | PEM file: mutual TLS, peers must have a certificate from this CA |
    /// | `FLY_RPC_TLS_SERVER_NAME` | verify peers' certificates for this name instead of their IP |
    pub(crate) fn from_env() -> Result<NodeBuilder, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let builder = NodeBuilder::new(Regions::from_env());
        let (builder, port) = address_from_env(builder, &var)?;
        let builder = private_address_from_env(builder, &var, port)?;
        let builder = discovery_from_env(builder, &var, port)?;
        let builder = secrets_from_env(builder, &var)?;
        let builder = insecure_from_env(builder, &var)?;
        let builder = match var("FLY_RPC_VERSION").or_else(|| var("FLY_IMAGE_REF")) {
            Some(version) => builder.version(version),
            None => builder,
        };
        let builder = advertised_from_env(builder, &var)?;
        let builder = max_connections_from_env(builder, &var)?;
        let builder = batch_calls_from_env(builder, &var)?;
        tls_from_env(builder, &var)
    }
}

/// `FLY_RPC_PORT` and `FLY_RPC_LISTEN`; also returns the port peers dial
/// (the listen address's, else the port's), which Fly DNS discovery needs.
fn address_from_env(mut builder: NodeBuilder, var: Var<'_>) -> Result<(NodeBuilder, u16), Error> {
    let port = var("FLY_RPC_PORT")
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| Error::Config(format!("FLY_RPC_PORT {p:?} is not a port number")))
        })
        .transpose()?;
    let listen = var("FLY_RPC_LISTEN")
        .map(|addr| {
            addr.trim().parse::<SocketAddr>().map_err(|_| {
                Error::Config(format!("FLY_RPC_LISTEN {addr:?} is not an ip:port address"))
            })
        })
        .transpose()?;
    if let Some(port) = port {
        builder = builder.port(port);
    }
    if let Some(addr) = listen {
        builder = builder.listen(addr);
    }
    let dialled = listen.map_or(port.unwrap_or(DEFAULT_PORT), |addr| addr.port());
    Ok((builder, dialled))
}

/// On a Fly machine the RPC port listens on the machine's private (6PN)
/// address only, not on every interface; `FLY_RPC_LISTEN` chooses
/// otherwise, and an insecure node stays on loopback.
fn private_address_from_env(
    builder: NodeBuilder,
    var: Var<'_>,
    port: u16,
) -> Result<NodeBuilder, Error> {
    if var("FLY_RPC_LISTEN").is_some() {
        return Ok(builder);
    }
    match var("FLY_PRIVATE_IP") {
        Some(ip) => {
            let ip: IpAddr = ip.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "FLY_PRIVATE_IP {ip:?} is not an IP address (Fly sets it to the machine's \
                     private 6PN address)"
                ))
            })?;
            Ok(if insecure(var)? {
                builder
            } else {
                builder.listen(SocketAddr::new(ip, port))
            })
        }
        None if var("FLY_MACHINE_ID").is_some() => Err(Error::Config(
            "FLY_PRIVATE_IP is not set, though FLY_MACHINE_ID is: every Fly machine has it (its \
             private 6PN address, where the RPC port listens); set FLY_RPC_LISTEN to choose the \
             address yourself"
                .into(),
        )),
        None => Ok(builder),
    }
}

/// `FLY_RPC_PEERS`, else `FLY_APP_NAME` (Fly DNS on `port`), else no peers.
fn discovery_from_env(builder: NodeBuilder, var: Var<'_>, port: u16) -> Result<NodeBuilder, Error> {
    if let Some(peers) = var("FLY_RPC_PEERS") {
        Ok(builder.discovery(StaticPeers::parse(&peers)?))
    } else if let Some(app) = var("FLY_APP_NAME") {
        // Peers are found by region: this instance's must be known, not
        // the `local` a laptop defaults to.
        if var("FLY_REGION").is_none() && var("MY_REGION").is_none() {
            return Err(Error::Config(
                "FLY_REGION is not set: with FLY_APP_NAME the node finds its peers by region \
                 through Fly's DNS, so it must know its own (Fly sets FLY_REGION; elsewhere set \
                 MY_REGION, or FLY_RPC_PEERS instead of FLY_APP_NAME)"
                    .into(),
            ));
        }
        fly_dns(builder, app, port)
    } else {
        Ok(builder)
    }
}

/// `FLY_RPC_SECRET` and `FLY_RPC_SECRET_PREVIOUS`.
fn secrets_from_env(mut builder: NodeBuilder, var: Var<'_>) -> Result<NodeBuilder, Error> {
    if let Some(secret) = var("FLY_RPC_SECRET") {
        builder = builder.secret(secret);
    }
    if let Some(list) = var("FLY_RPC_SECRET_PREVIOUS") {
        for (i, secret) in list.split(',').enumerate() {
            if secret.trim().is_empty() {
                return Err(Error::Config(format!(
                    "FLY_RPC_SECRET_PREVIOUS entry {} is empty (comma-separated secrets, \
                     each at least {MIN_SECRET_LEN} bytes)",
                    i + 1
                )));
            }
            builder = builder.previous_secret(secret.trim());
        }
    }
    Ok(builder)
}

/// `FLY_RPC_INSECURE`: anything but a clear yes or no is refused, since a
/// typo must not silently decide whether the node authenticates.
fn insecure_from_env(builder: NodeBuilder, var: Var<'_>) -> Result<NodeBuilder, Error> {
    Ok(if insecure(var)? {
        builder.insecure()
    } else {
        builder
    })
}

fn insecure(var: Var<'_>) -> Result<bool, Error> {
    match var("FLY_RPC_INSECURE").as_deref().map(str::trim) {
        Some("1" | "true" | "yes") => Ok(true),
        Some("0" | "false" | "no") | None => Ok(false),
        Some(other) => Err(Error::Config(format!(
            "FLY_RPC_INSECURE must be true or false, not {other:?}"
        ))),
    }
}

/// `FLY_RPC_ADVERTISE`, comma-separated `ip:port`s.
fn advertised_from_env(mut builder: NodeBuilder, var: Var<'_>) -> Result<NodeBuilder, Error> {
    let Some(list) = var("FLY_RPC_ADVERTISE") else {
        return Ok(builder);
    };
    for addr in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let addr = addr.parse::<SocketAddr>().map_err(|_| {
            Error::Config(format!(
                "FLY_RPC_ADVERTISE: {addr:?} is not an ip:port address"
            ))
        })?;
        builder = builder.advertise(addr);
    }
    Ok(builder)
}

/// `FLY_RPC_MAX_CONNECTIONS`, a positive number.
fn max_connections_from_env(builder: NodeBuilder, var: Var<'_>) -> Result<NodeBuilder, Error> {
    let Some(n) = var("FLY_RPC_MAX_CONNECTIONS") else {
        return Ok(builder);
    };
    let n = n
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Error::Config(format!(
                "FLY_RPC_MAX_CONNECTIONS {n:?} is not a positive number"
            ))
        })?;
    Ok(builder.max_connections(n))
}

/// `FLY_RPC_BATCH_CALLS`.
fn batch_calls_from_env(builder: NodeBuilder, var: Var<'_>) -> Result<NodeBuilder, Error> {
    match var("FLY_RPC_BATCH_CALLS").as_deref().map(str::trim) {
        None => Ok(builder),
        Some("true" | "1") => Ok(builder.batch_calls(true)),
        Some("false" | "0") => Ok(builder.batch_calls(false)),
        Some(other) => Err(Error::Config(format!(
            "FLY_RPC_BATCH_CALLS must be true or false, not {other:?}"
        ))),
    }
}

/// `FLY_RPC_TLS_CERT`, `FLY_RPC_TLS_KEY`, `FLY_RPC_TLS_CA` and
/// `FLY_RPC_TLS_SERVER_NAME`.
#[cfg(feature = "tls")]
fn tls_from_env(builder: NodeBuilder, var: Var<'_>) -> Result<NodeBuilder, Error> {
    match (var("FLY_RPC_TLS_CERT"), var("FLY_RPC_TLS_KEY")) {
        (Some(cert), Some(key)) => {
            let ca = var("FLY_RPC_TLS_CA");
            let mut tls = TlsConfig::from_files(
                std::path::Path::new(&cert),
                std::path::Path::new(&key),
                ca.as_deref().map(std::path::Path::new),
            )?;
            if let Some(name) = var("FLY_RPC_TLS_SERVER_NAME") {
                tls = tls.server_name(&name)?;
            }
            Ok(builder.tls(tls))
        }
        (None, None) if var("FLY_RPC_TLS_CA").is_some() => Err(Error::Config(
            "FLY_RPC_TLS_CA needs FLY_RPC_TLS_CERT and FLY_RPC_TLS_KEY".into(),
        )),
        (None, None) => Ok(builder),
        _ => Err(Error::Config(
            "set both FLY_RPC_TLS_CERT and FLY_RPC_TLS_KEY, or neither".into(),
        )),
    }
}

/// Without the `tls` feature a TLS setting is an error, never a silent
/// fall back to cleartext.
#[cfg(not(feature = "tls"))]
fn tls_from_env(builder: NodeBuilder, var: Var<'_>) -> Result<NodeBuilder, Error> {
    for name in [
        "FLY_RPC_TLS_CERT",
        "FLY_RPC_TLS_KEY",
        "FLY_RPC_TLS_CA",
        "FLY_RPC_TLS_SERVER_NAME",
    ] {
        if var(name).is_some() {
            return Err(Error::Config(format!(
                "{name} is set, but fly-rpc was built without its `tls` feature"
            )));
        }
    }
    Ok(builder)
}

/// Peers by Fly.io's private DNS, for `FLY_APP_NAME`.
#[cfg(feature = "fly-dns")]
fn fly_dns(builder: NodeBuilder, app: String, port: u16) -> Result<NodeBuilder, Error> {
    Ok(builder.discovery(crate::discovery::FlyDns::new(app, port)?))
}

/// Without the `fly-dns` feature `FLY_APP_NAME` alone cannot find peers.
#[cfg(not(feature = "fly-dns"))]
fn fly_dns(_builder: NodeBuilder, _app: String, _port: u16) -> Result<NodeBuilder, Error> {
    Err(Error::Config(
        "FLY_APP_NAME asks for Fly DNS discovery, but fly-rpc was built without its `fly-dns` \
         feature: set FLY_RPC_PEERS, or enable the feature"
            .into(),
    ))
}

#[cfg(test)]
mod feature_tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn builder() -> NodeBuilder {
        NodeBuilder::new(Regions::new("syd", "syd"))
    }

    #[test]
    fn no_tls_settings_need_no_feature() {
        assert!(tls_from_env(builder(), &env(&[])).is_ok());
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_settings_without_the_feature_are_refused_by_name() {
        let err = tls_from_env(builder(), &env(&[("FLY_RPC_TLS_CERT", "/c.pem")])).unwrap_err();
        assert!(
            err.to_string().contains("FLY_RPC_TLS_CERT") && err.to_string().contains("`tls`"),
            "{err}"
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn half_a_tls_setting_is_refused() {
        let err = tls_from_env(builder(), &env(&[("FLY_RPC_TLS_CERT", "/c.pem")])).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }

    #[cfg(not(feature = "fly-dns"))]
    #[test]
    fn fly_dns_without_the_feature_is_refused_with_the_way_out() {
        let err = fly_dns(builder(), "app".into(), 7878).unwrap_err();
        assert!(
            err.to_string().contains("FLY_RPC_PEERS") && err.to_string().contains("`fly-dns`"),
            "{err}"
        );
    }

    #[test]
    fn on_a_fly_machine_the_port_listens_on_the_private_address_only() {
        let fly = env(&[
            ("FLY_MACHINE_ID", "e784079b449483"),
            ("FLY_PRIVATE_IP", "fdaa:0:1:a7b:1::2"),
        ]);
        let built = private_address_from_env(builder(), &fly, 7878).unwrap();
        assert_eq!(
            built.listen,
            Some("[fdaa:0:1:a7b:1::2]:7878".parse().unwrap())
        );
        // FLY_RPC_LISTEN chooses otherwise; insecure stays on loopback.
        let chosen = env(&[
            ("FLY_PRIVATE_IP", "fdaa::2"),
            ("FLY_RPC_LISTEN", "[::]:7000"),
        ]);
        assert_eq!(
            private_address_from_env(builder(), &chosen, 7000)
                .unwrap()
                .listen,
            None
        );
        let insecure = env(&[("FLY_PRIVATE_IP", "fdaa::2"), ("FLY_RPC_INSECURE", "true")]);
        assert_eq!(
            private_address_from_env(builder(), &insecure, 7878)
                .unwrap()
                .listen,
            None
        );
        // Off Fly nothing changes.
        assert_eq!(
            private_address_from_env(builder(), &env(&[]), 7878)
                .unwrap()
                .listen,
            None
        );
    }

    #[test]
    fn a_fly_machine_without_or_with_a_bad_private_address_fails_naming_it() {
        let missing = env(&[("FLY_MACHINE_ID", "e784079b449483")]);
        let err = private_address_from_env(builder(), &missing, 7878).unwrap_err();
        assert!(
            matches!(err, Error::Config(ref m) if m.starts_with("FLY_PRIVATE_IP is not set")),
            "{err}"
        );
        let bad = env(&[("FLY_PRIVATE_IP", "fdaa::zz")]);
        let err = private_address_from_env(builder(), &bad, 7878).unwrap_err();
        assert!(
            matches!(err, Error::Config(ref m) if m.contains("FLY_PRIVATE_IP \"fdaa::zz\"")),
            "{err}"
        );
    }

    #[test]
    fn dns_discovery_without_a_region_fails_naming_fly_region() {
        let err = discovery_from_env(builder(), &env(&[("FLY_APP_NAME", "todo")]), 7878)
            .expect_err("refused");
        assert!(
            matches!(err, Error::Config(ref m) if m.starts_with("FLY_REGION is not set")),
            "{err}"
        );
    }

    #[cfg(feature = "fly-dns")]
    #[test]
    // Discovery through real DNS answers: tests/fly_dns.rs.
    fn fly_dns_with_the_feature_builds_a_resolver() {
        assert!(fly_dns(builder(), "app".into(), 7878).is_ok());
    }
}
