// A by-value argument whose type is `Clone` only if something deep inside it is: the message is
// about the argument, not about the nested type's missing impl.
use db_retry::db_retry;
use sqlx::PgPool;

pub struct Body {
    pub text: String,
}

#[db_retry]
async fn add_all(pool: &PgPool, bodies: Vec<Option<Body>>) -> Result<u64, sqlx::Error> {
    let mut added = 0;
    for body in bodies.into_iter().flatten() {
        added += sqlx::query("INSERT INTO bodies (text) VALUES ($1)")
            .bind(body.text)
            .execute(pool)
            .await?
            .rows_affected();
    }
    Ok(added)
}

fn main() {}
