//! The embedded default: durable acknowledgements, online backup and restore with a
//! consistent event stream, a WAL that is checkpointed and truncated, and the copy into
//! PostgreSQL. The real `ordo` binary is started where the feature is a command.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::cli::{Server, call, client, get, ordo};
use crate::helpers::{Backend, Got, TestApp, WsClient};

fn server_cmd(dir: &Path, url: &str) -> std::process::Command {
    let mut c = ordo(dir);
    c.env("DATABASE_URL", url)
        .env("ORDO_ADMIN_EMAIL", "admin@example.com")
        .env("ORDO_ADMIN_PASSWORD", "admin-password");
    c
}

/// Runs `ordo <args>` against `url`; returns (success, stdout + stderr).
fn run(dir: &Path, url: &str, args: &[&str]) -> (bool, String) {
    let out = ordo(dir)
        .env("DATABASE_URL", url)
        .args(args)
        .output()
        .expect("run ordo");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn admin_token(url: &str) -> String {
    let r = call(
        &format!("{url}/v1/auth/login"),
        None,
        json!({"email": "admin@example.com", "password": "admin-password"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["access_token"].as_str().expect("token").to_owned()
}

/// An item with plenty of stock and a customer; returns (admin, customer token, item id).
async fn shop(url: &str, stock: i64) -> (String, String, String) {
    let admin = admin_token(url).await;
    let item = call(
        &format!("{url}/v1/items"),
        Some(&admin),
        json!({"sku": "EMB-1", "name": "Embedded", "price": 250, "currency": "USD", "stock": stock}),
    )
    .await;
    assert_eq!(item.status, StatusCode::CREATED, "{}", item.text);
    let reg = call(
        &format!("{url}/v1/auth/register"),
        None,
        json!({"email": "c@example.com", "password": "password-1", "name": "C"}),
    )
    .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.text);
    (
        admin,
        reg.body["access_token"].as_str().expect("token").to_owned(),
        item.body["id"].as_str().expect("id").to_owned(),
    )
}

async fn place(url: &str, token: &str, item: &str) -> Option<String> {
    let r = call(
        &format!("{url}/v1/orders"),
        Some(token),
        json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_card_visa"}),
    )
    .await;
    (r.status == StatusCode::CREATED).then(|| r.body["id"].as_str().expect("id").to_owned())
}

async fn ws_connect(url: &str, query: &str, token: &str) -> WsClient {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}/v1/ws{query}", url.replacen("http", "ws", 1))
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (stream, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    WsClient { stream }
}

fn event_id(v: &Value) -> i64 {
    v["id"].as_str().expect("id").parse().expect("numeric id")
}

/// Every message until the socket stays quiet for a moment.
async fn drain(ws: &mut WsClient) -> Vec<Value> {
    let mut got = Vec::new();
    while let Got::Json(v) = ws.next(Duration::from_millis(700)).await {
        got.push(v);
    }
    got
}

async fn open_sqlite(path: &Path) -> sqlx::SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .expect("open sqlite")
}

fn db_file(url: &str) -> std::path::PathBuf {
    SqliteConnectOptions::from_str(url)
        .expect("url")
        .get_filename()
        .to_path_buf()
}

/// The writer commits with `synchronous=FULL` unless the operator relaxes it; a bad value
/// stops the server with a message naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_are_flushed_by_default() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let store = app.state.store.sqlite().expect("the embedded backend");
    assert_eq!(store.synchronous().await.unwrap(), 2, "synchronous=FULL");
    // The order path (group commit) writes through that same connection: a write through
    // a reader is impossible (they are read-only), so every commit pays the flush.
    let (_, ann) = app.customer("ann").await;
    let item = app.item(100, 5).await;
    app.paid_order(&ann, &item, 1).await;
    assert_eq!(store.synchronous().await.unwrap(), 2);

    let relaxed = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.sqlite_synchronous = ordo::config::SqliteSync::Normal;
    })
    .await;
    let s = relaxed.state.store.sqlite().unwrap();
    assert_eq!(s.synchronous().await.unwrap(), 1, "synchronous=NORMAL");

    let dir = tempfile::tempdir().unwrap();
    let out = ordo(dir.path())
        .env("ORDO_SQLITE_SYNCHRONOUS", "sometimes")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("sometimes") && text.contains("full"),
        "{text}"
    );
}

/// On PostgreSQL nothing of this is in the way: the setting is ignored, there is no
/// checkpoint job, and backup/restore say how PostgreSQL is backed up instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_left_alone() {
    let app = TestApp::spawn(Backend::Postgres).await;
    assert!(app.state.store.sqlite().is_none());
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("b.db");
    for args in [
        vec!["backup", "--to", to.to_str().unwrap()],
        vec!["restore", "--from", to.to_str().unwrap()],
    ] {
        let (ok, log) = run(dir.path(), &app.db_url, &args);
        assert!(!ok, "{args:?} was accepted on PostgreSQL");
        assert!(log.contains("pg_dump"), "{log}");
    }
    assert!(!to.exists());
}

/// A backup taken mid-load opens, passes the integrity check and holds every order that
/// was acknowledged before it began. A restore is refused while the server runs; after
/// it, the restored server serves those orders, replays its event log from any position,
/// and numbers new events after everything the replaced database handed out, so a client
/// resuming from either timeline misses nothing new and gets nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_to_a_consistent_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let url = format!("sqlite://{}", db.display());
    let server = Server::start(server_cmd(dir.path(), &url), "http").await;
    let (admin, token, item) = shop(&server.url, 1_000_000).await;

    // Order load from four clients; every 201 is noted with when it arrived.
    let acked: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (u, t, i, acked, stop) = (
            server.url.clone(),
            token.clone(),
            item.clone(),
            acked.clone(),
            stop.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(id) = place(&u, &t, &i).await {
                    acked.lock().unwrap().push((Instant::now(), id));
                }
            }
        }));
    }
    // The backup starts once the load is going (however busy the machine is).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "the load does not get going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backup = dir.path().join("backup.db");
    let began = Instant::now();
    let (ok, log) = {
        let (d, u, b) = (
            dir.path().to_path_buf(),
            url.clone(),
            backup.display().to_string(),
        );
        tokio::task::spawn_blocking(move || run(&d, &u, &["backup", "--to", &b]))
            .await
            .unwrap()
    };
    let ended = Instant::now();
    assert!(ok, "{log}");
    assert!(log.contains("backup written"), "{log}");
    // Orders after the backup, too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at > ended + Duration::from_millis(100))
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "no orders after the backup");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before: Vec<&String> = acked
        .iter()
        .filter(|(at, _)| *at < began)
        .map(|(_, id)| id)
        .collect();
    let after_backup: Vec<&String> = acked
        .iter()
        .filter(|(at, _)| *at > ended + Duration::from_millis(100))
        .map(|(_, id)| id)
        .collect();
    assert!(before.len() >= 10, "too little load: {}", before.len());
    assert!(!after_backup.is_empty(), "no orders after the backup");

    // The copy: whole, and every order acknowledged before the backup began.
    let mut copy = open_sqlite(&backup).await;
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut copy)
        .await
        .unwrap();
    assert_eq!(check, ["ok"]);
    let in_copy: BTreeSet<String> = sqlx::query_scalar::<_, String>("SELECT hex(id) FROM orders")
        .fetch_all(&mut copy)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for id in &before {
        let hex = uuid::Uuid::parse_str(id)
            .unwrap()
            .simple()
            .to_string()
            .to_uppercase();
        assert!(in_copy.contains(&hex), "acknowledged order {id} is missing");
    }
    let copy_last_event: i64 = sqlx::query_scalar("SELECT max(id) FROM order_events")
        .fetch_one(&mut copy)
        .await
        .unwrap();
    copy.close().await.unwrap();
    // A second backup never overwrites the first.
    let (ok, log) = run(
        dir.path(),
        &url,
        &["backup", "--to", &backup.display().to_string()],
    );
    assert!(!ok && log.contains("exists"), "{log}");

    // Restore is refused while the server uses the database, and changes nothing.
    let (ok, log) = run(
        dir.path(),
        &url,
        &["restore", "--from", &backup.display().to_string()],
    );
    assert!(!ok, "restore ran under a live server: {log}");
    assert!(log.contains("a server is using"), "{log}");
    let last = after_backup.last().unwrap();
    let r = get(&format!("{}/v1/orders/{last}", server.url), &admin).await;
    assert_eq!(r["id"], last.as_str(), "{r}");
    server.terminate();
    assert!(server.wait().0);
    // The last event number the replaced database handed out (clients may have seen it).
    let mut old = open_sqlite(&db).await;
    let old_last: i64 = sqlx::query_scalar("SELECT max(id) FROM order_events")
        .fetch_one(&mut old)
        .await
        .unwrap();
    old.close().await.unwrap();
    assert!(old_last > copy_last_event);

    // A file that is not a backup is refused; the database stays.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let (ok, log) = run(
        dir.path(),
        &url,
        &["restore", "--from", &junk.display().to_string()],
    );
    assert!(!ok, "{log}");
    assert!(db.exists());

    let (ok, log) = run(
        dir.path(),
        &url,
        &["restore", "--from", &backup.display().to_string()],
    );
    assert!(ok, "{log}");
    assert!(log.contains("replaced"), "{log}");

    // The consumers' positions come from the same snapshot as the log they point into.
    let mut restored = open_sqlite(&db).await;
    let positions: Vec<(String, i64)> = sqlx::query_as("SELECT name, position FROM outbox_cursors")
        .fetch_all(&mut restored)
        .await
        .unwrap();
    assert!(!positions.is_empty());
    for (name, position) in &positions {
        assert!(
            *position <= copy_last_event,
            "{name} is past the log: {position}"
        );
    }
    let next: i64 =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'order_events'")
            .fetch_one(&mut restored)
            .await
            .unwrap();
    assert_eq!(
        next, old_last,
        "event numbers go on after the replaced database's"
    );
    restored.close().await.unwrap();

    let server = Server::start(server_cmd(dir.path(), &url), "http").await;
    for id in &before {
        let r = get(&format!("{}/v1/orders/{id}", server.url), &token).await;
        assert_eq!(r["id"], id.as_str(), "{r}");
    }
    let gone = client()
        .get(format!("{}/v1/orders/{last}", server.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.status(),
        StatusCode::NOT_FOUND,
        "an order placed after the backup"
    );

    // The restored log replays from a position inside it: each event once, in order, up
    // to the last one the backup holds.
    let from = copy_last_event - 20;
    let mut inside = ws_connect(&server.url, &format!("?since={from}"), &admin).await;
    let replay: Vec<i64> = drain(&mut inside).await.iter().map(event_id).collect();
    let mut copy = open_sqlite(&backup).await;
    let expected: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM order_events WHERE id > $1 ORDER BY id")
            .bind(from)
            .fetch_all(&mut copy)
            .await
            .unwrap();
    copy.close().await.unwrap();
    assert_eq!(expected.len(), 20);
    assert_eq!(replay, expected, "the restored log after {from}");
    // A client that saw the replaced database's last event resumes from there.
    let mut resumed = ws_connect(&server.url, &format!("?since={old_last}"), &admin).await;
    assert!(matches!(
        resumed.next(Duration::from_millis(500)).await,
        Got::Nothing
    ));
    let new = place(&server.url, &token, &item)
        .await
        .expect("an order on the restored server");
    let mut seen = Vec::new();
    for ws in [&mut inside, &mut resumed] {
        let got = drain(ws).await;
        let statuses: Vec<&Value> = got.iter().map(|e| &e["data"]["status"]).collect();
        assert_eq!(statuses, [&json!("created"), &json!("placed")], "{got:?}");
        assert!(got.iter().all(|e| e["data"]["order_id"] == new.as_str()));
        assert!(
            event_id(&got[0]) > old_last,
            "an event number was handed out twice"
        );
        seen.push(got.iter().map(event_id).collect::<Vec<_>>());
    }
    assert_eq!(seen[0], seen[1]);
    server.terminate();
    assert!(server.wait().0);

    // After a disk is lost there is no database to replace: the backup becomes it.
    let elsewhere = dir.path().join("new-disk").join("shop.db");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    let (ok, log) = run(
        dir.path(),
        &format!("sqlite://{}", elsewhere.display()),
        &["restore", "--from", &backup.display().to_string()],
    );
    assert!(ok, "{log}");
    assert!(!log.contains("replaced"), "{log}");
    let mut fresh = open_sqlite(&elsewhere).await;
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut fresh)
        .await
        .unwrap();
    assert_eq!(orders as usize, in_copy.len());
    fresh.close().await.unwrap();
}

/// Writes while a reader holds an old snapshot grow the WAL (nothing can be checkpointed
/// past the reader); once it lets go and writes stop, the checkpoint job truncates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_truncated_after_a_long_reader_lets_go() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(100, 100_000).await;
    let wal = ordo::storage::sqlite::wal_path(&db_file(&app.db_url));
    let mut reader = open_sqlite(&db_file(&app.db_url)).await;
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(n, 0);
    for _ in 0..150 {
        app.paid_order(&ann, &item, 1).await;
    }
    let held = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(held > 200_000, "the WAL holds the writes: {held} bytes");
    // Checkpoints keep running, but cannot truncate under the reader.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) >= held);
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();
    let truncated = app
        .eventually(Duration::from_secs(15), || async {
            std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0
        })
        .await;
    assert!(
        truncated,
        "the WAL is still {} bytes",
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
    );
    // Everything is in the database file, and it is whole.
    let mut c = open_sqlite(&db_file(&app.db_url)).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 150);
    let metrics = app.metrics().await;
    for name in [
        "ordo_sqlite_wal_bytes",
        "ordo_sqlite_last_checkpoint_timestamp_seconds",
        "ordo_sqlite_checkpoints_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

/// A second server on the same file is refused: one node owns the embedded database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("one.db").display());
    let server = Server::start(server_cmd(dir.path(), &url), "http").await;
    let out = server_cmd(dir.path(), &url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another ordo server uses"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.terminate();
    assert!(server.wait().0);
}

/// `ordo migrate-to`: orders, timelines, users and keys made on SQLite, copied into a fresh
/// PostgreSQL database, read back identical from a server on the copy; event ids are the
/// same and new ones continue after them. A non-empty target, a running server and a
/// non-PostgreSQL target are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_database_moves_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let server = Server::start(server_cmd(dir.path(), &url), "http").await;
    let (admin, token, item) = shop(&server.url, 50).await;
    let s = &server.url;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(place(s, &token, &item).await.unwrap());
    }
    let unpaid = call(
        &format!("{s}/v1/orders"),
        Some(&token),
        json!({"items": [{"item_id": item, "quantity": 2}], "shipping_address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}}),
    )
    .await;
    assert_eq!(unpaid.status, StatusCode::CREATED, "{}", unpaid.text);
    ids.push(unpaid.body["id"].as_str().unwrap().to_owned());
    let c = call(
        &format!("{s}/v1/orders/{}/cancel", ids[0]),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let shipped = call(
        &format!("{s}/v1/orders/{}/status", ids[1]),
        Some(&admin),
        json!({"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999"}),
    )
    .await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.text);
    let key = call(
        &format!("{s}/v1/api-keys"),
        Some(&admin),
        json!({"name": "erp", "scopes": ["orders:read"]}),
    )
    .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
    let key = key.body["key"].as_str().unwrap().to_owned();

    let snapshot = |base: String, token: String, ids: Vec<String>, item: String| async move {
        let mut all = vec![
            get(&format!("{base}/v1/orders?limit=100"), &token).await,
            get(&format!("{base}/v1/items/{item}"), &token).await,
        ];
        for id in &ids {
            all.push(get(&format!("{base}/v1/orders/{id}"), &token).await);
            all.push(get(&format!("{base}/v1/orders/{id}/events"), &token).await);
            all.push(get(&format!("{base}/v1/orders/{id}/payments"), &token).await);
        }
        all
    };
    // The shop front's tables come along too, without the copy knowing them.
    let customer = get(&format!("{s}/v1/orders/{}", ids[0]), &token).await["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cart = call(
        &format!("{s}/v1/users/{customer}/cart"),
        Some(&token),
        json!({"item_id": item, "quantity": 3}),
    )
    .await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.text);
    let wish = call(
        &format!("{s}/v1/users/{customer}/wishlist"),
        Some(&token),
        json!({"item_id": item}),
    )
    .await;
    assert!(wish.status.is_success(), "{}", wish.text);
    let front = |base: String| {
        let (token, customer) = (token.clone(), customer.clone());
        async move {
            (
                get(&format!("{base}/v1/users/{customer}/cart"), &token).await,
                get(&format!("{base}/v1/users/{customer}/wishlist"), &token).await,
            )
        }
    };
    let front_sqlite = front(s.clone()).await;
    assert_eq!(
        front_sqlite.0["items"][0]["quantity"], 3,
        "{:?}",
        front_sqlite
    );
    let on_sqlite = snapshot(s.clone(), admin.clone(), ids.clone(), item.clone()).await;
    let mut ws = ws_connect(s, "?since=0", &admin).await;
    let events_sqlite: Vec<Value> = drain(&mut ws).await;
    assert!(events_sqlite.len() >= 8);

    let (pg, _guard) = crate::helpers::fresh_database(Backend::Postgres).await;
    let (ok, log) = run(dir.path(), &url, &["migrate-to", &pg]);
    assert!(!ok && log.contains("a server is using"), "{log}");
    server.terminate();
    assert!(server.wait().0);

    let (ok, log) = run(dir.path(), &url, &["migrate-to", "mysql://localhost/x"]);
    assert!(!ok && log.contains("postgres://"), "{log}");
    let (ok, log) = run(dir.path(), &url, &["migrate-to", &pg]);
    assert!(ok, "{log}");
    assert!(log.contains("orders: 4 rows"), "{log}");
    let (ok, log) = run(dir.path(), &url, &["migrate-to", &pg]);
    assert!(!ok && log.contains("not empty"), "{log}");

    let server = Server::start(server_cmd(dir.path(), &pg), "http").await;
    let on_pg = snapshot(server.url.clone(), admin.clone(), ids.clone(), item.clone()).await;
    assert_eq!(on_pg, on_sqlite);
    assert_eq!(front(server.url.clone()).await, front_sqlite);
    // The customer logs in with the same password; old tokens and keys still work.
    let login = call(
        &format!("{}/v1/auth/login", server.url),
        None,
        json!({"email": "c@example.com", "password": "password-1"}),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let mine = get(&format!("{}/v1/orders", server.url), &token).await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 4, "{mine}");
    let by_key = get(&format!("{}/v1/orders/{}", server.url, ids[2]), &key).await;
    assert_eq!(by_key["id"], ids[2].as_str());
    let mut ws = ws_connect(&server.url, "?since=0", &admin).await;
    let events_pg = drain(&mut ws).await;
    assert_eq!(
        events_pg, events_sqlite,
        "the same events with the same ids"
    );
    let last = events_pg.iter().map(event_id).max().unwrap();
    let new = place(&server.url, &token, &item).await.unwrap();
    let got = drain(&mut ws).await;
    assert_eq!(got.len(), 2, "created and placed: {got:?}");
    assert!(got.iter().all(|e| e["data"]["order_id"] == new.as_str()));
    assert!(event_id(&got[0]) > last && event_id(&got[1]) > event_id(&got[0]));
    server.terminate();
    assert!(server.wait().0);
}

/// The order history's file goes with the database: `ordo backup` writes `FILE.history`
/// beside `FILE` (taken while orders move), `ordo restore` puts it back, and `ordo
/// migrate-to` copies it into PostgreSQL's history tables. Archived orders and the analytics
/// summary read the same on the restored database and on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_history_goes_with_backups_and_the_move_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let url = format!("sqlite://{}", db.display());
    let archiving = |url: &str| {
        let mut c = server_cmd(dir.path(), url);
        c.env("ORDO_ARCHIVE_AFTER", "0")
            .env("ORDO_ARCHIVE_INTERVAL", "1");
        c
    };
    let server = Server::start(archiving(&url), "http").await;
    let s = server.url.clone();
    let (admin, token, item) = shop(&s, 50).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = place(&s, &token, &item).await.expect("placed");
        if n < 2 {
            for body in [
                json!({"status": "processing"}),
                json!({"status": "shipped", "carrier": "UPS", "tracking_number": format!("1ZBK{n}")}),
                json!({"status": "delivered"}),
            ] {
                let r = call(&format!("{s}/v1/orders/{id}/status"), Some(&admin), body).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            }
        }
        ids.push(id);
    }
    let history = |path: std::path::PathBuf| async move {
        let mut c = open_sqlite(&path).await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut c)
            .await
            .unwrap();
        n
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while history(dir.path().join("shop.db.history")).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the delivered orders were never archived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let snapshot = |base: String| {
        let (admin, ids) = (admin.clone(), ids.clone());
        async move {
            let mut all = vec![get(&format!("{base}/v1/analytics/summary"), &admin).await];
            for id in &ids {
                all.push(get(&format!("{base}/v1/orders/{id}"), &admin).await);
                all.push(get(&format!("{base}/v1/orders/{id}/events"), &admin).await);
            }
            all
        }
    };
    let before = snapshot(s.clone()).await;
    assert_eq!(
        before[0]["orders_by_status"]["delivered"], 2,
        "{}",
        before[0]
    );

    let backup = dir.path().join("backup.db");
    let (ok, log) = run(
        dir.path(),
        &url,
        &["backup", "--to", &backup.display().to_string()],
    );
    assert!(ok, "{log}");
    assert_eq!(history(dir.path().join("backup.db.history")).await, 2);
    server.terminate();
    assert!(server.wait().0);

    // Restored into a new place: the history comes along.
    let restored = format!("sqlite://{}", dir.path().join("restored.db").display());
    let (ok, log) = run(
        dir.path(),
        &restored,
        &["restore", "--from", &backup.display().to_string()],
    );
    assert!(ok, "{log}");
    assert_eq!(history(dir.path().join("restored.db.history")).await, 2);
    let server = Server::start(server_cmd(dir.path(), &restored), "http").await;
    assert_eq!(snapshot(server.url.clone()).await, before);
    server.terminate();
    assert!(server.wait().0);

    // And into PostgreSQL's history tables.
    let (pg, _guard) = crate::helpers::fresh_database(Backend::Postgres).await;
    let (ok, log) = run(dir.path(), &restored, &["migrate-to", &pg]);
    assert!(ok, "{log}");
    assert!(log.contains("orders_history: 2 rows"), "{log}");
    assert!(log.contains("orders: 1 rows"), "{log}");
    let server = Server::start(server_cmd(dir.path(), &pg), "http").await;
    assert_eq!(snapshot(server.url.clone()).await, before);
    server.terminate();
    assert!(server.wait().0);
}
