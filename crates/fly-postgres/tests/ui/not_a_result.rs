use fly_postgres::sqlx::PgConnection;

#[fly_postgres::mutation]
async fn create_todo(tx: &mut PgConnection, title: String) -> i64 {
    let _ = (tx, title);
    1
}

fn main() {}
