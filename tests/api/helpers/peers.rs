//! Test peers: a recording HTTP receiver standing in for providers and webhook
//! receivers, and the check that an installed peer is there.

use std::sync::Arc;

/// One request an HTTP receiver got.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
}

/// A local HTTP server standing in for a provider or a webhook receiver: it records every
/// request and answers with the scripted statuses (and headers) in turn, then 200.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    seen: Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl Receiver {
    pub async fn start(script: Vec<(u16, Vec<(&'static str, &'static str)>)>) -> Receiver {
        use axum::response::IntoResponse;
        let seen: Arc<std::sync::Mutex<Vec<Recorded>>> = Arc::default();
        let script = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            script,
        )));
        let (s2, sc) = (seen.clone(), script.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let (seen, script) = (s2.clone(), sc.clone());
                async move {
                    seen.lock().unwrap().push(Recorded {
                        path: uri.path().to_owned(),
                        headers,
                        body,
                    });
                    let (status, headers) =
                        script.lock().unwrap().pop_front().unwrap_or((200, vec![]));
                    let mut res = (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        r#"{"sid":"SM0123456789"}"#,
                    )
                        .into_response();
                    for (k, v) in headers {
                        res.headers_mut().insert(k, v.parse().unwrap());
                    }
                    res
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, seen }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

/// Fails the test at once, with one clear line, when a test peer is not installed (instead
/// of waiting for it to start). `check` is a shell command that succeeds when it is there.
pub fn require_peer(what: &str, check: &str) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen.iter().any(|s| s == check) {
        return;
    }
    let there = std::process::Command::new("sh")
        .args(["-c", check])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        there,
        "{what} is not installed: run scripts/test.sh, which sets up every test peer"
    );
    seen.push(check.to_owned());
}
