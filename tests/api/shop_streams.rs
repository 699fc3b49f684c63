//! Shops that share one NATS server stay apart: each database has an identity, its stream
//! is named after it and carries it, and a stream that holds events the database does not
//! have (a database restored or recreated beneath it) is reset instead of skipping the
//! database's new events as repeats.

use std::time::Duration;

use serde_json::Value;

use crate::both;
use crate::cluster::NATS_URL;
use crate::helpers::{Backend, DbGuard, Got, TestApp, WsClient, fresh_database, test_config};

fn with_nats(c: &mut ordo::config::Config) {
    c.nats_url = Some(NATS_URL.to_owned());
}

async fn js() -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(NATS_URL).await.expect("NATS"))
}

/// The stream a node uses, and what it says about itself.
async fn stream_of(app: &TestApp) -> (String, String) {
    let name = app.state.bus.stream_name().expect("a NATS stream");
    let mut s = js().await.get_stream(&name).await.expect("stream");
    let info = s.info().await.expect("info");
    (name, info.config.description.clone().unwrap_or_default())
}

async fn drop_stream(name: &str) {
    let _ = js().await.delete_stream(name).await;
}

/// The next event a socket hears, skipping nothing.
async fn next_event(ws: &mut WsClient) -> Value {
    match ws.next(Duration::from_secs(15)).await {
        Got::Json(m) => m,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Nothing more arrives on the socket for a moment.
async fn hears_nothing(ws: &mut WsClient) {
    if let Got::Json(m) = ws.next(Duration::from_millis(700)).await {
        panic!("heard an event that is not this shop's: {m}");
    }
}

/// Two shops (databases) on one NATS server with default settings: each has a stream of
/// its own, an admin of one never sees the other's orders, and (on PostgreSQL) a second
/// node of shop B hears all of shop B's events.
async fn two_shops_on_one_nats_stay_apart(b: Backend) {
    let shop_a = TestApp::new(b).with_nats(NATS_URL).spawn().await;
    let shop_b = TestApp::new(b).with_nats(NATS_URL).spawn().await;
    let (stream_a, about_a) = stream_of(&shop_a).await;
    let (stream_b, about_b) = stream_of(&shop_b).await;
    assert_ne!(stream_a, stream_b, "each shop has its own stream");
    let id_a = shop_a.state.store.shop_id().await.unwrap();
    let id_b = shop_b.state.store.shop_id().await.unwrap();
    assert_ne!(id_a, id_b);
    assert!(about_a.contains(&id_a), "{about_a}");
    assert!(about_b.contains(&id_b), "{about_b}");

    let b2 = match b {
        Backend::Postgres => Some(shop_b.another_node(with_nats).await),
        Backend::Sqlite => None,
    };
    let mut admin_b = shop_b.ws("", &shop_b.admin_token).await;
    let mut admin_b2 = match &b2 {
        Some(node) => Some(node.ws("", &node.admin_token).await),
        None => None,
    };

    let (_, ann) = shop_a.customer("ann").await;
    let item_a = shop_a.item(100, 10).await;
    let order_a = shop_a.new_order(&ann, &item_a).await;
    let (_, bob) = shop_b.customer("bob").await;
    let item_b = shop_b.item(100, 10).await;
    let mut orders_b = Vec::new();
    for _ in 0..3 {
        orders_b.push(shop_b.new_order(&bob, &item_b).await);
    }
    let heard: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..orders_b.len() {
            v.push(
                next_event(&mut admin_b).await["data"]["order_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        v
    };
    assert_eq!(
        heard, orders_b,
        "shop B's admin hears shop B's orders, in order"
    );
    assert!(!heard.contains(&order_a));
    hears_nothing(&mut admin_b).await;
    if let Some(ws) = admin_b2.as_mut() {
        let mut v = Vec::new();
        for _ in 0..orders_b.len() {
            v.push(
                next_event(ws).await["data"]["order_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(
            v, orders_b,
            "shop B's second node hears all of shop B's events"
        );
        hears_nothing(ws).await;
    }
    drop_stream(&stream_a).await;
    drop_stream(&stream_b).await;
}
both!(two_shops_on_one_nats_stay_apart);

/// A stream named explicitly after another shop's is refused at start, loudly, instead of
/// mixing two shops' events.
async fn a_stream_of_another_database_is_refused(b: Backend) {
    let name = format!("T{}", uuid::Uuid::new_v4().simple());
    let n = name.clone();
    let shop_a = TestApp::spawn_with(b, move |c| {
        with_nats(c);
        c.nats_stream = Some(n);
    })
    .await;
    // A database recreated beneath the same stream is another database.
    let (url, _guard) = fresh_database(b).await;
    let mut config = test_config(url);
    with_nats(&mut config);
    config.nats_stream = Some(name.clone());
    let refused = ordo::app::AppState::build(config, std::sync::Arc::new(ordo::clock::SystemClock))
        .await
        .err()
        .expect("a second shop on the first shop's stream is refused");
    let why = format!("{refused:#}");
    assert!(why.contains("belongs to another Ordo database"), "{why}");
    // Shop A is untouched and still relays.
    let (_, ann) = shop_a.customer("ann").await;
    let item = shop_a.item(100, 10).await;
    let mut ws = shop_a.ws("", &ann).await;
    let order = shop_a.new_order(&ann, &item).await;
    assert_eq!(
        next_event(&mut ws).await["data"]["order_id"],
        order.as_str()
    );
    drop_stream(&name).await;
}
both!(a_stream_of_another_database_is_refused);

/// A copy of the database as it is now: SQLite `VACUUM INTO`, PostgreSQL `pg_dump`.
async fn backup(app: &TestApp, b: Backend, dir: &std::path::Path) -> std::path::PathBuf {
    match b {
        Backend::Sqlite => {
            use sqlx::Connection;
            let file = dir.join("backup.db");
            let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
            let sql = format!("VACUUM INTO '{}'", file.display());
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
            file
        }
        Backend::Postgres => {
            let file = dir.join("backup.sql");
            let out = std::process::Command::new("pg_dump")
                .args(["--no-owner", "-f"])
                .arg(&file)
                .arg(&app.db_url)
                .output()
                .expect("pg_dump");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            file
        }
    }
}

/// Puts a backup into a new database; returns its URL and guard.
async fn restore(b: Backend, file: &std::path::Path) -> (String, DbGuard) {
    let (url, guard) = fresh_database(b).await;
    match b {
        Backend::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            std::fs::copy(file, path).unwrap();
        }
        Backend::Postgres => {
            let out = std::process::Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(&url)
                .arg("-f")
                .arg(file)
                .output()
                .expect("psql");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    (url, guard)
}

/// A shop's database is restored from a backup while its stream went on: the stream holds
/// events the restored database does not have, with the ids its next events will take.
/// The restored node resets the stream, and every event it makes from then on reaches
/// clients; none is dropped as a repeat.
async fn a_database_restored_beneath_its_stream_loses_nothing(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(b, with_nats).await;
    let (stream, _) = stream_of(&app).await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(100, 50).await;
    let mut ws = app.ws("", &app.admin_token).await;
    let first = app.new_order(&ann, &item).await;
    let at_backup = next_event(&mut ws).await;
    assert_eq!(at_backup["data"]["order_id"], first.as_str());
    let file = backup(&app, b, dir.path()).await;
    // Life goes on after the backup: these events reach the stream, then are lost with
    // the database.
    for _ in 0..3 {
        app.new_order(&ann, &item).await;
        next_event(&mut ws).await;
    }
    app.shutdown();
    drop(ws);
    drop(app);

    let (url, guard) = restore(b, &file).await;
    let restored = TestApp::launch(url, guard, with_nats).await;
    let (same_stream, about) = stream_of(&restored).await;
    assert_eq!(
        same_stream, stream,
        "the restored database is the same shop"
    );
    assert!(about.ends_with("resets=1"), "the stream was reset: {about}");
    let since: i64 = at_backup["id"].as_str().unwrap().parse().unwrap();
    let mut ws = restored
        .ws(&format!("?since={since}"), &restored.admin_token)
        .await;
    let mut made = Vec::new();
    for _ in 0..4 {
        made.push(restored.new_order(&ann, &item).await);
    }
    let mut heard = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..made.len() {
        let m = next_event(&mut ws).await;
        ids.push(m["id"].as_str().unwrap().parse::<i64>().unwrap());
        heard.push(m["data"]["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        heard, made,
        "every order made after the restore is heard, in order"
    );
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(
        ids[0],
        since + 1,
        "the restored ids go on from the backup's"
    );
    hears_nothing(&mut ws).await;
    drop_stream(&stream).await;
}
both!(a_database_restored_beneath_its_stream_loses_nothing);
