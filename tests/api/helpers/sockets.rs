//! A WebSocket client of `/v1/ws`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{Resp, TestApp};

/// A WebSocket client of `/v1/ws`.
pub struct WsClient {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What a WebSocket client got next.
#[derive(Debug)]
pub enum Got {
    Json(Value),
    Closed(Option<(u16, String)>),
    Nothing,
}

impl WsClient {
    /// The next text message (as JSON) or close, skipping pings; `Nothing` after `within`.
    pub async fn next(&mut self, within: Duration) -> Got {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Got::Nothing,
                Ok(None) | Ok(Some(Err(_))) => return Got::Closed(None),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => return Got::Json(serde_json::from_str(&t).expect("JSON")),
                Message::Close(frame) => {
                    return Got::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                _ => {}
            }
        }
    }

    /// The next message, which must be JSON.
    pub async fn json(&mut self) -> Value {
        match self.next(Duration::from_secs(10)).await {
            Got::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Messages until one has id `last` (inclusive); panics on anything else.
    pub async fn until_id(&mut self, last: i64) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            let v = self.json().await;
            let id: i64 = v["id"].as_str().expect("id").parse().expect("numeric id");
            got.push(v);
            if id >= last {
                return got;
            }
        }
    }

    pub async fn send(&mut self, v: Value) {
        use futures::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(
                v.to_string().into(),
            ))
            .await
            .expect("send");
    }
}

impl TestApp {
    /// Opens `/v1/ws{query}` with `token` in the Authorization header.
    pub async fn ws(&self, query: &str, token: &str) -> WsClient {
        self.try_ws(query, Some(token)).await.expect("websocket")
    }

    /// Opens `/v1/ws{query}`; the refusal's status and body if the server says no.
    pub async fn try_ws(&self, query: &str, token: Option<&str>) -> Result<WsClient, Resp> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/ws{query}", self.url.replacen("http", "ws", 1));
        let mut req = url.into_client_request().expect("request");
        if let Some(t) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((stream, _)) => Ok(WsClient { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                let status = StatusCode::from_u16(res.status().as_u16()).expect("status");
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in res.headers() {
                    if let (Ok(k), Ok(v)) = (
                        reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()),
                        reqwest::header::HeaderValue::from_bytes(v.as_bytes()),
                    ) {
                        headers.insert(k, v);
                    }
                }
                let text =
                    String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned();
                let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                Err(Resp {
                    status,
                    headers,
                    body,
                    text,
                })
            }
            Err(e) => panic!("websocket: {e}"),
        }
    }
}
