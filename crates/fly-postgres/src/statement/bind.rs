//! Binding [`Param`]s to a sqlx query with their PostgreSQL types.

use std::str::FromStr;

use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::types::Decimal;

use super::param::Param;
use crate::error::Error;

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

pub(crate) fn bind<'q>(mut query: PgQuery<'q>, params: &[Param]) -> Result<PgQuery<'q>, Error> {
    for (i, param) in params.iter().enumerate() {
        query = bind_one(query, param)
            .map_err(|e| Error::Config(format!("parameter ${}: {e}", i + 1)))?;
    }
    Ok(query)
}

fn numeric(text: &str) -> Result<Decimal, String> {
    Decimal::from_str(text).map_err(|e| format!("{text:?} is not a numeric value: {e}"))
}

fn bind_one<'q>(query: PgQuery<'q>, param: &Param) -> Result<PgQuery<'q>, String> {
    Ok(match param {
        Param::Null => query.bind(None::<String>),
        Param::Bool(v) => query.bind(*v),
        Param::Int(v) => query.bind(*v),
        Param::Float(v) => query.bind(*v),
        Param::Text(v) => query.bind(v.clone()),
        Param::Bytea(v) => query.bind(v.clone()),
        Param::Uuid(v) => query.bind(*v),
        Param::Json(v) => query.bind(sqlx::types::Json(v.clone())),
        Param::Timestamptz(v) => query.bind(*v),
        Param::Date(v) => query.bind(*v),
        Param::Numeric(v) => query.bind(numeric(v)?),
        Param::Array(items) => bind_array(query, items)?,
    })
}

/// Collects every element as `Option<T>`, or says which one is off.
fn elements<T>(
    items: &[Param],
    kind: &str,
    pick: impl Fn(&Param) -> Option<Result<T, String>>,
) -> Result<Vec<Option<T>>, String> {
    items
        .iter()
        .map(|item| match item {
            Param::Null => Ok(None),
            other => match pick(other) {
                Some(value) => value.map(Some),
                None => Err(format!(
                    "array elements must all be {kind}, found {}",
                    other.kind()
                )),
            },
        })
        .collect()
}

fn bind_array<'q>(query: PgQuery<'q>, items: &[Param]) -> Result<PgQuery<'q>, String> {
    let first = items.iter().find(|p| !matches!(p, Param::Null));
    Ok(match first {
        // All nulls or empty: a text[] binds to any array column by cast.
        None | Some(Param::Null) => query.bind(vec![None::<String>; items.len()]),
        Some(Param::Bool(_)) => query.bind(elements(items, "bool", |p| match p {
            Param::Bool(v) => Some(Ok(*v)),
            _ => None,
        })?),
        Some(Param::Int(_)) => query.bind(elements(items, "int8", |p| match p {
            Param::Int(v) => Some(Ok(*v)),
            _ => None,
        })?),
        Some(Param::Float(_)) => query.bind(elements(items, "float8", |p| match p {
            Param::Float(v) => Some(Ok(*v)),
            _ => None,
        })?),
        Some(Param::Text(_)) => query.bind(elements(items, "text", |p| match p {
            Param::Text(v) => Some(Ok(v.clone())),
            _ => None,
        })?),
        Some(Param::Bytea(_)) => query.bind(elements(items, "bytea", |p| match p {
            Param::Bytea(v) => Some(Ok(v.clone())),
            _ => None,
        })?),
        Some(Param::Uuid(_)) => query.bind(elements(items, "uuid", |p| match p {
            Param::Uuid(v) => Some(Ok(*v)),
            _ => None,
        })?),
        Some(Param::Json(_)) => query.bind(elements(items, "jsonb", |p| match p {
            Param::Json(v) => Some(Ok(sqlx::types::Json(v.clone()))),
            _ => None,
        })?),
        Some(Param::Timestamptz(_)) => query.bind(elements(items, "timestamptz", |p| match p {
            Param::Timestamptz(v) => Some(Ok(*v)),
            _ => None,
        })?),
        Some(Param::Date(_)) => query.bind(elements(items, "date", |p| match p {
            Param::Date(v) => Some(Ok(*v)),
            _ => None,
        })?),
        Some(Param::Numeric(_)) => query.bind(elements(items, "numeric", |p| match p {
            Param::Numeric(v) => Some(numeric(v)),
            _ => None,
        })?),
        Some(Param::Array(_)) => return Err("nested arrays are not supported".into()),
    })
}
