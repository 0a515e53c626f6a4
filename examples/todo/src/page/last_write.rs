//! The timing of a browser's last write, carried across the redirect in a
//! short-lived cookie so the page it lands on can show it.

use std::time::Duration;

use axum::http::HeaderMap;
use fly_postgres::WriteTimings;

/// The cookie's name.
pub(crate) const COOKIE: &str = "todo_last_write";

/// What the page shows about the last write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LastWrite {
    pub(crate) total_ms: f64,
    /// `None` when the write ran in this region (no RPC).
    pub(crate) rpc_ms: Option<f64>,
    pub(crate) primary_ms: Option<f64>,
    /// `None` when the wait was skipped or timed out.
    pub(crate) wait_ms: Option<f64>,
    /// The write committed, but this region's replica did not replay it
    /// within the wait: the page may not show it yet.
    pub(crate) late: bool,
}

impl LastWrite {
    pub(crate) fn of(timings: &WriteTimings) -> Self {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        LastWrite {
            total_ms: ms(timings.total),
            rpc_ms: timings.rpc.map(ms),
            primary_ms: timings.primary.map(ms),
            wait_ms: timings.replication_wait.map(ms),
            late: false,
        }
    }

    /// A write that committed after `total` without this region's replica
    /// replaying it in time.
    pub(crate) fn late(total: Duration) -> Self {
        LastWrite {
            total_ms: (total.as_secs_f64() * 1e6).round() / 1e3,
            rpc_ms: None,
            primary_ms: None,
            wait_ms: None,
            late: true,
        }
    }

    /// `Set-Cookie` value: numbers only, `-` for none.
    pub(crate) fn set_cookie(&self) -> String {
        let field = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        format!(
            "{COOKIE}={:.3}/{}/{}/{}/{}; Path=/; Max-Age=300; HttpOnly; SameSite=Lax",
            self.total_ms,
            field(self.rpc_ms),
            field(self.primary_ms),
            field(self.wait_ms),
            if self.late { "late" } else { "ok" }
        )
    }

    /// From the request's cookies; anything malformed is ignored (the
    /// cookie is a convenience, never trusted for anything).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)?
            .1;
        let mut parts = value.split('/');
        let number = |text: &str| -> Option<Option<f64>> {
            if text == "-" {
                return Some(None);
            }
            let v: f64 = text.parse().ok()?;
            (v.is_finite() && (0.0..1e7).contains(&v)).then_some(Some(v))
        };
        let total_ms = number(parts.next()?)??;
        let rpc_ms = number(parts.next()?)?;
        let primary_ms = number(parts.next()?)?;
        let wait_ms = number(parts.next()?)?;
        let late = match parts.next()? {
            "ok" => false,
            "late" => true,
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(LastWrite {
            total_ms,
            rpc_ms,
            primary_ms,
            wait_ms,
            late,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn round_trips_and_ignores_forgeries() {
        let last = LastWrite {
            total_ms: 62.5,
            rpc_ms: Some(61.25),
            primary_ms: Some(0.5),
            wait_ms: None,
            late: false,
        };
        for last in [last, LastWrite::late(Duration::from_millis(5062))] {
            let set = last.set_cookie();
            let pair = set.split(';').next().unwrap();
            assert_eq!(
                LastWrite::from_headers(&headers(&format!("a=b; {pair}"))),
                Some(last)
            );
        }
        for forged in [
            "todo_last_write=<script>",
            "todo_last_write=1/2/3/4",
            "todo_last_write=1/2/3/4/5",
            "todo_last_write=1/-/-/-/ok/6",
            "todo_last_write=-1/-/-/-/ok",
            "todo_last_write=NaN/-/-/-/ok",
            "todo_last_write=1e99/-/-/-/ok",
        ] {
            assert_eq!(LastWrite::from_headers(&headers(forged)), None, "{forged}");
        }
    }
}
