use db_retry::db_retry;
use sqlx::PgPool;

pub struct NewUser {
    pub name: String,
}

#[db_retry]
async fn insert_user(pool: &PgPool, (user, team): (NewUser, i64)) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO users (name, team) VALUES ($1, $2) RETURNING id")
        .bind(user.name)
        .bind(team)
        .fetch_one(pool)
        .await
}

fn main() {}
