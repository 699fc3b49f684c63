//! `ordo bench ws`: holds many WebSocket connections to `/v1/ws`, measures the server's
//! memory per idle connection, then pushes tracking events at a fixed rate and measures
//! how long each takes from the change (the event's `at`, stamped by the server before it
//! commits) to a client's hands, over every delivery.
//!
//! Connections come from several local addresses (`--sources 127.0.0.1,127.0.0.2,…`):
//! each source address has its own range of ephemeral ports, so one machine can open more
//! connections to one server port than one range holds.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{BenchArgs, post};

struct Shared {
    measuring: AtomicBool,
    received: AtomicU64,
    closed: AtomicU64,
    latency: std::sync::Mutex<Histogram<u64>>,
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn connect(
    url: &str,
    addr: SocketAddr,
    source: IpAddr,
    token: &str,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut req = format!("{}/v1/ws", url.replacen("http", "ws", 1)).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?;
    Ok(ws)
}

/// Reads one connection until the end, recording each event's delivery time.
async fn listen(
    mut ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    shared: Arc<Shared>,
) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let now = time::OffsetDateTime::now_utc();
        shared.received.fetch_add(1, Ordering::Relaxed);
        if !shared.measuring.load(Ordering::Relaxed) {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let Some(at) = v["data"]["at"].as_str().and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        }) else {
            continue;
        };
        let us = (now - at).whole_microseconds().max(1) as u64;
        if let Ok(mut h) = shared.latency.lock() {
            let _ = h.record(us);
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    crate::server::raise_file_limit();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()?;
    let url = a.url.trim_end_matches('/').to_owned();
    let addr: SocketAddr = tokio::net::lookup_host(url.trim_start_matches("http://"))
        .await?
        .next()
        .context("the server address")?;
    let admin = post(
        &client,
        &format!("{url}/v1/auth/login"),
        None,
        json!({"email": a.admin_email, "password": a.admin_password}),
    )
    .await
    .context("logging in as admin")?["access_token"]
        .as_str()
        .context("no token")?
        .to_owned();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let item = post(
        &client,
        &format!("{url}/v1/items"),
        Some(&admin),
        json!({"sku": format!("ws-{run_id}"), "name": "WS bench", "price": 100, "currency": "USD", "stock": 1_000_000_000}),
    )
    .await?["id"]
        .as_str()
        .context("item id")?
        .to_owned();

    // Customers, each with one placed order to send tracking events to.
    let customers = a.customers.max(1);
    eprintln!("preparing {customers} customers …");
    let gate = Arc::new(Semaphore::new(8));
    let mut prepared = Vec::new();
    for i in 0..customers {
        let (client, url, item, run_id, gate) = (
            client.clone(),
            url.clone(),
            item.clone(),
            run_id.clone(),
            gate.clone(),
        );
        prepared.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let reg = post(
                &client,
                &format!("{url}/v1/auth/register"),
                None,
                json!({"email": format!("ws-{run_id}-{i}@example.com"), "password": "bench-password", "name": "WS"}),
            )
            .await?;
            let token = reg["access_token"].as_str().context("token")?.to_owned();
            let customer: uuid::Uuid = reg["user"]["id"].as_str().context("user id")?.parse()?;
            let order = post(
                &client,
                &format!("{url}/v1/orders"),
                Some(&token),
                json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_card_visa"}),
            )
            .await?;
            let id = order["id"].as_str().context("order id")?.to_owned();
            anyhow::Ok((token, id, customer))
        }));
    }
    let mut people = Vec::with_capacity(customers);
    for p in prepared {
        people.push(p.await??);
    }

    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        received: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        latency: std::sync::Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
    });
    eprintln!(
        "opening {} connections from {} source address(es) …",
        a.connections,
        a.sources.len()
    );
    let opened = Instant::now();
    let gate = Arc::new(Semaphore::new(256));
    let failed = Arc::new(AtomicU64::new(0));
    let attempted = Arc::new(AtomicU64::new(0));
    let mut opening = Vec::with_capacity(a.connections);
    // In two halves: the server's memory is read after each, and the growth over the
    // second half is what an idle connection costs (the first half may reuse memory the
    // server freed after the setup).
    let half = a.connections / 2;
    let mut rss = Vec::new();
    for range in [0..half, half..a.connections] {
        for i in range.clone() {
            let source = a.sources[i % a.sources.len()];
            let token = people[i % people.len()].0.clone();
            let (url, gate, shared, failed, attempted) = (
                url.clone(),
                gate.clone(),
                shared.clone(),
                failed.clone(),
                attempted.clone(),
            );
            opening.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let ws = connect(&url, addr, source, &token).await;
                drop(permit);
                attempted.fetch_add(1, Ordering::Relaxed);
                match ws {
                    Ok(ws) => listen(ws, shared).await,
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("first failed connection: {e:#}");
                        }
                    }
                }
            }));
        }
        while attempted.load(Ordering::Relaxed) < range.end as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss.push(a.server_pid.and_then(rss_kib));
    }
    let open = a.connections as u64 - failed.load(Ordering::Relaxed);
    let open_secs = opened.elapsed().as_secs_f64() - 4.0;
    let ready: Value = client
        .get(format!("{url}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "ws connections opened={open} failed={} open_secs={open_secs:.1} server_reports={}",
        failed.load(Ordering::Relaxed),
        ready["realtime_connections"]
    );
    if let [Some(first), Some(all)] = rss[..] {
        println!(
            "ws server_rss_half_mib={:.1} server_rss_all_mib={:.1} kib_per_idle_connection={:.1}",
            first as f64 / 1024.0,
            all as f64 / 1024.0,
            all.saturating_sub(first) as f64 / (a.connections - half).max(1) as f64
        );
    }

    // Tracking events at a fixed rate, spread over the customers' orders: through the API
    // (the whole write path), or written straight into the event log (`--insert-into`:
    // only the relay and the push are measured).
    let sent = Arc::new(AtomicU64::new(0));
    let send_failed = Arc::new(AtomicU64::new(0));
    let direct = match &a.insert_into {
        Some(db) => Some(crate::storage::connect(db, 4).await?),
        None => None,
    };
    let workers = if direct.is_some() { 4 } else { 64 };
    let (tx, rx) = async_channel(workers * 64);
    let mut senders = Vec::new();
    for _ in 0..workers {
        let (client, url, admin, rx, sent, send_failed, direct) = (
            client.clone(),
            url.clone(),
            admin.clone(),
            rx.clone(),
            sent.clone(),
            send_failed.clone(),
            direct.clone(),
        );
        senders.push(tokio::spawn(async move {
            while let Ok(batch) = rx.recv_batch(64).await {
                let ok = match &direct {
                    Some(store) => {
                        let at = crate::storage::Ts::truncated(time::OffsetDateTime::now_utc());
                        // The ids come from the API's answers: one that does not parse
                        // fails the batch rather than scanning a made-up order.
                        let pairs: Result<Vec<_>, _> = batch
                            .iter()
                            .map(|(o, c)| o.parse::<uuid::Uuid>().map(|o| (o, *c)))
                            .collect();
                        match pairs {
                            Ok(pairs) => store.bench_insert_events(&pairs, at).await.is_ok(),
                            Err(_) => false,
                        }
                    }
                    None => {
                        let mut all = true;
                        for (order, _) in &batch {
                            let r = client
                                .post(format!("{url}/v1/orders/{order}/tracking"))
                                .bearer_auth(&admin)
                                .json(&json!({"description": "in transit", "carrier_status": "in_transit"}))
                                .send()
                                .await;
                            all &= matches!(r, Ok(res) if res.status().is_success());
                        }
                        all
                    }
                };
                if ok {
                    sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                } else {
                    send_failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    let pace = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let warmup = Duration::from_secs(a.warmup);
    let measure = Duration::from_secs(a.duration);
    let started = Instant::now();
    let step = Duration::from_millis(1);
    let mut tick = tokio::time::interval(step);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n: u64 = 0;
    let mut marks = None;
    while started.elapsed() < warmup + measure {
        if marks.is_none() && started.elapsed() >= warmup {
            shared.measuring.store(true, Ordering::Relaxed);
            marks = Some((
                Instant::now(),
                sent.load(Ordering::Relaxed),
                shared.received.load(Ordering::Relaxed),
            ));
        }
        tick.tick().await;
        // Events due by now, at the asked rate.
        let due = (started.elapsed().as_secs_f64() / pace.as_secs_f64()) as u64;
        while n < due {
            n += 1;
            let p = &people[(n as usize).wrapping_mul(7919) % people.len()];
            // A full queue means the senders cannot keep up; the achieved rate says so.
            let _ = tx.try_send((p.1.clone(), p.2));
        }
    }
    let (t0, sent0, recv0) = marks.context("no measuring window")?;
    let secs = t0.elapsed().as_secs_f64();
    let sent1 = sent.load(Ordering::Relaxed);
    // Let the last deliveries land before reading the numbers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let recv1 = shared.received.load(Ordering::Relaxed);
    drop(tx);
    let h = shared
        .latency
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "ws events_per_s={:.0} (asked {}) deliveries_per_s={:.0} deliveries={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} send_failed={} connections_closed={}",
        (sent1 - sent0) as f64 / secs,
        a.rate,
        (recv1 - recv0) as f64 / secs,
        h.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0,
        send_failed.load(Ordering::Relaxed),
        shared.closed.load(Ordering::Relaxed)
    );
    for s in senders {
        s.abort();
    }
    for o in opening {
        o.abort();
    }
    Ok(())
}

/// An event to send: (order id, customer id).
type Job = (String, uuid::Uuid);

/// A bounded multi-consumer queue (tokio's mpsc has one consumer).
fn async_channel(cap: usize) -> (Sender, Receiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap);
    (Sender(tx), Receiver(Arc::new(tokio::sync::Mutex::new(rx))))
}

struct Sender(tokio::sync::mpsc::Sender<Job>);

impl Sender {
    fn try_send(&self, v: Job) -> Result<(), ()> {
        self.0.try_send(v).map_err(|_| ())
    }
}

#[derive(Clone)]
struct Receiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>);

impl Receiver {
    /// Up to `max` queued jobs (waits for at least one).
    async fn recv_batch(&self, max: usize) -> Result<Vec<Job>, ()> {
        let mut out = Vec::new();
        let n = self.0.lock().await.recv_many(&mut out, max).await;
        if n == 0 { Err(()) } else { Ok(out) }
    }
}
