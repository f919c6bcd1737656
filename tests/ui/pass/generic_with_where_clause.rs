use db_retry::db_retry;
use sqlx::postgres::PgRow;
use sqlx::{Database, PgPool, Pool};

#[db_retry]
pub async fn find_row<'p, T>(pool: &'p PgPool, table: &'p str, id: i64) -> Result<T, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT * FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn label<T: std::fmt::Display + Clone>(
    pool: &PgPool,
    value: T,
) -> Result<String, sqlx::Error> {
    let prefix: String = sqlx::query_scalar("SELECT 'v'").fetch_one(pool).await?;
    Ok(format!("{prefix}{value}"))
}

#[db_retry]
async fn ping<DB>(pool: &Pool<DB>) -> Result<(), sqlx::Error>
where
    DB: Database,
{
    let mut conn = pool.acquire().await?;
    sqlx::Connection::ping(&mut *conn).await
}

#[db_retry]
async fn ping_acquired<DB: Database>(
    #[acquire] conn: &mut DB::Connection,
) -> Result<(), sqlx::Error> {
    sqlx::Connection::ping(conn).await
}

/// The connection type comes from the impl's generics, not the method's.
struct Repo<DB>(std::marker::PhantomData<DB>);

impl<DB: Database> Repo<DB> {
    #[db_retry]
    async fn ping(&self, #[acquire] conn: &mut DB::Connection) -> Result<(), sqlx::Error> {
        sqlx::Connection::ping(conn).await
    }
}

#[derive(sqlx::FromRow)]
struct User {
    id: i64,
    name: String,
}

fn main() {
    let _ = find_row::<User>;
    let _ = label::<u32>;
    let _ = ping::<sqlx::Postgres>;
    let _ = ping_acquired::<sqlx::Sqlite>;
    let _ = Repo::<sqlx::Postgres>::ping;
    let _ = |user: User| (user.id, user.name);
}
