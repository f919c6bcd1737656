// Handler-style arguments: the extractor wrappers are not `Clone` (as axum's `Path`, `Json`,
// `State` and an app's `AuthUser` need not be); the patterns are taken apart once and only what
// they bind is cloned for each attempt.
use db_retry::db_retry;
use sqlx::PgPool;

pub struct Path<T>(pub T);
pub struct Json<T>(pub T);
pub struct State<T>(pub T);
pub struct AuthUser {
    pub user_id: i64,
    pub token: String,
}

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
}

#[derive(Clone)]
pub struct NewComment {
    pub body: String,
}

#[db_retry]
pub async fn add_comment(
    State(app): State<AppState>,
    AuthUser { user_id, .. }: AuthUser,
    Path(slug): Path<String>,
    Json(mut comment): Json<NewComment>,
) -> Result<i64, sqlx::Error> {
    comment.body.push('\n');
    sqlx::query_scalar("INSERT INTO comments (article, author, body) VALUES ($1, $2, $3) RETURNING id")
        .bind(slug)
        .bind(user_id)
        .bind(comment.body)
        .fetch_one(&app.pool)
        .await
}

#[db_retry]
pub async fn article_pair(
    pool: &PgPool,
    Path((first, second)): Path<(i64, i64)>,
    (_, limit): (String, i64),
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM articles WHERE id IN ($1, $2) LIMIT $3")
        .bind(first)
        .bind(second)
        .bind(limit)
        .fetch_all(pool)
        .await
}

fn assert_send<T: Send>(_: T) {}

async fn check(app: AppState) {
    assert_send(add_comment(
        State(app.clone()),
        AuthUser {
            user_id: 1,
            token: String::new(),
        },
        Path("slug".to_owned()),
        Json(NewComment {
            body: String::new(),
        }),
    ));
    assert_send(article_pair(&app.pool, Path((1, 2)), (String::new(), 10)));
}

fn main() {
    let _ = check;
}
