use fly_postgres::Error;

#[fly_postgres::mutation]
async fn create_todo(title: String) -> Result<i64, Error> {
    let _ = title;
    Ok(1)
}

fn main() {}
