//! Stand-ins for the TLS types when the `tls` feature is off: neither can
//! have a value, so every TLS path is statically absent and the cleartext
//! paths stay the same code.

/// No TLS configuration exists without the feature.
#[derive(Debug, Clone)]
pub(crate) enum TlsConfig {}

/// No TLS acceptor exists without the feature.
#[derive(Debug, Clone)]
pub(crate) enum TlsAcceptor {}
