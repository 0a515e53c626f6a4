//! Optional TLS for the RPC port (rustls, no OpenSSL): HTTP/2 over TLS with
//! ALPN, and mutual TLS when a CA is given. For networks that are not
//! private; on Fly.io's 6PN the HMAC alone is the usual choice.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

use crate::error::Error;

/// TLS settings of a node, for both its server and its calls to peers.
///
/// - Without a CA: the server presents its certificate, callers verify
///   peers against the system's root certificates.
/// - With a CA: mutual TLS. The server accepts only clients with a
///   certificate from that CA, and callers accept only servers with one,
///   presenting their own certificate.
///
/// Peers are dialed by IP address, so their certificates need that IP in
/// their subject alternative names, unless
/// [`TlsConfig::server_name`] names one that every node's certificate has.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("TLS: {what}: {e}"))
}

impl TlsConfig {
    /// From PEM text: this node's certificate chain and private key, and
    /// optionally the CA that signs every node's certificate (mutual TLS).
    pub fn from_pem(cert_chain: &[u8], key: &[u8], ca: Option<&[u8]>) -> Result<Self, Error> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<_, _>>()
            .map_err(|e| tls_error("the certificate is not valid PEM", e))?;
        if certs.is_empty() {
            return Err(tls_error("the certificate file", "holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| tls_error("the private key is not valid PEM", e))?;
        let roots = ca.map(ca_roots).transpose()?;
        let server = server_config(roots.as_ref(), certs.clone(), key.clone_key())?;
        let client = client_config(roots, certs, key)?;
        Ok(TlsConfig {
            server: Arc::new(server),
            client: Arc::new(client),
            server_name: None,
        })
    }

    /// From PEM files (see [`TlsConfig::from_pem`]).
    pub fn from_files(cert_chain: &Path, key: &Path, ca: Option<&Path>) -> Result<Self, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| tls_error(&format!("reading {}", path.display()), e))
        };
        let ca = ca.map(read).transpose()?;
        TlsConfig::from_pem(&read(cert_chain)?, &read(key)?, ca.as_deref())
    }

    /// Verify every peer's certificate for this name instead of the IP
    /// address it is dialed at (default: the IP).
    pub fn server_name(mut self, name: &str) -> Result<Self, Error> {
        self.server_name = Some(
            ServerName::try_from(name.to_owned())
                .map_err(|e| tls_error(&format!("server name {name:?}"), e))?,
        );
        Ok(self)
    }
}

/// The CA that signs every node's certificate, for mutual TLS.
fn ca_roots(ca: &[u8]) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| tls_error("the CA is not valid PEM", e))?;
        roots
            .add(cert)
            .map_err(|e| tls_error("the CA certificate is unusable", e))?;
    }
    if roots.is_empty() {
        return Err(tls_error("the CA file", "holds no certificate"));
    }
    Ok(Arc::new(roots))
}

/// The server's side: this node's certificate, and with a CA, clients
/// must present one it signed.
fn server_config(
    roots: Option<&Arc<RootCertStore>>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, Error> {
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?;
    let server = match roots {
        Some(roots) => server.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), provider())
                .build()
                .map_err(|e| tls_error("client verifier", e))?,
        ),
        None => server.with_no_client_auth(),
    };
    let mut server = server
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("the certificate and key do not match", e))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// The caller's side: with a CA, servers must have a certificate it
/// signed, and this node presents its own; without, the system's roots.
fn client_config(
    roots: Option<Arc<RootCertStore>>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, Error> {
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?;
    let mut client = match roots {
        Some(roots) => client
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls_error("the client certificate", e))?,
        None => client
            .with_root_certificates(system_roots())
            .with_no_client_auth(),
    };
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(client)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "could not load a system root certificate");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates for fly-rpc TLS");
    roots
}
