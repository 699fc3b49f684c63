//! The providers deliveries go through: SMTP (lettre), Twilio's Messages API, and HTTP
//! webhooks (with the guard that keeps them off private networks). Each says whether a
//! failure is worth retrying.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::domain::{Message, is_public};
use crate::config::Secret;

/// Why an attempt failed, and whether another attempt may succeed.
#[derive(Debug)]
pub struct SendError {
    pub message: String,
    /// No retry will help (a refused address, a 4xx other than 408/429).
    pub permanent: bool,
    /// The receiver asked to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl SendError {
    fn transient(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            permanent: false,
            retry_after: None,
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            permanent: true,
            retry_after: None,
        }
    }
}

/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// E-mail over SMTP (`ORDO_SMTP_URL`: `smtp://host:port`, `smtps://user:pass@host`, …).
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(url: &str, from: &str) -> anyhow::Result<Mailer> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("ORDO_SMTP_URL: {e}"))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from
            .parse()
            .map_err(|e| anyhow::anyhow!("ORDO_EMAIL_FROM: {e}"))?;
        Ok(Mailer { transport, from })
    }

    /// Sends `m` to `to`; on success, the server's answer.
    pub async fn send(&self, to: &str, m: &Message) -> Result<String, SendError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| SendError::permanent(format!("the address is not valid: {e}")))?;
        let mail = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(None)
            .multipart(MultiPart::alternative_plain_html(
                m.text.clone(),
                m.html.clone(),
            ))
            .map_err(|e| SendError::permanent(e.to_string()))?;
        // lettre's own timeout covers connecting only.
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.transport.send(mail)).await {
            Err(_) => Err(SendError::transient(
                "the SMTP server did not answer in time",
            )),
            Ok(Ok(res)) => Ok(format!(
                "{} {}",
                res.code(),
                res.message().collect::<Vec<_>>().join(" ")
            )),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::permanent(e.to_string())),
            Ok(Err(e)) => Err(SendError::transient(e.to_string())),
        }
    }
}

/// SMS through Twilio's Messages API (or anything that speaks it, at `TWILIO_API_BASE`).
pub struct Twilio {
    client: reqwest::Client,
    base: String,
    sid: String,
    token: Secret,
    from: String,
}

impl Twilio {
    pub fn new(base: &str, sid: String, token: Secret, from: String) -> anyhow::Result<Twilio> {
        Ok(Twilio {
            client: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            sid,
            token,
            from,
        })
    }

    /// Sends `body` to the phone number `to`; on success, the message's sid.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base, self.sid
        );
        let res = self
            .client
            .post(url)
            .basic_auth(&self.sid, Some(self.token.expose()))
            .form(&[("To", to), ("From", self.from.as_str()), ("Body", body)])
            .send()
            .await
            .map_err(|e| SendError::transient(format!("twilio: {}", short(&e))))?;
        let status = res.status();
        let retry_after = retry_after(res.headers());
        let text = res.text().await.unwrap_or_default();
        if status.is_success() {
            let sid = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["sid"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Ok(format!("{} {sid}", status.as_u16()));
        }
        let mut e = classify(
            status.as_u16(),
            format!("twilio answered {status}: {}", clip(&text)),
        );
        e.retry_after = retry_after;
        Err(e)
    }
}

/// 2xx is success; 408, 429 and 5xx are worth another try; any other answer is final.
fn classify(status: u16, message: String) -> SendError {
    if status == 408 || status == 429 || status >= 500 {
        SendError::transient(message)
    } else {
        SendError::permanent(message)
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = time::OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc2822)
        .ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or_default())
}

fn short(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The addresses a name resolves to, refused if any of them is not public (unless
/// private networks are allowed). Used when an endpoint is registered and, through the
/// HTTP client's resolver, before every delivery, so that a name that later resolves to a
/// private address is caught too.
async fn resolve_public(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| format!("{host} cannot be resolved"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} cannot be resolved"));
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!(
            "{host} resolves to {}, a loopback, private, link-local or reserved address",
            bad.ip()
        ));
    }
    Ok(addrs)
}

/// Checks a webhook URL: http(s), a host that resolves, and only to public addresses
/// (unless `allow_private`).
pub async fn check_webhook_url(raw: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|_| "must be an absolute URL".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    match url.host() {
        None => return Err("must name a host".into()),
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), allow_private)?,
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), allow_private)?,
        Some(url::Host::Domain(d)) => {
            resolve_public(d, port, allow_private).await?;
        }
    }
    Ok(url)
}

fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(format!(
            "{ip} is a loopback, private, link-local or reserved address"
        ))
    }
}

/// reqwest's resolver, with the guard.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve_public(&host, 0, allow_private)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Webhook deliveries over HTTP: no redirects followed, a deadline per attempt, and the
/// address guard before every connection.
pub struct WebhookSender {
    client: reqwest::Client,
    allow_private: bool,
}

impl WebhookSender {
    pub fn new(allow_private: bool) -> anyhow::Result<WebhookSender> {
        Ok(WebhookSender {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                // A proxy would resolve (and reach) the name itself, past the guard.
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver { allow_private }))
                .user_agent("Ordo-Webhooks/1")
                .build()?,
            allow_private,
        })
    }

    /// Posts `body`, signed: the `webhook-*` headers of Standard Webhooks.
    pub async fn send(
        &self,
        url: &str,
        id: &str,
        timestamp: i64,
        signatures: &str,
        body: Vec<u8>,
    ) -> Result<String, SendError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|_| SendError::permanent("the URL is not valid"))?;
        // Addresses written as IPs do not go through the resolver: check them here.
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), self.allow_private),
            Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), self.allow_private),
            _ => Ok(()),
        }
        .map_err(|e| SendError::permanent(format!("refused: {e}")))?;
        let res = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(body)
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                // The guard's refusal comes back as a connect error that names it.
                let mut cause: Option<&dyn std::error::Error> = Some(&e);
                while let Some(c) = cause {
                    let text = c.to_string();
                    if text.contains("private, link-local") {
                        return Err(SendError::permanent(format!("refused: {text}")));
                    }
                    cause = c.source();
                }
                return Err(SendError::transient(format!("the receiver: {}", short(&e))));
            }
        };
        let status = res.status();
        if status.is_success() {
            return Ok(status.as_u16().to_string());
        }
        let mut e = classify(status.as_u16(), format!("the receiver answered {status}"));
        e.retry_after = retry_after(res.headers());
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_worth_a_retry() {
        for s in [408, 429, 500, 502, 503] {
            assert!(!classify(s, String::new()).permanent, "{s}");
        }
        for s in [400, 401, 404, 410, 422] {
            assert!(classify(s, String::new()).permanent, "{s}");
        }
    }

    #[tokio::test]
    async fn webhook_urls_stay_off_private_networks() {
        for url in [
            "http://127.0.0.1/hook",
            "http://10.0.0.7/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/",
            "http://localhost:9000/x",
            "ftp://example.com/",
            "not a url",
            "https://user:pw@example.com/",
        ] {
            assert!(check_webhook_url(url, false).await.is_err(), "{url}");
        }
        assert!(
            check_webhook_url("http://127.0.0.1:9/hook", true)
                .await
                .is_ok()
        );
        assert!(
            check_webhook_url("http://93.184.216.34/hook", false)
                .await
                .is_ok()
        );
    }
}
