//! `ordo bench`: an HTTP load generator against a running server. It prepares its own
//! items and customers (through the API, as admin), then drives one workload with many
//! concurrent clients for a fixed time and reports throughput and latency percentiles.
//! `ordo bench ws` (in `bench/ws.rs`) holds many real-time connections instead.

mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// POST /v1/orders: one line, a random item (no contention).
    Orders,
    /// POST /v1/orders: every order on the same item (a flash sale).
    Hot,
    /// POST /v1/orders with `payment_method`: placed and paid in one call.
    Checkout,
    /// GET /v1/orders?limit=20 as a customer.
    Reads,
    /// GET /v1/search with one or two words (prefixes, typos, filters, sorts) over `--items`
    /// items named from a small vocabulary (use `--items 100000`).
    Search,
    /// POST /v1/users/me/cart/checkout with `payment_method`, in rounds: each client fills
    /// the carts of its `--carts-per-client` customers (16; not timed), then all check out (timed).
    /// `tps` is the checkouts' rate (compare `checkout`), `flow_tps` that of the whole
    /// rounds, the adds included.
    CartCheckout,
    /// GET /v1/users/me/recommendations and /v1/items/{id}/bought-together, after
    /// `--orders` paid orders of two to four items have been placed (and counted).
    Recommendations,
    /// The pages a browser asks for, in turn: the shop front (plain, searched, one
    /// category), cart, sign-in, my orders, a tracking page and the console.
    Pages,
    /// WebSocket connections held open, then status changes pushed to them (see the
    /// `--connections`, `--sources`, `--rate` options).
    Ws,
    /// GET /v1/analytics/summary as admin, over all time, the last 30 days, a 90-day
    /// window that starts and ends mid-day, and the last year, in turn.
    Analytics,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub workload: Workload,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, env = "ORDO_ADMIN_EMAIL")]
    pub admin_email: String,
    #[arg(long, env = "ORDO_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// Concurrent clients (each keeps one connection busy).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of measured load (after a short warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Items to spread orders over.
    #[arg(long, default_value_t = 1000)]
    pub items: usize,
    /// Customers placing the orders.
    #[arg(long, default_value_t = 50)]
    pub customers: usize,
    /// Customers `<prefix>-<n>@example.com`, signed in when they exist (so that a later
    /// run reads the orders of an earlier one); fresh ones per run without it.
    #[arg(long)]
    pub customer_prefix: Option<String>,
    #[arg(long, default_value = "pm_card_visa")]
    pub payment_method: String,
    /// cart-checkout: carts each client fills, then checks out one after another, per
    /// round. Short rounds measure bursts (every client starts its checkouts at the same
    /// moment, and the round waits for the slowest); long ones come closer to the steady
    /// load `checkout` measures. Each cart is a customer of its own, registered first.
    #[arg(long, default_value_t = 16)]
    pub carts_per_client: usize,
    /// recommendations: paid orders to place before measuring.
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// ws: WebSocket connections to hold (spread over the customers).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// ws: local addresses to connect from, comma-separated (each gives its own range of
    /// ports; 127.0.0.1, 127.0.0.2, … all reach a server on loopback).
    #[arg(long, default_value = "127.0.0.1", value_delimiter = ',')]
    pub sources: Vec<std::net::IpAddr>,
    /// ws: tracking events per second to push while measuring.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// ws: the server's process id, to read its memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// ws: write the events straight into this database's event log instead of through
    /// the API, to measure the relay and the push alone (the server's own `DATABASE_URL`).
    #[arg(long)]
    pub insert_into: Option<String>,
}

struct Setup {
    client: reqwest::Client,
    url: String,
    items: Vec<String>,
    customers: Vec<String>,
    admin: String,
}

pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{url}: {status} {body}");
    Ok(body)
}

async fn setup(a: &BenchArgs) -> anyhow::Result<Setup> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .tcp_nodelay(true)
        .build()?;
    let url = a.url.trim_end_matches('/').to_owned();
    let login = post(
        &client,
        &format!("{url}/v1/auth/login"),
        None,
        json!({"email": a.admin_email, "password": a.admin_password}),
    )
    .await
    .context("logging in as admin")?;
    let admin = login["access_token"]
        .as_str()
        .context("no token")?
        .to_owned();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let n_items = if a.workload == Workload::Hot {
        1
    } else {
        a.items.max(1)
    };
    // Items are made 32 at a time: a search catalogue has 100,000 of them.
    let items: Vec<String> = futures::stream::iter(0..n_items)
        .map(|i| {
            let (client, url, admin, run) = (&client, &url, &admin, &run);
            async move {
                let item = post(
                    client,
                    &format!("{url}/v1/items"),
                    Some(admin),
                    item_body(run, i, a.workload == Workload::Search),
                )
                .await?;
                anyhow::Ok(item["id"].as_str().context("item id")?.to_owned())
            }
        })
        .buffered(32)
        .try_collect()
        .await?;
    let n_customers = if a.workload == Workload::CartCheckout {
        // Carts of their own: two checkouts of one cart would refuse each other.
        a.customers.max(a.concurrency * a.carts_per_client.max(1))
    } else {
        a.customers.max(1)
    };
    // Signed in or registered 8 at a time (each one hashes a password), in order.
    let customers: Vec<String> = futures::stream::iter(0..n_customers)
        .map(|i| {
            let (client, url, run) = (&client, &url, &run);
            async move {
                let email = match &a.customer_prefix {
                    Some(p) => format!("{p}-{i}@example.com"),
                    None => format!("bench-{run}-{i}@example.com"),
                };
                let login = json!({"email": email, "password": "bench-password"});
                let known = match a.customer_prefix {
                    Some(_) => post(client, &format!("{url}/v1/auth/login"), None, login)
                        .await
                        .ok(),
                    None => None,
                };
                let reg =
                    match known {
                        Some(r) => r,
                        None => post(
                            client,
                            &format!("{url}/v1/auth/register"),
                            None,
                            json!({"email": email, "password": "bench-password", "name": "Bench"}),
                        )
                        .await?,
                    };
                anyhow::Ok(reg["access_token"].as_str().context("token")?.to_owned())
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(Setup {
        client,
        url,
        items,
        customers,
        admin,
    })
}

/// Words the search catalogue is made of, and searched with.
const ADJECTIVES: [&str; 20] = [
    "black",
    "silver",
    "compact",
    "wireless",
    "smart",
    "portable",
    "classic",
    "premium",
    "outdoor",
    "digital",
    "vintage",
    "electric",
    "ergonomic",
    "foldable",
    "waterproof",
    "quiet",
    "rapid",
    "modular",
    "solar",
    "acoustic",
];
const NOUNS: [&str; 25] = [
    "television",
    "speaker",
    "camera",
    "keyboard",
    "monitor",
    "headphones",
    "lamp",
    "kettle",
    "blender",
    "router",
    "charger",
    "backpack",
    "jacket",
    "sneakers",
    "bicycle",
    "tent",
    "drill",
    "guitar",
    "printer",
    "projector",
    "microwave",
    "vacuum",
    "thermostat",
    "watch",
    "tablet",
];
const CATEGORIES: [&str; 10] = [
    "electronics",
    "audio",
    "photo",
    "computers",
    "home",
    "kitchen",
    "outdoor",
    "fashion",
    "tools",
    "music",
];

/// The `i`-th bench item: a name and description from the vocabulary; with
/// `some_sold_out`, one in 20 has no stock.
fn item_body(run: &str, i: usize, some_sold_out: bool) -> Value {
    let adjective = ADJECTIVES[i % ADJECTIVES.len()];
    let noun = NOUNS[(i / ADJECTIVES.len()) % NOUNS.len()];
    let other = NOUNS[(i * 7 + 3) % NOUNS.len()];
    json!({
        "sku": format!("bench-{run}-{i}"),
        "name": format!("{adjective} {noun} {i}"),
        "category": CATEGORIES[i % CATEGORIES.len()],
        "description": format!("A {adjective} {noun} that goes well with any {other}."),
        "price": 1000 + (i as i64 * 37) % 100_000,
        "currency": "USD",
        "stock": if some_sold_out && i.is_multiple_of(20) { 0 } else { 1_000_000_000 },
    })
}

/// The `n`-th search: a word, a prefix, a typo, two words, with filters and sorts.
/// The `n`th page of the `pages` workload.
fn page_path(n: u64, s: &Setup) -> String {
    let n = n as usize;
    let noun = NOUNS[(n / 8) % NOUNS.len()];
    match n % 8 {
        0 => "/".to_owned(),
        1 => format!("/?q={noun}"),
        2 => format!("/?category={}", CATEGORIES[(n / 8) % CATEGORIES.len()]),
        3 => "/cart".to_owned(),
        4 => "/login".to_owned(),
        5 => "/orders".to_owned(),
        // The tracking page's shell: the order itself is read by its script.
        6 => format!("/orders/{}", s.items[(n / 8) % s.items.len()]),
        _ => "/admin/orders?status=placed".to_owned(),
    }
}

fn search_path(n: u64) -> String {
    let n = n as usize;
    let noun = NOUNS[n % NOUNS.len()];
    let adjective = ADJECTIVES[(n / 3) % ADJECTIVES.len()];
    let query = match n % 5 {
        0 => noun.to_owned(),
        1 => noun.chars().take(4).collect(),
        2 => {
            // One letter dropped from the middle.
            let mut w: Vec<char> = noun.chars().collect();
            w.remove(w.len() / 2);
            w.into_iter().collect()
        }
        3 => format!("{adjective} {noun}"),
        _ => adjective.to_owned(),
    };
    let extra = match n % 4 {
        0 => String::new(),
        1 => "&sort=price".to_owned(),
        2 => format!("&category={}", CATEGORIES[n % CATEGORIES.len()]),
        _ => "&max_price=50000".to_owned(),
    };
    format!(
        "/v1/search?query={}&limit=20{extra}",
        query.replace(' ', "+")
    )
}

/// Waits until the consumer's position gauge (`/metrics`) has not moved for 3 s; returns
/// the seconds waited, not counting those 3.
async fn consumer_idle(s: &Setup, gauge: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let (mut last, mut since) = (String::new(), Instant::now());
    loop {
        let text = s
            .client
            .get(format!("{}/metrics", s.url))
            .send()
            .await?
            .text()
            .await?;
        let now = text
            .lines()
            .find(|l| l.starts_with(gauge))
            .unwrap_or_default()
            .to_owned();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(3) {
            return Ok((since - started).as_secs_f64());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "{gauge} still moving after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Places `a.orders` paid orders of two to four items, 32 at a time, so that the
/// co-purchase counts have something to count.
async fn seed_orders(s: &Setup, a: &BenchArgs) -> anyhow::Result<()> {
    futures::stream::iter(0..a.orders)
        .map(|n| async move {
            let lines: Vec<Value> = (0..2 + n % 3)
                .map(|k| {
                    // Neighbouring items are bought together more often than others.
                    let item = &s.items[(n * 13 + k * (1 + n % 5)) % s.items.len()];
                    json!({"item_id": item, "quantity": 1})
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            let lines: Vec<Value> = lines
                .into_iter()
                .filter(|l| seen.insert(l["item_id"].to_string()))
                .collect();
            post(
                &s.client,
                &format!("{}/v1/orders", s.url),
                Some(&s.customers[n % s.customers.len()]),
                json!({"items": lines, "payment_method": a.payment_method}),
            )
            .await
        })
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// cart-checkout: fills customer `w`'s cart with one line (not timed).
async fn prepare(s: &Setup, w: usize, n: u64) -> Result<(), String> {
    let item = &s.items[(n as usize).wrapping_mul(7919) % s.items.len()];
    post(
        &s.client,
        &format!("{}/v1/users/me/cart", s.url),
        Some(&s.customers[w % s.customers.len()]),
        json!({"item_id": item, "quantity": 1}),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    hist: Option<Histogram<u64>>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            hist: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok(),
            ..Tally::default()
        }
    }

    /// One request's outcome, started at `started`.
    fn count(&mut self, r: Result<(), String>, started: Instant) {
        match r {
            Ok(()) => {
                self.ok += 1;
                if let Some(h) = self.hist.as_mut() {
                    let _ = h.record(started.elapsed().as_micros() as u64);
                }
            }
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    /// The clients' tallies, added up.
    async fn sum(workers: Vec<tokio::task::JoinHandle<Tally>>) -> anyhow::Result<Tally> {
        let mut total = Tally::new();
        for w in workers {
            let t = w.await?;
            total.ok += t.ok;
            total.failed += t.failed;
            if let (Some(h), Some(th)) = (total.hist.as_mut(), t.hist.as_ref()) {
                let _ = h.add(th);
            }
            if total.first_error.is_none() {
                total.first_error = t.first_error;
            }
        }
        Ok(total)
    }

    /// The summary line: throughput over `secs`, latency percentiles, then `extra`.
    fn report(&self, a: &BenchArgs, secs: f64, extra: &str) -> anyhow::Result<()> {
        let h = self.hist.as_ref().context("histogram")?;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:?} tps={:.0} ok={} failed={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} concurrency={}{extra}",
            a.workload,
            self.ok as f64 / secs,
            self.ok,
            self.failed,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            h.max() as f64 / 1000.0,
            a.concurrency
        );
        if let Some(e) = &self.first_error {
            eprintln!("first error: {e}");
        }
        Ok(())
    }
}

/// The `n`-th analytics summary asked for: all time, the last 30 days, a 90-day window
/// starting and ending mid-day, the last year.
fn analytics_path(n: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    let at = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default().replace('+', "%2B");
    let day = time::Duration::DAY;
    match n % 4 {
        0 => "/v1/analytics/summary".to_owned(),
        1 => format!("/v1/analytics/summary?from={}", at(now - 30 * day)),
        2 => format!(
            "/v1/analytics/summary?from={}&to={}",
            at(now - 120 * day + time::Duration::hours(7)),
            at(now - 30 * day + time::Duration::hours(5))
        ),
        _ => format!("/v1/analytics/summary?from={}", at(now - 365 * day)),
    }
}

async fn one_request(s: &Setup, a: &BenchArgs, w: usize, n: u64) -> Result<(), String> {
    let token = &s.customers[(n as usize) % s.customers.len()];
    let res = match a.workload {
        Workload::Search => {
            s.client
                .get(format!("{}{}", s.url, search_path(n)))
                .bearer_auth(token)
                .send()
                .await
        }
        Workload::Recommendations => {
            let path = if n.is_multiple_of(2) {
                "/v1/users/me/recommendations".to_owned()
            } else {
                let item = &s.items[(n as usize).wrapping_mul(7919) % s.items.len()];
                format!("/v1/items/{item}/bought-together")
            };
            s.client
                .get(format!("{}{path}", s.url))
                .bearer_auth(token)
                .send()
                .await
        }
        Workload::CartCheckout => {
            s.client
                .post(format!("{}/v1/users/me/cart/checkout", s.url))
                .bearer_auth(&s.customers[w % s.customers.len()])
                .json(&json!({"payment_method": a.payment_method}))
                .send()
                .await
        }
        Workload::Pages => {
            s.client
                .get(format!("{}{}", s.url, page_path(n, s)))
                .header(reqwest::header::ACCEPT, "text/html")
                .send()
                .await
        }
        Workload::Reads => {
            s.client
                .get(format!("{}/v1/orders?limit=20", s.url))
                .bearer_auth(token)
                .send()
                .await
        }
        Workload::Analytics => {
            s.client
                .get(format!("{}{}", s.url, analytics_path(n)))
                .bearer_auth(&s.admin)
                .send()
                .await
        }
        Workload::Orders | Workload::Hot | Workload::Checkout | Workload::Ws => {
            let item = &s.items[(n as usize).wrapping_mul(7919) % s.items.len()];
            let mut body = json!({"items": [{"item_id": item, "quantity": 1}]});
            if a.workload == Workload::Checkout {
                body["payment_method"] = json!(a.payment_method);
            }
            s.client
                .post(format!("{}/v1/orders", s.url))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
        }
    };
    let res = res.map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status} {}", String::from_utf8_lossy(&body)))
    }
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if a.workload == Workload::Ws {
        return ws::run(a).await;
    }
    let s = Arc::new(setup(&a).await?);
    if a.workload == Workload::Reads {
        // Give every customer a history to read.
        for n in 0..(s.customers.len() * 20) as u64 {
            let item = &s.items[(n as usize) % s.items.len()];
            let token = &s.customers[(n as usize) % s.customers.len()];
            post(
                &s.client,
                &format!("{}/v1/orders", s.url),
                Some(token),
                json!({"items": [{"item_id": item, "quantity": 1}]}),
            )
            .await?;
        }
    }
    if a.workload == Workload::Recommendations {
        let seeding = Instant::now();
        seed_orders(&s, &a).await?;
        eprintln!(
            "seeded {} orders in {:.1} s",
            a.orders,
            seeding.elapsed().as_secs_f64()
        );
        // The counts follow the event log a moment behind: wait for them to catch up.
        let caught_up = consumer_idle(&s, "ordo_recommendations_position").await?;
        eprintln!("the recommendations consumer caught up {caught_up:.1} s after the last order");
    }
    let a = Arc::new(a);
    if a.workload == Workload::CartCheckout {
        return cart_rounds(s, a).await;
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (s, a, measuring, stop) = (s.clone(), a.clone(), measuring.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut t = Tally::new();
            let mut n = w as u64 * 1_000_003;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let r = one_request(&s, &a, w, n).await;
                if measuring.load(Ordering::Relaxed) {
                    t.count(r, started);
                }
            }
            t
        }));
    }
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    Tally::sum(workers).await?.report(&a, elapsed, "")
}

/// cart-checkout, in rounds: every client fills the carts of its `--carts-per-client`
/// customers (an add-to-cart each, not timed), then all clients check them out at once
/// (timed). `tps` is the checkouts over the time the checkout phases took, which is what
/// compares with `checkout`; `flow_tps` is the same checkouts over the whole rounds, the
/// adds included (three durable writes per order against checkout's two).
async fn cart_rounds(s: Arc<Setup>, a: Arc<BenchArgs>) -> anyhow::Result<()> {
    let barrier = Arc::new(tokio::sync::Barrier::new(a.concurrency));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // Decided by client 0 before each round, read by all after the round's first barrier.
    let round_stop = Arc::new(AtomicBool::new(false));
    let round_timed = Arc::new(AtomicBool::new(false));
    // Microseconds of the timed rounds: their checkout phases, and the rounds whole.
    let phases = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (s, a, barrier) = (s.clone(), a.clone(), barrier.clone());
        let (measuring, stop, round_stop, round_timed) = (
            measuring.clone(),
            stop.clone(),
            round_stop.clone(),
            round_timed.clone(),
        );
        let (phases, rounds) = (phases.clone(), rounds.clone());
        workers.push(tokio::spawn(async move {
            let mut t = Tally::new();
            let mine: Vec<usize> = (0..a.carts_per_client.max(1))
                .map(|k| w + k * a.concurrency)
                .collect();
            let mut n = w as u64 * 1_000_003;
            loop {
                let round = Instant::now();
                let mut filled = Vec::new();
                for &c in &mine {
                    n += 1;
                    filled.push(prepare(&s, c, n).await);
                }
                if w == 0 {
                    round_stop.store(stop.load(Ordering::Relaxed), Ordering::Relaxed);
                    round_timed.store(measuring.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                barrier.wait().await;
                if round_stop.load(Ordering::Relaxed) {
                    break;
                }
                let timed = round_timed.load(Ordering::Relaxed);
                let phase = Instant::now();
                for (&c, fill) in mine.iter().zip(filled) {
                    let started = Instant::now();
                    let r = match fill {
                        Ok(()) => one_request(&s, &a, c, n).await,
                        Err(e) => Err(e),
                    };
                    if timed {
                        t.count(r, started);
                    }
                }
                barrier.wait().await;
                if w == 0 && timed {
                    phases.fetch_add(phase.elapsed().as_micros() as u64, Ordering::Relaxed);
                    rounds.fetch_add(round.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            }
            t
        }));
    }
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let total = Tally::sum(workers).await?;
    let secs = |us: &AtomicU64| (us.load(Ordering::Relaxed) as f64 / 1e6).max(1e-9);
    total.report(
        &a,
        secs(&phases),
        &format!(" flow_tps={:.0}", total.ok as f64 / secs(&rounds)),
    )
}
