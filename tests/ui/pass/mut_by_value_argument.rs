use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
async fn insert_tags(
    pool: &PgPool,
    mut tags: Vec<String>,
    mut limit: usize,
) -> Result<u64, sqlx::Error> {
    tags.sort();
    tags.dedup();
    let mut inserted = 0;
    for tag in tags {
        if limit == 0 {
            break;
        }
        limit -= 1;
        inserted += sqlx::query("INSERT INTO tags (name) VALUES ($1)")
            .bind(tag)
            .execute(pool)
            .await?
            .rows_affected();
    }
    Ok(inserted)
}

#[db_retry]
async fn append(pool: &PgPool, buffer: &mut Vec<String>) -> Result<(), sqlx::Error> {
    let name: String = sqlx::query_scalar("SELECT name FROM users LIMIT 1")
        .fetch_one(pool)
        .await?;
    buffer.push(name);
    Ok(())
}

fn main() {
    let _ = insert_tags;
    let _ = append;
}
