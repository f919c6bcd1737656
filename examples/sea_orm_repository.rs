//! A SeaORM repository: entity queries, not raw SQL, retried through `DbErr`. db-retry looks
//! inside `DbErr` for the sqlx error SeaORM wraps, so a terminated backend, a failover or a
//! serialization failure retries while a unique violation returns at once.
//!
//! Needs the `sea-orm` feature (`db-retry = { version = "0.1", features = ["sea-orm"] }`).
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example sea_orm_repository
//! ```

use db_retry::db_retry;
use sea_orm::entity::prelude::*;
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, IsolationLevel, Set, TransactionTrait,
};

mod account {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sea_orm_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub owner: String,
        pub balance: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

struct Accounts {
    db: DatabaseConnection,
}

impl Accounts {
    /// A read: safe to retry on any transient error.
    #[db_retry]
    async fn find(&self, id: i64) -> Result<Option<account::Model>, DbErr> {
        account::Entity::find_by_id(id).one(&self.db).await
    }

    /// A unit of work in one SERIALIZABLE transaction: a serialization failure or deadlock
    /// retries the whole transaction, from `begin` on.
    #[db_retry(on = contention, max = 10, base = 5ms)]
    async fn transfer(&self, from: i64, to: i64, amount: i64) -> Result<(), DbErr> {
        let tx = self
            .db
            .begin_with_config(Some(IsolationLevel::Serializable), None)
            .await?;
        for (id, delta) in [(from, -amount), (to, amount)] {
            let account = account::Entity::find_by_id(id)
                .one(&tx)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(format!("account {id}")))?;
            account::ActiveModel {
                id: Set(id),
                balance: Set(account.balance + delta),
                ..Default::default()
            }
            .update(&tx)
            .await?;
        }
        tx.commit().await
    }
}

#[tokio::main]
async fn main() -> Result<(), DbErr> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!(
            "This example needs a PostgreSQL server. Set DATABASE_URL, for example:\n\n    \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
             cargo run --example sea_orm_repository\n"
        );
        std::process::exit(2);
    };
    let mut options = ConnectOptions::new(url);
    options.max_connections(4).sqlx_logging(false);
    let db = Database::connect(options).await?;
    db.execute_unprepared(
        "DROP TABLE IF EXISTS sea_orm_accounts;
         CREATE TABLE sea_orm_accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL);
         INSERT INTO sea_orm_accounts VALUES (1, 'ada', 100), (2, 'grace', 100);",
    )
    .await?;

    let accounts = Accounts { db };
    accounts.transfer(1, 2, 30).await?;
    let ada = accounts.find(1).await?.expect("account 1");
    let grace = accounts.find(2).await?.expect("account 2");
    println!(
        "{}: {}, {}: {}",
        ada.owner, ada.balance, grace.owner, grace.balance
    );
    Ok(())
}
