//! A real browser for the page tests: Debian's `chromium`, driven over WebDriver by its
//! `chromedriver` (started here on a free port, with a fresh profile), through a small
//! WebDriver client of our own on reqwest. Never a browser download.
//!
//! Also a TCP proxy in front of the test server, so that a test can drop the browser's
//! connections (and refuse new ones for a while) the way a flaky network would.

use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Browsers at once across the test binary: each is several processes, and the machine
/// running the suite may be small.
static SLOTS: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| tokio::sync::Semaphore::new(2));

pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (375, 812);

pub struct Browser {
    http: reqwest::Client,
    driver_url: String,
    session: String,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless chromium. Without them the test fails at once,
    /// with one line that says what to install.
    pub async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                panic!(
                    "browser tests need Debian's chromium and chromium-driver ({bin} is missing): apt-get install chromium chromium-driver"
                );
            }
        }
        let slot = SLOTS.acquire().await.expect("browser slot");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = std::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let driver_url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{driver_url}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let r: Value = http
            .post(format!("{driver_url}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium did not start: {r}"))
            .to_owned();
        let b = Browser {
            http,
            driver_url,
            session,
            driver,
            _profile: profile,
            _slot: slot,
        };
        b.cmd(
            "POST",
            "/timeouts",
            json!({"implicit": 0, "pageLoad": 30000, "script": 30000}),
        )
        .await;
        b
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.driver_url, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let res: Value = req
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        if let Some(err) = res["value"]["error"].as_str() {
            panic!(
                "webdriver {method} {path}: {err}: {}",
                res["value"]["message"]
            );
        }
        res["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.cmd(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        )
        .await
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
    }

    /// The first element matching `css` once one is there and shown (within 10 s).
    pub async fn find(&self, css: &str) -> Element {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            for e in self.find_all(css).await {
                if self.displayed(&e).await {
                    return e;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no visible element matches {css} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn testid(&self, id: &str) -> Element {
        self.find(&format!("[data-testid=\"{id}\"]")).await
    }

    pub async fn displayed(&self, e: &Element) -> bool {
        self.cmd("GET", &format!("/element/{}/displayed", e.0), Value::Null)
            .await
            .as_bool()
            .unwrap_or(false)
    }

    pub async fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.cmd(
            "GET",
            &format!("/element/{}/attribute/{name}", e.0),
            Value::Null,
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    pub async fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn clear(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/clear", e.0), json!({}))
            .await;
    }

    /// Types `text` into the element (`\u{E007}` is the Enter key).
    pub async fn type_into(&self, e: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({"text": text}),
        )
        .await;
    }

    /// Picks the option with this value in a `<select>`.
    pub async fn select(&self, e: &Element, value: &str) {
        let css = format!("option[value=\"{value}\"]");
        let opt = self
            .cmd(
                "POST",
                &format!("/element/{}/element", e.0),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        let id = opt[ELEMENT].as_str().expect("option").to_owned();
        self.click(&Element(id)).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until `script` returns something truthy (within `within`); returns it.
    pub async fn until(&self, within: Duration, script: &str, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = self.exec(script, json!([])).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited in vain for {what} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the text of the first `css` element contains `want`.
    pub async fn until_text(&self, css: &str, want: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e && e.getClientRects().length > 0 && e.textContent.includes({}) ? e.textContent : null;",
            json!(css),
            json!(want)
        );
        self.until(
            Duration::from_secs(10),
            &script,
            &format!("{css} to read {want:?}"),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub async fn count(&self, css: &str) -> usize {
        self.find_all(css).await.len()
    }

    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Checks the page at desktop and phone width for sideways overflow and, with
    /// `ORDO_SCREENSHOTS` set, saves it as `docs/pages/<name>-desktop.png` and `…-phone.png`.
    pub async fn pictures(&self, name: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/pages");
        std::fs::create_dir_all(&dir).expect("docs/pages");
        for (size, label) in [(DESKTOP, "desktop"), (PHONE, "phone")] {
            self.resize(size).await;
            self.exec(
                "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);",
                json!([]),
            )
            .await;
            // Let the layout settle at the new width (and animations end).
            tokio::time::sleep(Duration::from_millis(300)).await;
            if self.scrolls_sideways().await {
                let wide = self
                    .exec(
                        "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 8).map(e => e.tagName + '#' + e.id + '.' + e.className).join(', ');",
                        json!([]),
                    )
                    .await;
                panic!("{name} is wider than a {label} screen: {wide}");
            }
            let png = self.cmd("GET", "/screenshot", Value::Null).await;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png.as_str().expect("png"))
                .expect("base64");
            // Only on request, so a test run leaves the tree as it was.
            if std::env::var_os("ORDO_SCREENSHOTS").is_some() {
                std::fs::write(dir.join(format!("{name}-{label}.png")), bytes).expect("write png");
            }
        }
        self.resize(DESKTOP).await;
    }

    /// Does the page overflow sideways (something wider than the window)?
    pub async fn scrolls_sideways(&self) -> bool {
        self.exec(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            json!([]),
        )
        .await
        .as_bool()
        .unwrap_or(true)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (chromium with it), then the driver. Drop cannot await: a raw
        // request on a plain socket does it.
        use std::io::{Read, Write};
        if let Some(addr) = self.driver_url.strip_prefix("http://")
            && let Ok(mut s) = std::net::TcpStream::connect(addr)
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if s.write_all(req.as_bytes()).is_ok() {
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A TCP proxy to the test server that can drop every open connection and refuse new ones.
pub struct Flaky {
    pub url: String,
    down: std::sync::Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Flaky {
    pub async fn start(target: &str) -> Flaky {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let down = std::sync::Arc::new(AtomicBool::new(false));
        let (cut, watch) = tokio::sync::watch::channel(0u64);
        let d = down.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut watch = watch.clone();
                watch.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.changed() => {}
                    }
                });
            }
        });
        Flaky { url, down, cut }
    }

    /// Drops every connection open now and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
