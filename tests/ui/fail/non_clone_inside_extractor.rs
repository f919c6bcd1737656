// The missing `Clone` is inside the wrapper a pattern takes apart: the error still names the
// value, on the binding, with the way out for a handler.
use db_retry::db_retry;
use sqlx::PgPool;

pub struct Json<T>(pub T);

pub struct CommentBody {
    pub body: String,
}

#[db_retry]
async fn add_comment(pool: &PgPool, Json(comment): Json<CommentBody>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO comments (body) VALUES ($1) RETURNING id")
        .bind(comment.body)
        .fetch_one(pool)
        .await
}

fn main() {}
