use fly_postgres::{Error, sqlx::PgConnection};

/// Not Serialize, not Deserialize: it cannot travel to the primary region.
pub struct Handle(std::fs::File);

#[fly_postgres::mutation]
async fn attach(tx: &mut PgConnection, file: Handle) -> Result<(), Error> {
    let _ = (tx, file);
    Ok(())
}

fn main() {}
