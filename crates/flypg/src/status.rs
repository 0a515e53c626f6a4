//! `flypg status`: this node's identity and what it can see of its peers,
//! configured by the same environment as the app, and, with
//! `DATABASE_URL` set, the local database's role and replica lag.

use std::time::Duration;

use fly_postgres::sqlx::{Connection, postgres::PgConnection};
use fly_postgres::{ReplicaLag, ReplicaState};

/// How long the database may take to answer before status says so.
const DATABASE_LIMIT: Duration = Duration::from_secs(3);

pub(crate) async fn run(json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let report = fly_rpc::StatusReport::from_env().await?;
    let database = local_database().await;
    if json {
        let mut value: serde_json::Value = serde_json::from_str(&report.render(true))?;
        if let (Some(database), Some(object)) = (database, value.as_object_mut()) {
            object.insert("database".into(), database_json(&database));
        }
        println!("{value}");
    } else {
        print!("{}", report.render(false));
        if let Some(database) = database {
            println!("{}", database_line(&database));
        }
    }
    Ok(())
}

/// The local database's lag, when the app's `DATABASE_URL` is set.
async fn local_database() -> Option<Result<ReplicaLag, String>> {
    std::env::var_os("DATABASE_URL")?;
    let measured = async {
        let url = fly_postgres::database_url_from_env().map_err(|e| e.to_string())?;
        let mut conn = PgConnection::connect(&url)
            .await
            .map_err(|e| e.to_string())?;
        let lag = ReplicaLag::measure(&mut conn)
            .await
            .map_err(|e| e.to_string());
        let _ = conn.close().await;
        lag
    };
    Some(
        tokio::time::timeout(DATABASE_LIMIT, measured)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {DATABASE_LIMIT:?}"))),
    )
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or_else(
        || "unknown".to_owned(),
        |d| format!("{:.3} s", d.as_secs_f64()),
    )
}

fn database_line(database: &Result<ReplicaLag, String>) -> String {
    match database {
        Err(e) => format!("local database: does not answer ({e})"),
        Ok(lag) if lag.state == ReplicaState::Primary => "local database: the primary".into(),
        Ok(lag) => format!(
            "local database: replica, lag {} ({} bytes), primary last heard {} ago",
            seconds(lag.seconds),
            lag.bytes
                .map_or_else(|| "unknown".to_owned(), |b| b.to_string()),
            seconds(lag.primary_heard),
        ),
    }
}

fn database_json(database: &Result<ReplicaLag, String>) -> serde_json::Value {
    match database {
        Err(e) => serde_json::json!({ "answers": false, "error": e }),
        Ok(lag) => serde_json::json!({
            "answers": true,
            "role": if lag.state == ReplicaState::Primary { "primary" } else { "replica" },
            "lag_seconds": lag.seconds.map(|d| d.as_secs_f64()),
            "lag_bytes": lag.bytes,
            "primary_heard_seconds_ago": lag.primary_heard.map(|d| d.as_secs_f64()),
        }),
    }
}
