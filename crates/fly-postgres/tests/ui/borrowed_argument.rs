use fly_postgres::{Error, sqlx::PgConnection};

#[fly_postgres::mutation]
async fn create_todo(tx: &mut PgConnection, title: &str) -> Result<i64, Error> {
    let _ = (tx, title);
    Ok(1)
}

fn main() {}
