//! Outages under load, with the real binary: a node killed with SIGKILL at a random moment
//! while orders pour in, and (PostgreSQL) the database restarted beneath two nodes. Every
//! order that got a 201 is there afterwards, and the stock adds up: what is left plus what
//! the orders that hold stock reserved is what there was.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::cli::{Server, call, client, free_port, get, ordo};
use crate::helpers::{Backend, order_lines};

const ITEMS: usize = 8;
const STOCK: i64 = 100_000;

fn server_cmd(dir: &Path, db: &str) -> Command {
    let mut c = ordo(dir);
    c.env("DATABASE_URL", db)
        .env("ORDO_ADMIN_EMAIL", "admin@example.com")
        .env("ORDO_ADMIN_PASSWORD", "admin-password")
        .env("ORDO_DB_POOL_SIZE", "8")
        // The logs go to a pipe nobody reads during the load: keep them short.
        .env("RUST_LOG", "error");
    c
}

struct Shop {
    admin: String,
    customers: Vec<String>,
    items: Vec<String>,
}

async fn open_shop(url: &str) -> Shop {
    let login = call(
        &format!("{url}/v1/auth/login"),
        None,
        json!({"email": "admin@example.com", "password": "admin-password"}),
    )
    .await;
    let admin = login.body["access_token"].as_str().unwrap().to_owned();
    let mut items = Vec::new();
    for i in 0..ITEMS {
        let r = call(
            &format!("{url}/v1/items"),
            Some(&admin),
            json!({"sku": format!("LOAD-{i}"), "name": "Load", "price": 100, "currency": "USD", "stock": STOCK}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        items.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let mut customers = Vec::new();
    for i in 0..4 {
        let r = call(
            &format!("{url}/v1/auth/register"),
            None,
            json!({"email": format!("load{i}@example.com"), "password": "password-1", "name": "L"}),
        )
        .await;
        customers.push(r.body["access_token"].as_str().unwrap().to_owned());
    }
    Shop {
        admin,
        customers,
        items,
    }
}

/// What the load saw: the orders acknowledged (id → (lines, status)), and the answers
/// that were neither 201 nor a connection error, by status.
#[derive(Default)]
struct Seen {
    acknowledged: HashMap<String, (Vec<(String, i64)>, String)>,
    answers: HashMap<u16, usize>,
    unavailable_without_retry_after: usize,
}

/// Places orders from `workers` tasks, round-robin over `urls`, until `stop` fires.
fn load(
    urls: Vec<String>,
    shop: &Shop,
    workers: usize,
    stop: tokio_util::sync::CancellationToken,
) -> (Arc<Mutex<Seen>>, Vec<tokio::task::JoinHandle<()>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (urls, seen, stop) = (urls.clone(), seen.clone(), stop.clone());
        let token = shop.customers[w % shop.customers.len()].clone();
        let items = shop.items.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let mut n = w;
            while !stop.is_cancelled() {
                n += 1;
                let a = &items[n % ITEMS];
                let b = &items[(n * 7 + 3) % ITEMS];
                let mut lines = vec![(a.clone(), 1 + (n % 3) as i64)];
                if a != b {
                    lines.push((b.clone(), 1));
                }
                let mut body = json!({"items": lines.iter().map(|(i, q)| json!({"item_id": i, "quantity": q})).collect::<Vec<_>>()});
                if n.is_multiple_of(2) {
                    body["payment_method"] = json!("pm_card_visa");
                }
                let url = &urls[n % urls.len()];
                let sent = http
                    .post(format!("{url}/v1/orders"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                let Ok(r) = sent else {
                    // The node is gone or the connection broke: no answer, no claim.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let Ok(v) = r.json::<Value>().await else {
                    continue;
                };
                let mut s = seen.lock().unwrap();
                if status == 201 {
                    s.acknowledged.insert(
                        v["id"].as_str().unwrap().to_owned(),
                        (lines, v["status"].as_str().unwrap().to_owned()),
                    );
                } else {
                    *s.answers.entry(status).or_default() += 1;
                    if status == 503 && !retry_after {
                        s.unavailable_without_retry_after += 1;
                    }
                }
            }
        }));
    }
    (seen, tasks)
}

/// Waits until the load has had `n` orders acknowledged (a minute at most).
async fn under_load(seen: &Mutex<Seen>, n: usize) {
    let got = crate::helpers::eventually(Duration::from_secs(60), || async {
        seen.lock().unwrap().acknowledged.len() >= n
    })
    .await;
    assert!(got, "the load did not get to {n} orders");
}

/// Every acknowledged order is there with its lines, a paid one is still paid, and the
/// stock of every item adds up over all the orders the database holds.
async fn check_books(url: &str, shop: &Shop, seen: &Seen) {
    let mut holding: HashMap<String, i64> = HashMap::new();
    let mut all: HashMap<String, Value> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => format!("{url}/v1/orders?limit=200&cursor={c}"),
            None => format!("{url}/v1/orders?limit=200"),
        };
        let v = get(&page, &shop.admin).await;
        for o in v["data"].as_array().unwrap() {
            all.insert(o["id"].as_str().unwrap().to_owned(), o.clone());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for (id, (lines, status)) in &seen.acknowledged {
        let o = all
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged order {id} is gone"));
        let mut want = lines.clone();
        want.sort();
        assert_eq!(order_lines(o), want, "order {id}'s lines");
        if status == "placed" {
            assert_eq!(o["status"], "placed", "a paid order stays paid: {o}");
            assert_eq!(o["payment_status"], "paid");
        }
    }
    for o in all.values() {
        if o["status"] == "canceled" {
            continue;
        }
        for l in o["items"].as_array().unwrap() {
            *holding
                .entry(l["item_id"].as_str().unwrap().to_owned())
                .or_default() += l["quantity"].as_i64().unwrap();
        }
    }
    for item in &shop.items {
        let stock = get(&format!("{url}/v1/items/{item}"), &shop.admin).await["stock"]
            .as_i64()
            .unwrap();
        let held = holding.get(item).copied().unwrap_or(0);
        assert_eq!(
            stock + held,
            STOCK,
            "item {item}: {stock} in stock + {held} held by orders"
        );
    }
}

/// A node placing orders at full speed is killed with SIGKILL at a random moment and
/// started again: every order that got a 201 exists, and the stock is accounted for.
async fn a_node_killed_under_load_keeps_every_acknowledged_order(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (db, _guard) = crate::helpers::fresh_database(b).await;
    let server = Server::start(server_cmd(dir.path(), &db), "http").await;
    let shop = open_shop(&server.url).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (seen, tasks) = load(vec![server.url.clone()], &shop, 16, stop.clone());
    // Full speed first (however busy the machine is), then a random moment.
    under_load(&seen, 30).await;
    let wait = rand::random::<u64>() % 1500;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    server.crash();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    let server = Server::start(server_cmd(dir.path(), &db), "http").await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.acknowledged.len() > 20,
        "the load placed too few orders to mean anything: {}",
        seen.acknowledged.len()
    );
    check_books(&server.url, &shop, &seen).await;
    let server_errors: usize = seen
        .answers
        .iter()
        .filter(|(s, _)| **s >= 500 && **s != 503)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(server_errors, 0, "answers: {:?}", seen.answers);
    server.terminate();
    assert!(server.wait().0);
}
both!(a_node_killed_under_load_keeps_every_acknowledged_order);

/// Every order for `item` the database holds and does not count as canceled, by id.
async fn orders_holding(url: &str, admin: &str, item: &str) -> HashMap<String, i64> {
    let mut held = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => format!("{url}/v1/orders?limit=200&cursor={c}"),
            None => format!("{url}/v1/orders?limit=200"),
        };
        let v = get(&page, admin).await;
        for o in v["data"].as_array().unwrap() {
            if o["status"] == "canceled" {
                continue;
            }
            for l in o["items"].as_array().unwrap() {
                if l["item_id"] == item {
                    held.insert(
                        o["id"].as_str().unwrap().to_owned(),
                        l["quantity"].as_i64().unwrap(),
                    );
                }
            }
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    held
}

/// Sends `buyers` orders for one unit of `item` at once, each with its own idempotency
/// key (`{prefix}-{i}`); returns (i, order id) of every 201, as they come, into `sold`.
fn flash_buyers(
    url: &str,
    shop: &Shop,
    item: &str,
    prefix: &'static str,
    buyers: usize,
    sold: Arc<Mutex<Vec<(usize, String)>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    (0..buyers)
        .map(|i| {
            let (http, sold, url) = (http.clone(), sold.clone(), url.to_owned());
            let token = shop.customers[i % shop.customers.len()].clone();
            let body = flash_body(item, i);
            tokio::spawn(async move {
                let sent = http
                    .post(format!("{url}/v1/orders"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", format!("{prefix}-{i}"))
                    .json(&body)
                    .send()
                    .await;
                let Ok(r) = sent else { return };
                if r.status() != StatusCode::CREATED {
                    return;
                }
                if let Ok(v) = r.json::<Value>().await {
                    sold.lock()
                        .unwrap()
                        .push((i, v["id"].as_str().unwrap().to_owned()));
                }
            })
        })
        .collect()
}

/// Buyer `i`'s order: one unit, every other one paid at once.
fn flash_body(item: &str, i: usize) -> Value {
    let mut body = json!({"items": [{"item_id": item, "quantity": 1}]});
    if i.is_multiple_of(2) {
        body["payment_method"] = json!("pm_card_visa");
    }
    body
}

/// A flash sale: 300 buyers, each with an idempotency key, for 50 units, on a node killed
/// with SIGKILL right after its first answers (while batches are being committed). After
/// the restart every 201 is there, each answered key replays the same order, and once
/// the sale is finished with fresh keys exactly 50 units are sold: none twice, none lost.
async fn a_flash_sale_killed_mid_batch_sells_each_unit_once(b: Backend) {
    const UNITS: i64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let (db, _guard) = crate::helpers::fresh_database(b).await;
    let server = Server::start(server_cmd(dir.path(), &db), "http").await;
    let shop = open_shop(&server.url).await;
    let r = call(
        &format!("{}/v1/items", server.url),
        Some(&shop.admin),
        json!({"sku": "FLASH", "name": "Flash", "price": 100, "currency": "USD", "stock": UNITS}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let item = r.body["id"].as_str().unwrap().to_owned();

    let sold = Arc::new(Mutex::new(Vec::new()));
    let buyers = flash_buyers(&server.url, &shop, &item, "flash", 300, sold.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sold.lock().unwrap().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "nothing sold");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.crash();
    for t in buyers {
        t.await.unwrap();
    }
    let acknowledged = std::mem::take(&mut *sold.lock().unwrap());

    let server = Server::start(server_cmd(dir.path(), &db), "http").await;
    let url = server.url.clone();
    let held = orders_holding(&url, &shop.admin, &item).await;
    for (_, id) in &acknowledged {
        assert!(held.contains_key(id), "acknowledged order {id} is gone");
    }
    let stock = get(&format!("{url}/v1/items/{item}"), &shop.admin).await["stock"]
        .as_i64()
        .unwrap();
    assert_eq!(
        stock + held.values().sum::<i64>(),
        UNITS,
        "{stock} left, held: {held:?}"
    );

    // An answered key answers the same order again, and places nothing more.
    for (i, id) in &acknowledged {
        let r = client()
            .post(format!("{url}/v1/orders"))
            .bearer_auth(&shop.customers[i % shop.customers.len()])
            .header("Idempotency-Key", format!("flash-{i}"))
            .json(&flash_body(&item, *i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"].as_str(), Some(id.as_str()));
    }

    // The rest of the sale, with fresh keys: exactly what was left is sold.
    let more = Arc::new(Mutex::new(Vec::new()));
    for t in flash_buyers(&url, &shop, &item, "again", 300, more.clone()) {
        t.await.unwrap();
    }
    let held = orders_holding(&url, &shop.admin, &item).await;
    assert_eq!(more.lock().unwrap().len() as i64, stock);
    assert_eq!(held.values().sum::<i64>(), UNITS);
    let stock = get(&format!("{url}/v1/items/{item}"), &shop.admin).await["stock"]
        .as_i64()
        .unwrap();
    assert_eq!(stock, 0);
    server.terminate();
    assert!(server.wait().0);
}
both!(a_flash_sale_killed_mid_batch_sells_each_unit_once);

/// A PostgreSQL server of the test's own, which the test may stop and start.
struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
    bin: String,
}

impl PrivatePg {
    /// Runs a PostgreSQL server program (as the `postgres` user when this runs as root:
    /// the server refuses to run as root).
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let path = format!("{}/{program}", self.bin);
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &path]);
            c
        } else {
            Command::new(&path)
        };
        c.args(args).output().expect("run a PostgreSQL program")
    }

    fn start() -> PrivatePg {
        let bin = std::env::var("ORDO_TEST_PG_BIN").unwrap_or_else(|_| {
            panic!(
                "ORDO_TEST_PG_BIN is not set: run scripts/test.sh, which finds initdb and pg_ctl"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("ordo-pg")
            .tempdir()
            .unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let pg = PrivatePg {
            dir,
            port: free_port(),
            bin,
        };
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.ctl(&["start"]);
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn ctl(&self, args: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let data = self.data();
        let mut all = vec!["-D", &data, "-l", &log, "-w", "-o", &opts];
        all.extend_from_slice(args);
        let out = self.run("pg_ctl", &all);
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

async fn ready(url: &str) -> StatusCode {
    match client().get(format!("{url}/readyz")).send().await {
        Ok(r) => r.status(),
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

/// `/readyz` of `url` becomes `want` within `within`.
async fn becomes_ready(url: &str, want: StatusCode, within: Duration) -> bool {
    crate::helpers::eventually(within, || async { ready(url).await == want }).await
}

/// PostgreSQL restarted beneath two nodes in the middle of the load (`-m fast`, then a
/// crash with `-m immediate`): requests meanwhile are answered 503 with `Retry-After`, never
/// 500; `/readyz` says the database is away; both nodes recover by themselves; every
/// acknowledged order is there and no reservation leaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_ride_out_a_postgresql_restart() {
    let pg = PrivatePg::start();
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(server_cmd(dir.path(), &pg.url()), "http").await;
    let b = Server::start(server_cmd(dir.path(), &pg.url()), "http").await;
    let shop = open_shop(&a.url).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (seen, tasks) = load(vec![a.url.clone(), b.url.clone()], &shop, 12, stop.clone());
    under_load(&seen, 30).await;
    pg.ctl(&["-m", "fast", "restart"]);
    let before = seen.lock().unwrap().acknowledged.len();
    under_load(&seen, before + 20).await;
    // A crash of the database: stopped at once, without a checkpoint.
    pg.ctl(&["-m", "immediate", "stop"]);
    assert!(
        becomes_ready(
            &a.url,
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10)
        )
        .await,
        "node A's /readyz does not say the database is away"
    );
    let down = client()
        .post(format!("{}/v1/orders", b.url))
        .bearer_auth(&shop.customers[0])
        .json(&json!({"items": [{"item_id": shop.items[0], "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(down.headers().contains_key("retry-after"));
    let problem: Value = down.json().await.unwrap();
    assert_eq!(problem["code"], "unavailable", "{problem}");
    pg.ctl(&["start"]);
    for node in [&a, &b] {
        assert!(
            becomes_ready(&node.url, StatusCode::OK, Duration::from_secs(15)).await,
            "a node did not recover by itself"
        );
    }
    let before = seen.lock().unwrap().acknowledged.len();
    under_load(&seen, before + 20).await;
    stop.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let server_errors: usize = seen
        .answers
        .iter()
        .filter(|(s, _)| **s >= 500 && **s != 503)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        server_errors, 0,
        "answers during the outage: {:?}",
        seen.answers
    );
    assert_eq!(
        seen.unavailable_without_retry_after, 0,
        "every 503 carries Retry-After"
    );
    check_books(&a.url, &shop, &seen).await;
    // Both nodes serve again, end to end.
    for node in [&a, &b] {
        let r = call(
            &format!("{}/v1/orders", node.url),
            Some(&shop.customers[1]),
            json!({"items": [{"item_id": shop.items[1], "quantity": 1}], "payment_method": "pm_card_visa"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["status"], "placed");
    }
    a.terminate();
    b.terminate();
    assert!(a.wait().0);
    assert!(b.wait().0);
}
