//! `ordo bench`: an HTTP load generator against a running server. It prepares its own
//! items and customers (through the API, as admin), then drives one workload with many
//! concurrent clients for a fixed time and reports throughput and latency percentiles.
//! `ordo bench ws` (in `bench/ws.rs`) holds many real-time connections instead.

mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
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
    /// WebSocket connections held open, then status changes pushed to them (see the
    /// `--connections`, `--sources`, `--rate` options).
    Ws,
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
    #[arg(long, default_value = "pm_card_visa")]
    pub payment_method: String,
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
    let mut items = Vec::new();
    let n_items = if a.workload == Workload::Hot {
        1
    } else {
        a.items.max(1)
    };
    for i in 0..n_items {
        let item = post(
            &client,
            &format!("{url}/v1/items"),
            Some(&admin),
            json!({"sku": format!("bench-{run}-{i}"), "name": format!("Bench item {i}"), "price": 1000 + i as i64,
                   "currency": "USD", "stock": 1_000_000_000}),
        )
        .await?;
        items.push(item["id"].as_str().context("item id")?.to_owned());
    }
    let mut customers = Vec::new();
    for i in 0..a.customers.max(1) {
        let reg = post(
            &client,
            &format!("{url}/v1/auth/register"),
            None,
            json!({"email": format!("bench-{run}-{i}@example.com"), "password": "bench-password", "name": "Bench"}),
        )
        .await?;
        customers.push(reg["access_token"].as_str().context("token")?.to_owned());
    }
    Ok(Setup {
        client,
        url,
        items,
        customers,
    })
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    hist: Option<Histogram<u64>>,
    first_error: Option<String>,
}

async fn one_request(s: &Setup, a: &BenchArgs, n: u64) -> Result<(), String> {
    let token = &s.customers[(n as usize) % s.customers.len()];
    let res = match a.workload {
        Workload::Reads => {
            s.client
                .get(format!("{}/v1/orders?limit=20", s.url))
                .bearer_auth(token)
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
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let a = Arc::new(a);
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (s, a, measuring, stop) = (s.clone(), a.clone(), measuring.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut t = Tally {
                hist: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok(),
                ..Tally::default()
            };
            let mut n = w as u64 * 1_000_003;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let r = one_request(&s, &a, n).await;
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match r {
                    Ok(()) => {
                        t.ok += 1;
                        if let Some(h) = t.hist.as_mut() {
                            let _ = h.record(started.elapsed().as_micros() as u64);
                        }
                    }
                    Err(e) => {
                        t.failed += 1;
                        t.first_error.get_or_insert(e);
                    }
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
    let mut total = Tally {
        hist: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok(),
        ..Tally::default()
    };
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
    let h = total.hist.context("histogram")?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{:?} tps={:.0} ok={} failed={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} concurrency={}",
        a.workload,
        total.ok as f64 / elapsed,
        total.ok,
        total.failed,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0,
        a.concurrency
    );
    if let Some(e) = total.first_error {
        eprintln!("first error: {e}");
    }
    Ok(())
}
