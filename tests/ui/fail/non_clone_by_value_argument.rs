use db_retry::db_retry;
use sqlx::PgPool;

pub struct NewUser {
    pub name: String,
    pub email: String,
}

#[db_retry]
async fn insert_user(pool: &PgPool, user: NewUser) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id")
        .bind(user.name)
        .bind(user.email)
        .fetch_one(pool)
        .await
}

fn main() {}
