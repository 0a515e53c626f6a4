//! The database host checked once at start: a name that resolves to no
//! address is a misconfiguration (a database app with no machine, a typo
//! in `DATABASE_URL`) that no retry will mend, so the start fails naming
//! the host it tried. A host that resolves but does not answer is not
//! checked here: the repo starts and its reads and waits say so.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::error::Error;

/// How long the lookup may take before the start goes on without it (a
/// DNS server that does not answer is not a wrong name).
const LOOKUP_LIMIT: Duration = Duration::from_secs(5);

/// Fails when the host of `options` is a name with no address.
pub(super) async fn check_resolves(options: &PgConnectOptions) -> Result<(), Error> {
    let host = options.get_host();
    // A socket directory, or an address: nothing to resolve.
    if host.starts_with('/')
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    {
        return Ok(());
    }
    let target = (host.to_owned(), options.get_port());
    match tokio::time::timeout(LOOKUP_LIMIT, tokio::net::lookup_host(target)).await {
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(_) => Ok(()),
            None => Err(unresolved(host, "no address".into())),
        },
        Ok(Err(e)) => Err(unresolved(host, e.to_string())),
        Err(_) => {
            tracing::warn!(
                host,
                "the database host did not resolve within {LOOKUP_LIMIT:?}; starting anyway"
            );
            Ok(())
        }
    }
}

fn unresolved(host: &str, why: String) -> Error {
    let fly_hint = if host.starts_with("top1.nearest.of.") {
        " (on Fly: the name DATABASE_URL was rewritten to; check that the database app \
         has a started machine and that its name is right)"
    } else {
        ""
    };
    Error::InvalidDatabaseUrl {
        reason: format!("the database host {host} resolves to nothing: {why}{fly_hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_and_names_that_resolve_pass_and_a_name_of_nothing_fails_naming_it() {
        for url in [
            "postgres://u@127.0.0.1:5432/d",
            "postgres://u@[::1]:5432/d",
            "postgres://u@localhost:5432/d",
        ] {
            let options: PgConnectOptions = url.parse().unwrap();
            check_resolves(&options).await.unwrap();
        }
        // `.invalid` never resolves (RFC 6761).
        let options: PgConnectOptions = "postgres://u@top1.nearest.of.db.invalid:5433/d"
            .parse()
            .unwrap();
        let error = check_resolves(&options).await.unwrap_err().to_string();
        assert!(
            error.contains("top1.nearest.of.db.invalid resolves to nothing"),
            "{error}"
        );
        assert!(error.contains("on Fly"), "{error}");
    }
}
