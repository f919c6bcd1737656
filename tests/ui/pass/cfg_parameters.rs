// A parameter that `#[cfg]` configures away takes its per-attempt rebinding with it.
use async_trait::async_trait;
use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

#[db_retry]
async fn find(
    pool: &PgPool,
    id: i64,
    #[cfg(any())] tag: String,
    #[cfg(any())] scratch: &mut Vec<u8>,
    #[cfg(all())] name: String,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT $2 || name FROM users WHERE id = $1")
        .bind(id)
        .bind(name)
        .fetch_one(pool)
        .await
}

#[async_trait]
pub trait Users {
    async fn find(&self, conn: &PgPool, #[cfg(any())] tag: String, id: i64) -> Result<String, sqlx::Error>;
}

pub struct PgUsers;

#[async_trait]
impl Users for PgUsers {
    #[db_retry]
    async fn find(
        &self,
        #[acquire] conn: &mut PgConnection,
        #[cfg(any())] tag: String,
        id: i64,
    ) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await
    }
}

fn main() {
    let _ = find;
}
