//! Rows as JSON objects, so `RETURNING` rows cross the RPC and decode into
//! any `T: Deserialize` on the caller's side.

use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{Decimal, Uuid};
use sqlx::{Column, Row, TypeInfo};

use crate::error::Error;

/// One row as `{column: value}`. Timestamps, dates, uuids and numerics
/// become strings (exact, and what their serde impls read back); bytea
/// becomes an array of bytes.
pub(crate) fn row_to_json(row: &PgRow) -> Result<Map<String, Value>, Error> {
    let mut object = Map::with_capacity(row.columns().len());
    for (i, column) in row.columns().iter().enumerate() {
        let type_name = column.type_info().name();
        let value = column_value(row, i, type_name).map_err(|e| match e {
            Unsupported => Error::Config(format!(
                "column {:?} has type {type_name}, which fly-postgres cannot return; cast it (for example to text) in the statement",
                column.name()
            )),
            Sql(e) => Error::Decode {
                message: format!("column {:?}: {e}", column.name()),
            },
        })?;
        object.insert(column.name().to_owned(), value);
    }
    Ok(object)
}

enum ColumnError {
    Unsupported,
    Sql(sqlx::Error),
}
use ColumnError::{Sql, Unsupported};

fn get<'r, T>(row: &'r PgRow, i: usize) -> Result<Option<T>, ColumnError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get::<Option<T>, _>(i).map_err(Sql)
}

fn json<T: serde::Serialize>(value: Option<T>) -> Value {
    value.map_or(Value::Null, |v| {
        serde_json::to_value(v).unwrap_or(Value::Null)
    })
}

fn text<T: ToString>(value: Option<T>) -> Value {
    value.map_or(Value::Null, |v| Value::String(v.to_string()))
}

fn column_value(row: &PgRow, i: usize, type_name: &str) -> Result<Value, ColumnError> {
    Ok(match type_name {
        "BOOL" => json(get::<bool>(row, i)?),
        "INT2" => json(get::<i16>(row, i)?),
        "INT4" => json(get::<i32>(row, i)?),
        "INT8" => json(get::<i64>(row, i)?),
        "OID" => json(get::<sqlx::postgres::types::Oid>(row, i)?.map(|o| o.0)),
        "FLOAT4" => json(get::<f32>(row, i)?),
        "FLOAT8" => json(get::<f64>(row, i)?),
        "NUMERIC" => text(get::<Decimal>(row, i)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => json(get::<String>(row, i)?),
        "BYTEA" => json(get::<Vec<u8>>(row, i)?),
        "UUID" => text(get::<Uuid>(row, i)?),
        "JSON" | "JSONB" => get::<Value>(row, i)?.unwrap_or(Value::Null),
        "TIMESTAMPTZ" => json(get::<DateTime<Utc>>(row, i)?),
        "TIMESTAMP" => json(get::<NaiveDateTime>(row, i)?),
        "DATE" => json(get::<NaiveDate>(row, i)?),
        "TIME" => json(get::<NaiveTime>(row, i)?),
        "VOID" => Value::Null,
        "BOOL[]" => json(get::<Vec<Option<bool>>>(row, i)?),
        "INT2[]" => json(get::<Vec<Option<i16>>>(row, i)?),
        "INT4[]" => json(get::<Vec<Option<i32>>>(row, i)?),
        "INT8[]" => json(get::<Vec<Option<i64>>>(row, i)?),
        "FLOAT4[]" => json(get::<Vec<Option<f32>>>(row, i)?),
        "FLOAT8[]" => json(get::<Vec<Option<f64>>>(row, i)?),
        "NUMERIC[]" => json(get::<Vec<Option<Decimal>>>(row, i)?.map(|v| {
            v.into_iter()
                .map(|d| d.map(|d| d.to_string()))
                .collect::<Vec<_>>()
        })),
        "TEXT[]" | "VARCHAR[]" | "BPCHAR[]" | "NAME[]" => json(get::<Vec<Option<String>>>(row, i)?),
        "BYTEA[]" => json(get::<Vec<Option<Vec<u8>>>>(row, i)?),
        "UUID[]" => json(get::<Vec<Option<Uuid>>>(row, i)?),
        "JSON[]" | "JSONB[]" => json(get::<Vec<Option<Value>>>(row, i)?),
        "TIMESTAMPTZ[]" => json(get::<Vec<Option<DateTime<Utc>>>>(row, i)?),
        "DATE[]" => json(get::<Vec<Option<NaiveDate>>>(row, i)?),
        _ => return Err(Unsupported),
    })
}
