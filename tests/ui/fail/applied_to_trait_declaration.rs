use db_retry::db_retry;

pub trait UserRepo {
    #[db_retry]
    async fn count(&self) -> Result<i64, sqlx::Error>;
}

fn main() {}
