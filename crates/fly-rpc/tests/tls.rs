//! TLS and mutual TLS between nodes (the `tls` feature).

mod common;

use std::time::{Duration, Instant};

use common::*;
use fly_rpc::{Error, StaticPeers, TlsConfig};

/// A CA, and certificates it signs for 127.0.0.1.
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// (certificate chain, key) PEM for a node at 127.0.0.1.
    fn node_cert(&self) -> (String, String) {
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn tls(&self, mutual: bool) -> TlsConfig {
        let (cert, key) = self.node_cert();
        let ca = mutual.then_some(self.ca_pem.as_bytes());
        TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), ca).unwrap()
    }
}

#[tokio::test]
async fn mutual_tls_serves_its_own_ca_and_refuses_the_rest() {
    let pki = Pki::new("cluster CA");
    let syd = start(
        node("syd", "syd", &Counters::named("syd")).tls(pki.tls(true)),
        StaticPeers::new(),
    )
    .await;
    let addr = syd.local_addr().expect("rpc listener");

    let lax = start(
        node("lax", "syd", &Counters::named("lax")).tls(pki.tls(true)),
        StaticPeers::new().with("syd", addr),
    )
    .await;
    assert_eq!(
        lax.call_primary(Echo("over tls".into()))
            .await
            .unwrap()
            .text,
        "over tls"
    );

    // A peer whose certificate comes from another CA (and which trusts only
    // that CA) gets no call through, either way round.
    let stranger_pki = Pki::new("another CA");
    let stranger = start(
        node("lax", "syd", &Counters::named("stranger"))
            .tls(stranger_pki.tls(true))
            .rpc_timeout(Duration::from_secs(2)),
        StaticPeers::new().with("syd", addr),
    )
    .await;
    let err = stranger.call_primary(Echo("x".into())).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoNodeInRegion { sent: 0, .. } | Error::Transport { .. }
        ),
        "{err:?}"
    );

    // Plaintext to the TLS port fails, and quickly: no hang.
    let plain = start(
        node("lax", "syd", &Counters::named("plain")).rpc_timeout(Duration::from_secs(2)),
        StaticPeers::new().with("syd", addr),
    )
    .await;
    let started = Instant::now();
    let err = plain.call_primary(Echo("x".into())).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{err:?}");
    assert!(
        err.to_string().contains("TLS"),
        "say what is likely wrong: {err}"
    );
    assert!(
        !matches!(err, Error::Timeout { .. }),
        "plaintext to a TLS port should fail, not time out: {err:?}"
    );
}

#[tokio::test]
async fn server_only_tls_verifies_the_server_against_the_callers_roots() {
    let pki = Pki::new("cluster CA");
    // The server presents a certificate but asks none of its callers.
    let (cert, key) = pki.node_cert();
    let server_tls = TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), None).unwrap();
    let syd = start(
        node("syd", "syd", &Counters::named("syd")).tls(server_tls),
        StaticPeers::new(),
    )
    .await;
    // A caller that trusts the CA gets through; one that only has the
    // system roots does not.
    let trusting = start(
        node("lax", "syd", &Counters::named("lax")).tls(pki.tls(true)),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;
    assert_eq!(
        trusting.call_primary(Echo("ok".into())).await.unwrap().text,
        "ok"
    );
    let (cert, key) = Pki::new("other").node_cert();
    let system_roots_only = start(
        node("lax", "syd", &Counters::named("sys"))
            .tls(TlsConfig::from_pem(cert.as_bytes(), key.as_bytes(), None).unwrap())
            .rpc_timeout(Duration::from_secs(2)),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;
    assert!(
        system_roots_only
            .call_primary(Echo("x".into()))
            .await
            .is_err()
    );
}

#[test]
fn tls_settings_are_checked_with_clear_errors() {
    let err = TlsConfig::from_pem(b"not pem", b"not pem", None).unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    let pki = Pki::new("ca");
    let (cert, _) = pki.node_cert();
    let (_, other_key) = pki.node_cert();
    let err = TlsConfig::from_pem(cert.as_bytes(), other_key.as_bytes(), None).unwrap_err();
    assert!(err.to_string().contains("do not match"), "{err}");
    let err =
        TlsConfig::from_pem(cert.as_bytes(), other_key.as_bytes(), Some(b"junk")).unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}
