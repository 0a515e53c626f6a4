//! Pointing `DATABASE_URL` at the nearest database, as on Fly.io.

use url::{Host, Url};

use fly_rpc::Regions;

use crate::error::Error;

const NEAREST: &str = "top1.nearest.of.";
const SECOND_NEAREST: &str = "top2.nearest.of.";
const FLYCAST: &str = ".flycast";

/// The port of a Fly Postgres replica (5432 reaches the primary through the
/// cluster's proxy; 5433 reaches the local server, replica or not).
pub const REPLICA_PORT: u16 = 5433;

/// Reads `DATABASE_URL` and, when rewriting is on, rewrites it for this
/// instance's region with [`rewrite_database_url`].
///
/// Rewriting is on when `FLY_POSTGRES_REWRITE_URL` is `1`/`true`, off when it
/// is `0`/`false`, and otherwise on exactly when `FLY_APP_NAME` is set (that
/// is, when running on Fly.io; the Elixir library did it in prod builds).
/// Regions come from [`Regions::from_env`].
pub fn database_url_from_env() -> Result<String, Error> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(Error::MissingEnv {
            name: "DATABASE_URL",
            hint: " (a postgres:// URL of the app's database)",
        })?;
    let rewrite = match std::env::var("FLY_POSTGRES_REWRITE_URL").ok().as_deref() {
        Some("1" | "true" | "yes" | "on") => true,
        Some("0" | "false" | "no" | "off") => false,
        Some(other) => {
            return Err(Error::InvalidDatabaseUrl {
                reason: format!("FLY_POSTGRES_REWRITE_URL must be true or false, not {other:?}"),
            });
        }
        None => std::env::var_os("FLY_APP_NAME").is_some_and(|v| !v.is_empty()),
    };
    if rewrite {
        rewrite_database_url(&url, &Regions::from_env())
    } else {
        parse(&url).map(|_| url)
    }
}

/// Rewrites a Fly Postgres URL so this instance reaches its nearest database:
///
/// - the host gets the `top1.nearest.of.` prefix (the nearest instance of the
///   database app), unless it has it; `top2.nearest.of.` becomes
///   `top1.nearest.of.`; IP addresses keep their host;
/// - a Flycast host (`<db>.flycast`, what `fly postgres attach` writes)
///   becomes `top1.nearest.of.<db>.internal`, as `<db>.internal` does: a
///   Flycast address goes through Fly's proxy, which balances over the
///   database's machines and may answer from another region, while the
///   `top1.nearest.of` name is the nearest machine itself;
/// - outside the primary region the port becomes [`REPLICA_PORT`] (that
///   machine's own server: the region's replica), in the primary region it
///   is kept (5432: the leader, through the cluster's proxy).
///
/// User, password, database and query parameters are kept byte for byte.
/// A Flycast host of another shape than `<db>.flycast` is an
/// [`Error::InvalidDatabaseUrl`]: the database app's name cannot be told.
///
/// ```
/// use fly_rpc::Regions;
/// use fly_postgres::rewrite_database_url;
///
/// let url = "postgres://app:s%40cret@my-db.internal:5432/app?sslmode=disable";
/// assert_eq!(
///     rewrite_database_url(url, &Regions::new("lax", "syd"))?,
///     "postgres://app:s%40cret@top1.nearest.of.my-db.internal:5433/app?sslmode=disable"
/// );
/// assert_eq!(
///     rewrite_database_url(url, &Regions::new("syd", "syd"))?,
///     "postgres://app:s%40cret@top1.nearest.of.my-db.internal:5432/app?sslmode=disable"
/// );
/// // `fly postgres attach` writes a Flycast address: the same result.
/// let flycast = "postgres://app:s%40cret@my-db.flycast:5432/app?sslmode=disable";
/// assert_eq!(
///     rewrite_database_url(flycast, &Regions::new("lax", "syd"))?,
///     "postgres://app:s%40cret@top1.nearest.of.my-db.internal:5433/app?sslmode=disable"
/// );
/// # Ok::<(), fly_postgres::Error>(())
/// ```
pub fn rewrite_database_url(url: &str, regions: &Regions) -> Result<String, Error> {
    let mut parsed = parse(url)?;
    // The url crate keeps an IPv4 host of a postgres:// URL as a domain:
    // an address is kept as it is all the same.
    if let Some(Host::Domain(host)) = parsed
        .host()
        .filter(|h| !matches!(h, Host::Domain(d) if d.parse::<std::net::IpAddr>().is_ok()))
    {
        // Host names are case-insensitive; the prefixes are matched so.
        let lower = host.to_ascii_lowercase();
        let new_host = if lower.contains(FLYCAST) {
            Some(format!("{NEAREST}{}.internal", flycast_app(host)?))
        } else if lower.starts_with(NEAREST) {
            None
        } else if lower.starts_with(SECOND_NEAREST) {
            Some(format!("{NEAREST}{}", &host[SECOND_NEAREST.len()..]))
        } else {
            Some(format!("{NEAREST}{host}"))
        };
        if let Some(new_host) = new_host {
            parsed
                .set_host(Some(&new_host))
                .map_err(|e| invalid(format!("cannot set host {new_host:?}: {e}")))?;
        }
    }
    if !regions.is_primary() {
        parsed
            .set_port(Some(REPLICA_PORT))
            .map_err(|()| invalid("cannot set the port".into()))?;
    }
    Ok(parsed.into())
}

/// The database app of a `<db>.flycast` host (lowercase: DNS names are
/// case-insensitive).
fn flycast_app(host: &str) -> Result<String, Error> {
    let lower = host.to_ascii_lowercase();
    let name = lower
        .strip_suffix(FLYCAST)
        .or_else(|| lower.strip_suffix(".flycast."))
        .filter(|name| !name.is_empty() && !name.contains('.'))
        .map(str::to_owned);
    name.ok_or_else(|| {
        invalid(format!(
            "cannot tell the database app from the Flycast host {host:?} (expected \
             <db>.flycast): give this region's database URL and set \
             FLY_POSTGRES_REWRITE_URL=false"
        ))
    })
}

pub(crate) fn parse(url: &str) -> Result<Url, Error> {
    // libpq accepts `host1:port1,host2:port2`; the url crate would call it
    // an invalid port. Say what is wrong instead.
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hosts.contains(',') {
        return Err(invalid(
            "multi-host URLs (host1,host2,...) are not supported: give the one host of the \
             database (on Fly.io, the rewrite picks the nearest instance)"
                .into(),
        ));
    }
    // The url crate's errors never echo the input, so no password leaks.
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(invalid(format!(
            "scheme must be postgres:// or postgresql://, not {}://",
            parsed.scheme()
        )));
    }
    match parsed.host_str() {
        Some(host) if !host.is_empty() => Ok(parsed),
        _ => Err(invalid("the URL has no host".into())),
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidDatabaseUrl { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lax() -> Regions {
        Regions::new("lax", "syd")
    }
    fn syd() -> Regions {
        Regions::new("syd", "syd")
    }

    #[test]
    fn adds_nearest_prefix_and_replica_port() {
        let url = "postgres://some-user:some-pass@my-app-db.internal:5432/some_app";
        assert_eq!(
            rewrite_database_url(url, &syd()).unwrap(),
            "postgres://some-user:some-pass@top1.nearest.of.my-app-db.internal:5432/some_app"
        );
        assert_eq!(
            rewrite_database_url(url, &lax()).unwrap(),
            "postgres://some-user:some-pass@top1.nearest.of.my-app-db.internal:5433/some_app"
        );
    }

    #[test]
    fn top1_is_kept_and_top2_becomes_top1() {
        let top1 = "postgres://u:p@top1.nearest.of.db.internal:5432/a";
        assert_eq!(rewrite_database_url(top1, &syd()).unwrap(), top1);
        let top2 = "postgres://u:p@top2.nearest.of.db.internal:5432/a";
        assert_eq!(rewrite_database_url(top2, &syd()).unwrap(), top1);
    }

    #[test]
    fn flycast_hosts_become_the_nearest_machine_as_internal_ones_do() {
        // `fly postgres attach` today (Flycast) and before (.internal): one
        // result for each region.
        for attached in [
            "postgres://u:p@my-db.flycast:5432/a?sslmode=disable",
            "postgres://u:p@my-db.internal:5432/a?sslmode=disable",
        ] {
            assert_eq!(
                rewrite_database_url(attached, &syd()).unwrap(),
                "postgres://u:p@top1.nearest.of.my-db.internal:5432/a?sslmode=disable",
                "{attached} in the primary region"
            );
            assert_eq!(
                rewrite_database_url(attached, &lax()).unwrap(),
                "postgres://u:p@top1.nearest.of.my-db.internal:5433/a?sslmode=disable",
                "{attached} in a replica region"
            );
        }
        assert_eq!(
            rewrite_database_url("postgres://u:p@My-DB.FLYCAST:5432/a", &lax()).unwrap(),
            "postgres://u:p@top1.nearest.of.my-db.internal:5433/a"
        );
    }

    #[test]
    fn a_flycast_host_of_another_shape_is_a_typed_error() {
        for url in [
            "postgres://u:secret@a.b.flycast:5432/a",
            "postgres://u:secret@.flycast:5432/a",
            "postgres://u:secret@my-db.flycast.example.com:5432/a",
        ] {
            let err = rewrite_database_url(url, &lax()).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidDatabaseUrl { reason } if reason.contains("Flycast")),
                "{url}: {err:?}"
            );
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn ip_hosts_keep_their_host() {
        let ip = "postgres://u:p@[fdaa:0:1::3]:5432/a";
        assert_eq!(rewrite_database_url(ip, &syd()).unwrap(), ip);
    }

    #[test]
    fn ip_hosts_are_kept_and_prefixes_match_in_any_case() {
        for url in [
            "postgres://u:p@10.0.0.5:5432/db",
            "postgres://u:p@[fdaa:0:1::3]:5432/db",
        ] {
            assert_eq!(rewrite_database_url(url, &syd()).unwrap(), url);
        }
        assert_eq!(
            rewrite_database_url("postgres://u:p@10.0.0.5:5432/db", &lax()).unwrap(),
            "postgres://u:p@10.0.0.5:5433/db"
        );
        let upper = "postgres://u:p@TOP2.NEAREST.OF.db.internal:5432/a";
        assert_eq!(
            rewrite_database_url(upper, &syd()).unwrap(),
            "postgres://u:p@top1.nearest.of.db.internal:5432/a"
        );
        let top1 = "postgres://u:p@Top1.Nearest.Of.db.internal:5432/a";
        assert!(
            !rewrite_database_url(top1, &syd())
                .unwrap()
                .contains("top1.nearest.of.top1"),
        );
    }

    #[test]
    fn multi_host_urls_are_refused_by_name() {
        let err = rewrite_database_url("postgres://u:secret@h1:5432,h2:5432/db", &syd())
            .unwrap_err()
            .to_string();
        assert!(err.contains("multi-host"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn keeps_credentials_database_and_query_intact() {
        let url = "postgresql://us%20er:p%2Fa%3As%40s@db.internal/my%2Ddb?sslmode=require&application_name=x%20y";
        let out = rewrite_database_url(url, &lax()).unwrap();
        assert_eq!(
            out,
            "postgresql://us%20er:p%2Fa%3As%40s@top1.nearest.of.db.internal:5433/my%2Ddb?sslmode=require&application_name=x%20y"
        );
    }

    #[test]
    fn malformed_urls_are_typed_errors_without_the_password() {
        for bad in [
            "",
            "not a url",
            "mysql://u:secret@h/db",
            "postgres:///db",
            "postgres://u:secret@:5432/db",
        ] {
            let err = rewrite_database_url(bad, &lax()).unwrap_err();
            assert!(
                matches!(err, Error::InvalidDatabaseUrl { .. }),
                "{bad:?}: {err:?}"
            );
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }
}
