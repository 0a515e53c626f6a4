//! The consistency token (version 2): what a client carries between
//! requests so the next one, on any instance or region, sees what the
//! session saw or wrote.
//!
//! It is treated like a credential: compact, URL-safe, authenticated with a
//! key derived from the cluster secret, and holding per database (its system
//! identifier) the timeline and the LSN. A token that does not verify is
//! ignored, never waited on and never echoed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::lsn::Lsn;
use crate::wal_position::WalPosition;

/// The purpose the token keys are derived for.
pub(crate) const KEY_CONTEXT: &str = "fly-postgres consistency token v2";
/// Longer tokens are refused before any decoding.
pub(crate) const MAX_TOKEN_LEN: usize = 1024;
const VERSION: u8 = 2;
const MAX_ENTRIES: usize = 8;
const ENTRY_LEN: usize = 8 + 4 + 8;
const TAG_LEN: usize = 16;

/// One database's position in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) system_id: u64,
    pub(crate) position: WalPosition,
}

/// A verified token's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Token {
    entries: Vec<Entry>,
}

/// Why a token was ignored: the `reason` label of
/// `fly_postgres_consistency_tokens_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    Oversized,
    Malformed,
    Version,
    BadSignature,
    /// A plain LSN (version 1), not accepted on this layer.
    PlainLsn,
}

impl Rejected {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Rejected::Oversized => "oversized",
            Rejected::Malformed => "malformed",
            Rejected::Version => "version",
            Rejected::BadSignature => "bad_signature",
            Rejected::PlainLsn => "plain_lsn",
        }
    }
}

impl Token {
    /// The position recorded for the database `system_id`.
    pub(crate) fn get(&self, system_id: u64) -> Option<WalPosition> {
        self.entries
            .iter()
            .find(|e| e.system_id == system_id)
            .map(|e| e.position)
    }

    /// Raises the entry of `system_id` to `position` (a later timeline, or
    /// the same timeline further on); returns whether it rose.
    pub(crate) fn raise(&mut self, system_id: u64, position: WalPosition) -> bool {
        let full = self.entries.len() >= MAX_ENTRIES;
        match self.entries.iter_mut().find(|e| e.system_id == system_id) {
            Some(entry) if position.is_after(entry.position) => {
                entry.position = position;
                true
            }
            Some(_) => false,
            None if !full => {
                self.entries.push(Entry {
                    system_id,
                    position,
                });
                true
            }
            None => false,
        }
    }

    /// Takes every entry of `other` that is later than this token's.
    pub(crate) fn merge(&mut self, other: &Token) {
        for entry in &other.entries {
            self.raise(entry.system_id, entry.position);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The signed text form, with `key`.
    pub(crate) fn encode(&self, key: &[u8; 32]) -> String {
        let mut bytes = Vec::with_capacity(2 + self.entries.len() * ENTRY_LEN + TAG_LEN);
        bytes.push(VERSION);
        bytes.push(self.entries.len() as u8);
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.system_id.to_be_bytes());
            bytes.extend_from_slice(&entry.position.timeline.unwrap_or(0).to_be_bytes());
            bytes.extend_from_slice(&entry.position.lsn.as_u64().to_be_bytes());
        }
        let tag = mac(key, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses and verifies `text` with each of `keys` (current first, then
    /// the previous secret's, during a rotation).
    pub(crate) fn decode(text: &str, keys: &[[u8; 32]]) -> Result<Token, Rejected> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(Rejected::Oversized);
        }
        if text.contains('/') && text.parse::<Lsn>().is_ok() {
            return Err(Rejected::PlainLsn);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| Rejected::Malformed)?;
        let (&version, rest) = bytes.split_first().ok_or(Rejected::Malformed)?;
        if version != VERSION {
            return Err(Rejected::Version);
        }
        let (&count, rest) = rest.split_first().ok_or(Rejected::Malformed)?;
        let count = usize::from(count);
        if count > MAX_ENTRIES || rest.len() != count * ENTRY_LEN + TAG_LEN {
            return Err(Rejected::Malformed);
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let verified = keys
            .iter()
            .any(|key| mac(key, body).verify_truncated_left(tag).is_ok());
        if !verified {
            return Err(Rejected::BadSignature);
        }
        let entries = rest[..count * ENTRY_LEN]
            .chunks_exact(ENTRY_LEN)
            .map(|chunk| {
                let (system_id, rest) = chunk.split_at(8);
                let (timeline, lsn) = rest.split_at(4);
                let timeline = u32::from_be_bytes(timeline.try_into().unwrap_or_default());
                Entry {
                    system_id: u64::from_be_bytes(system_id.try_into().unwrap_or_default()),
                    position: WalPosition::new(
                        (timeline > 0).then_some(timeline),
                        Lsn::new(u64::from_be_bytes(lsn.try_into().unwrap_or_default())),
                    ),
                }
            })
            .collect();
        Ok(Token { entries })
    }
}

fn mac(key: &[u8; 32], bytes: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(bytes);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const OTHER: [u8; 32] = [8; 32];

    fn at(timeline: u32, lsn: u64) -> WalPosition {
        WalPosition::new(Some(timeline), Lsn::new(lsn))
    }

    #[test]
    fn round_trips_and_verifies_with_any_accepted_key() {
        let mut token = Token::default();
        assert!(token.raise(42, at(1, 0x16B3748)));
        assert!(token.raise(43, at(2, 9)));
        let text = token.encode(&KEY);
        assert!(text.len() < 80, "{text}");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Token::decode(&text, &[KEY]), Ok(token.clone()));
        assert_eq!(Token::decode(&text, &[OTHER, KEY]), Ok(token));
        assert_eq!(Token::decode(&text, &[OTHER]), Err(Rejected::BadSignature));
    }

    #[test]
    fn bad_tokens_are_told_apart_and_never_panic() {
        let mut token = Token::default();
        token.raise(1, at(1, 100));
        let text = token.encode(&KEY);
        // Any changed character breaks it.
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(Token::decode(&changed, &[KEY]).is_err(), "{changed}");
        }
        assert_eq!(
            Token::decode(&text[..text.len() - 3], &[KEY]),
            Err(Rejected::Malformed)
        );
        assert_eq!(
            Token::decode(&"A".repeat(2000), &[KEY]),
            Err(Rejected::Oversized)
        );
        assert_eq!(Token::decode("0/16B3748", &[KEY]), Err(Rejected::PlainLsn));
        assert_eq!(Token::decode("", &[KEY]), Err(Rejected::Malformed));
        assert_eq!(Token::decode("!!", &[KEY]), Err(Rejected::Malformed));
        let v1 = URL_SAFE_NO_PAD.encode([1u8, 0]);
        assert_eq!(Token::decode(&v1, &[KEY]), Err(Rejected::Version));
        let many = URL_SAFE_NO_PAD.encode([2u8, 200]);
        assert_eq!(Token::decode(&many, &[KEY]), Err(Rejected::Malformed));
    }

    #[test]
    fn raising_keeps_the_latest_position() {
        let mut token = Token::default();
        token.raise(1, at(1, 100));
        assert!(!token.raise(1, at(1, 50)));
        assert!(token.raise(1, at(2, 60)));
        assert_eq!(token.get(1), Some(at(2, 60)));
        assert!(!token.raise(1, at(1, 500)));
        let mut other = Token::default();
        other.raise(1, at(2, 70));
        other.raise(2, at(1, 5));
        token.merge(&other);
        assert_eq!(token.get(1), Some(at(2, 70)));
        assert_eq!(token.get(2), Some(at(1, 5)));
        assert_eq!(token.get(3), None);
    }
}
