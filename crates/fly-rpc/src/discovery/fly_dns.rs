//! Fly.io's private-network DNS: `<region>.<app>.internal` lists the
//! instances of a region.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use super::Discovery;
use crate::error::Error;

/// How long an answer is kept at least, so a zero TTL does not turn every
/// call into a DNS query.
const MIN_CACHE: Duration = Duration::from_millis(500);

/// Instances of region `r` are the AAAA (and A) records of
/// `r.<app>.internal`, reached on the node's RPC port. Answers are cached for
/// their TTL and looked up again after a connection failure.
#[derive(Debug)]
pub struct FlyDns {
    app: String,
    port: u16,
    resolver: TokioResolver,
    cache: Mutex<HashMap<String, (Vec<SocketAddr>, Instant)>>,
}

impl FlyDns {
    /// Uses the system's resolver configuration (`/etc/resolv.conf`; on Fly
    /// it names the private network's DNS server).
    pub fn new(app: impl Into<String>, port: u16) -> Result<Self, Error> {
        let mut builder = Resolver::builder_tokio()
            .map_err(|e| Error::Config(format!("cannot read the system DNS configuration: {e}")))?;
        let options = builder.options_mut();
        *options = tuned(options.clone());
        let resolver = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot start the DNS resolver: {e}")))?;
        Ok(Self::with_resolver(app, port, resolver))
    }

    /// Uses one DNS server (tests, or a resolver other than the system's).
    pub fn with_nameserver(
        app: impl Into<String>,
        port: u16,
        nameserver: SocketAddr,
    ) -> Result<Self, Error> {
        let mut server = NameServerConfig::udp(nameserver.ip());
        server.connections = vec![{
            let mut udp = ConnectionConfig::udp();
            udp.port = nameserver.port();
            udp
        }];
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(tuned(ResolverOpts::default()))
            .build()
            .map_err(|e| Error::Config(format!("cannot start the DNS resolver: {e}")))?;
        Ok(Self::with_resolver(app, port, resolver))
    }

    fn with_resolver(app: impl Into<String>, port: u16, resolver: TokioResolver) -> Self {
        FlyDns {
            app: app.into(),
            port,
            resolver,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn name(&self, region: &str) -> String {
        // The trailing dot makes the name absolute: no search domains.
        format!("{region}.{}.internal.", self.app)
    }

    async fn resolve(&self, region: &str) -> Result<Vec<SocketAddr>, Error> {
        let cached = self.lock().get(region).cloned();
        if let Some((addrs, until)) = &cached
            && *until > Instant::now()
        {
            return Ok(addrs.clone());
        }
        let (addrs, until) = match self.resolver.lookup_ip(self.name(region)).await {
            Ok(lookup) => {
                let mut addrs: Vec<SocketAddr> = lookup
                    .iter()
                    .map(|ip| SocketAddr::new(ip, self.port))
                    .collect();
                addrs.sort();
                addrs.dedup();
                (addrs, lookup.valid_until().max(Instant::now() + MIN_CACHE))
            }
            Err(e) if e.is_no_records_found() => (Vec::new(), Instant::now() + MIN_CACHE),
            Err(e) => {
                // A DNS hiccup must not stop every call: the last answer is
                // better than none.
                if let Some((addrs, _)) = cached.filter(|(addrs, _)| !addrs.is_empty()) {
                    tracing::warn!(region, error = %e, "DNS lookup failed; using the last answer");
                    return Ok(addrs);
                }
                return Err(Error::Discovery {
                    region: region.to_owned(),
                    message: format!("DNS lookup of {} failed: {e}", self.name(region)),
                });
            }
        };
        self.lock()
            .insert(region.to_owned(), (addrs.clone(), until));
        Ok(addrs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<SocketAddr>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn tuned(mut options: ResolverOpts) -> ResolverOpts {
    // We cache ourselves, so a failure can force a fresh answer.
    options.cache_size = 0;
    options.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    options
}

impl Discovery for FlyDns {
    fn instances<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<SocketAddr>, Error>> {
        self.resolve(region).boxed()
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        async move {
            // Fly publishes the app's regions as a TXT record.
            let name = format!("regions.{}.internal.", self.app);
            let txt = self
                .resolver
                .txt_lookup(name.clone())
                .await
                .map_err(|e| Error::Config(format!("DNS lookup of {name} failed: {e}")))?;
            let mut regions: Vec<String> = txt
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(&txt.txt_data),
                    _ => None,
                })
                .flat_map(|data| data.iter())
                .flat_map(|data| {
                    String::from_utf8_lossy(data)
                        .split(',')
                        .map(|r| r.trim().to_owned())
                        .collect::<Vec<_>>()
                })
                .filter(|r| !r.is_empty())
                .collect();
            regions.sort();
            regions.dedup();
            Ok(regions)
        }
        .boxed()
    }

    fn report_failure(&self, region: &str, _addr: SocketAddr) {
        // Expire the answer (but keep it as a fallback) so the next call
        // looks the region up again.
        if let Some((_, until)) = self.lock().get_mut(region) {
            *until = Instant::now();
        }
    }
}
