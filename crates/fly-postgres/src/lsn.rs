//! PostgreSQL WAL positions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in the PostgreSQL write-ahead log (a `pg_lsn`).
///
/// PostgreSQL prints an LSN as two hexadecimal halves, `X/Y`, where `X` is the
/// high 32 bits and `Y` the low 32 bits. Comparing that text is wrong
/// (`"0/A" > "0/10"`), so `Lsn` keeps the plain `u64` and orders by it.
///
/// ```
/// use fly_postgres::Lsn;
///
/// let a: Lsn = "0/16B3748".parse()?;
/// let b: Lsn = "1/0".parse()?;
/// assert!(a < b);
/// assert_eq!(b.as_u64(), 1 << 32);
/// assert_eq!(b.to_string(), "1/0");
/// # Ok::<(), fly_postgres::LsnParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u64);

impl Lsn {
    /// The zero position, `0/0`, before any WAL.
    pub const ZERO: Lsn = Lsn(0);

    /// Wraps a raw 64-bit position.
    pub const fn new(raw: u64) -> Self {
        Lsn(raw)
    }

    /// The raw 64-bit position, equal to `(lsn - '0/0')::numeric` in SQL.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for Lsn {
    fn from(raw: u64) -> Self {
        Lsn(raw)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> Self {
        lsn.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a text is not a valid `X/Y` LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LsnParseError {
    /// The text was empty.
    #[error("invalid LSN: empty text")]
    Empty,
    /// There was no `/` between the two halves.
    #[error("invalid LSN {0:?}: expected the form X/Y (two hexadecimal numbers)")]
    MissingSlash(String),
    /// A half was empty or had a character that is not a hex digit.
    #[error("invalid LSN {0:?}: each half must be 1 to 8 hexadecimal digits")]
    NotHex(String),
    /// A half does not fit in 32 bits.
    #[error("invalid LSN {0:?}: each half must fit in 32 bits")]
    Overflow(String),
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(LsnParseError::Empty);
        }
        let (hi, lo) = text
            .split_once('/')
            .ok_or_else(|| LsnParseError::MissingSlash(text.to_owned()))?;
        let half = |part: &str| -> Result<u64, LsnParseError> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(LsnParseError::NotHex(text.to_owned()));
            }
            // As PostgreSQL's pg_lsn input: at most 8 characters per half,
            // leading zeros included ("00000000/0" is fine, "000000001/0"
            // is not).
            if part.len() > 8 {
                return Err(LsnParseError::Overflow(text.to_owned()));
            }
            u64::from_str_radix(part, 16).map_err(|_| LsnParseError::NotHex(text.to_owned()))
        };
        Ok(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_eight_characters_per_half_as_postgres_says() {
        assert_eq!("00000000/0".parse::<Lsn>().unwrap(), Lsn::from(0));
        assert_eq!(
            "FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap().as_u64(),
            u64::MAX
        );
        for text in ["000000001/0", "0/000000001", "100000000/0"] {
            assert!(
                matches!(text.parse::<Lsn>(), Err(LsnParseError::Overflow(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn parses_and_prints_postgres_form() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.as_u64(), 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::ZERO);
        assert_eq!(
            "FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap().as_u64(),
            u64::MAX
        );
        assert_eq!("0000000a/0".parse::<Lsn>().unwrap().as_u64(), 0xA << 32);
    }

    #[test]
    fn rejects_malformed_text() {
        assert_eq!("".parse::<Lsn>(), Err(LsnParseError::Empty));
        assert!(matches!(
            "16B374D848".parse::<Lsn>(),
            Err(LsnParseError::MissingSlash(_))
        ));
        assert!(matches!(
            "0/xyz".parse::<Lsn>(),
            Err(LsnParseError::NotHex(_))
        ));
        assert!(matches!("/1".parse::<Lsn>(), Err(LsnParseError::NotHex(_))));
        assert!(matches!("1/".parse::<Lsn>(), Err(LsnParseError::NotHex(_))));
        assert!(matches!(
            "1/2/3".parse::<Lsn>(),
            Err(LsnParseError::NotHex(_))
        ));
        assert!(matches!(
            "+1/2".parse::<Lsn>(),
            Err(LsnParseError::NotHex(_))
        ));
        assert!(matches!(
            "100000000/0".parse::<Lsn>(),
            Err(LsnParseError::Overflow(_))
        ));
        let err = "0/xyz".parse::<Lsn>().unwrap_err().to_string();
        assert!(err.contains("0/xyz"), "{err}");
    }

    #[test]
    fn orders_numerically_not_textually() {
        let small: Lsn = "0/A".parse().unwrap();
        let big: Lsn = "0/10".parse().unwrap();
        assert!(small < big);
        assert!("0/FFFFFFFF".parse::<Lsn>().unwrap() < "1/0".parse::<Lsn>().unwrap());
    }

    #[test]
    fn serde_uses_text_form() {
        let lsn: Lsn = "3/4F".parse().unwrap();
        let json = serde_json::to_string(&lsn).unwrap();
        assert_eq!(json, "\"3/4F\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), lsn);
        assert!(serde_json::from_str::<Lsn>("\"nope\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn print_parse_round_trip(raw: u64) {
            let lsn = Lsn::new(raw);
            proptest::prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,24}") {
            let _ = text.parse::<Lsn>();
        }
    }
}
