use db_retry::db_retry;
use sqlx::PgPool;

trait UserRepo {
    async fn count(&self) -> Result<i64, sqlx::Error>;
    async fn rename(&mut self, id: i64, name: String) -> Result<u64, sqlx::Error>;
}

struct PgUserRepo {
    pool: PgPool,
}

impl UserRepo for PgUserRepo {
    #[db_retry]
    async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await
    }

    #[db_retry(on = contention)]
    async fn rename(&mut self, id: i64, name: String) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("UPDATE users SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn main() {
    let _ = <PgUserRepo as UserRepo>::count;
    let _ = <PgUserRepo as UserRepo>::rename;
}
