//! Serializable statement parameters.

use serde::{Deserialize, Serialize};
use sqlx::types::chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::{Decimal, Uuid};

/// One bound value of an ad-hoc statement, in a form that crosses the RPC
/// and binds with its PostgreSQL type on the primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Param {
    /// SQL `NULL` (bound as an untyped null text).
    Null,
    /// `bool`.
    Bool(bool),
    /// `int8` (PostgreSQL casts it to `int2`/`int4` columns on assignment).
    Int(i64),
    /// `float8`.
    Float(f64),
    /// `text`.
    Text(String),
    /// `bytea`.
    Bytea(Vec<u8>),
    /// `uuid`.
    Uuid(Uuid),
    /// `jsonb`.
    Json(serde_json::Value),
    /// `timestamptz`.
    Timestamptz(DateTime<Utc>),
    /// `date`.
    Date(NaiveDate),
    /// `numeric`, kept as its exact decimal text.
    Numeric(String),
    /// An array of one of the scalar kinds above (all elements the same kind;
    /// nulls allowed).
    Array(Vec<Param>),
}

impl Param {
    /// A `numeric` parameter from any decimal value.
    pub fn numeric(value: Decimal) -> Self {
        Param::Numeric(value.to_string())
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Param::Null => "null",
            Param::Bool(_) => "bool",
            Param::Int(_) => "int8",
            Param::Float(_) => "float8",
            Param::Text(_) => "text",
            Param::Bytea(_) => "bytea",
            Param::Uuid(_) => "uuid",
            Param::Json(_) => "jsonb",
            Param::Timestamptz(_) => "timestamptz",
            Param::Date(_) => "date",
            Param::Numeric(_) => "numeric",
            Param::Array(_) => "array",
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $variant:ident $(as $cast:ty)?),* $(,)?) => {
        $(impl From<$t> for Param {
            fn from(value: $t) -> Self {
                Param::$variant((value $(as $cast)?).into())
            }
        })*
    };
}

from_scalar! {
    bool => Bool,
    i16 => Int as i64,
    i32 => Int as i64,
    i64 => Int,
    u16 => Int as i64,
    u32 => Int as i64,
    f32 => Float as f64,
    f64 => Float,
    String => Text,
    &str => Text,
    Vec<u8> => Bytea,
    &[u8] => Bytea,
    Uuid => Uuid,
    serde_json::Value => Json,
    DateTime<Utc> => Timestamptz,
    NaiveDate => Date,
}

impl From<Decimal> for Param {
    fn from(value: Decimal) -> Self {
        Param::numeric(value)
    }
}

impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(value: Option<T>) -> Self {
        value.map_or(Param::Null, Into::into)
    }
}

macro_rules! from_array {
    ($($t:ty),* $(,)?) => {
        $(impl From<Vec<$t>> for Param {
            fn from(values: Vec<$t>) -> Self {
                Param::Array(values.into_iter().map(Into::into).collect())
            }
        })*
    };
}

from_array!(
    bool,
    i32,
    i64,
    f64,
    String,
    &str,
    Uuid,
    DateTime<Utc>,
    NaiveDate,
    Decimal
);
