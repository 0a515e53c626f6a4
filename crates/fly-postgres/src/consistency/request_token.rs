//! Where a request carries its token and its consistency mode.

use http::HeaderMap;

use super::mode::{Consistency, UnknownConsistency};
use super::{CONSISTENCY_HEADER, LSN_COOKIE, LSN_HEADER};

/// The token text a request carries: the header wins over the cookie.
/// Values that are not text are treated as absent.
pub(super) fn token_text(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(LSN_HEADER) {
        return value.to_str().ok().map(str::trim);
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LSN_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

/// The mode the request asks for, if it names one.
pub(super) fn requested_mode(
    headers: &HeaderMap,
) -> Result<Option<Consistency>, UnknownConsistency> {
    match headers.get(CONSISTENCY_HEADER) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map_err(|_| UnknownConsistency::NOT_TEXT)?
            .parse()
            .map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn header_wins_over_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(token_text(&h), None);
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=b; fly_lsn=abc; c=d"),
        );
        assert_eq!(token_text(&h), Some("abc"));
        h.insert(LSN_HEADER, HeaderValue::from_static(" xyz "));
        assert_eq!(token_text(&h), Some("xyz"));
    }

    #[test]
    fn modes_come_from_their_header() {
        let mut h = HeaderMap::new();
        assert_eq!(requested_mode(&h), Ok(None));
        h.insert(CONSISTENCY_HEADER, HeaderValue::from_static("strong"));
        assert_eq!(requested_mode(&h), Ok(Some(Consistency::Strong)));
        h.insert(CONSISTENCY_HEADER, HeaderValue::from_static("bogus"));
        assert!(requested_mode(&h).is_err());
    }
}
