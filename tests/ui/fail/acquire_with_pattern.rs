use db_retry::db_retry;
use sqlx::PgConnection;

/// Succeeds when a connection can be checked out of the pool.
#[db_retry]
async fn can_connect(#[acquire] _: &mut PgConnection) -> Result<(), sqlx::Error> {
    Ok(())
}

fn main() {}
