//! The rules of notifications and webhooks, without I/O: which events matter to whom, the
//! retry schedule, Standard Webhooks signatures, which addresses a webhook may reach, and
//! the texts customers receive.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::orders::store::{EventRow, STATUS_EVENT, TRACKING_EVENT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Sms,
    Push,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        [
            Channel::Email,
            Channel::Sms,
            Channel::Push,
            Channel::Webhook,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Where a delivery stands: `pending` until sent, `failed` between attempts, `dead` after
/// the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Failed,
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Sent,
            DeliveryStatus::Failed,
            DeliveryStatus::Dead,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A customer's channels. E-mail is on until the customer turns it off.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Preferences {
    pub email: bool,
    pub sms: bool,
    pub push: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            email: true,
            sms: false,
            push: false,
        }
    }
}

/// What a notification is about, when an event matters to its customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notable {
    Placed,
    Shipped,
    Delivered,
    Canceled,
    Refunded,
}

impl Notable {
    pub fn as_str(self) -> &'static str {
        match self {
            Notable::Placed => "placed",
            Notable::Shipped => "shipped",
            Notable::Delivered => "delivered",
            Notable::Canceled => "canceled",
            Notable::Refunded => "refunded",
        }
    }
}

/// The events a customer hears about: an order placed, shipped, delivered, canceled, or
/// its money refunded. A refund is the one status event that keeps the status (the
/// timeline's "payment refunded" entry).
pub fn notable(event: &str, status: &str, previous: Option<&str>) -> Option<Notable> {
    if event != STATUS_EVENT {
        return None;
    }
    if previous == Some(status) {
        return Some(Notable::Refunded);
    }
    match status {
        "placed" => Some(Notable::Placed),
        "shipped" => Some(Notable::Shipped),
        "delivered" => Some(Notable::Delivered),
        "canceled" => Some(Notable::Canceled),
        _ => None,
    }
}

/// The webhook event types an endpoint may ask for.
pub const WEBHOOK_TYPES: [&str; 9] = [
    "order.created",
    "order.placed",
    "order.processing",
    "order.shipped",
    "order.delivered",
    "order.canceled",
    "order.refunded",
    "order.tracking_update",
    "*",
];

/// The webhook type of an event.
pub fn webhook_type(e: &EventRow) -> String {
    if e.event == TRACKING_EVENT {
        return "order.tracking_update".into();
    }
    if e.previous_status.as_deref() == Some(e.status.as_str()) {
        return "order.refunded".into();
    }
    format!("order.{}", e.status)
}

/// Seconds before each retry; after the last one a delivery is `dead`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// `5,30,120` (seconds, each at least 1).
    pub fn parse(s: &str) -> Result<Self, String> {
        let waits: Result<Vec<Duration>, String> = s
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=7 * 86_400).contains(n))
                    .map(Duration::from_secs)
                    .ok_or_else(|| format!("{p:?} is not a number of seconds (1 to 604800)"))
            })
            .collect();
        let waits = waits?;
        if waits.is_empty() || waits.len() > 50 {
            return Err("give between 1 and 50 waits".into());
        }
        Ok(RetrySchedule(waits))
    }

    /// The wait after failed attempt number `attempts` (1-based), ±20 % jitter; `None`
    /// when that was the last attempt.
    pub fn after(&self, attempts: i32) -> Option<Duration> {
        let i = usize::try_from(attempts.max(1) - 1).ok()?;
        let base = *self.0.get(i)?;
        Some(base.mul_f64(0.8 + 0.4 * rand::random::<f64>()))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule::parse("5,30,120,600,1800,7200").unwrap_or(RetrySchedule(Vec::new()))
    }
}

/// A new webhook signing secret: `whsec_` and 32 random bytes, base64.
pub fn new_webhook_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The Standard Webhooks signature of a message: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}`, keyed with the secret's bytes.
pub fn sign_webhook(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// May a webhook go to this address? Not to loopback, private, link-local (which holds
/// the cloud metadata service, 169.254.169.254), shared, multicast, documentation or
/// unspecified addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                // 100.64.0.0/10, carrier-grade NAT (also some clouds' metadata).
                || (o[0] == 100 && (64..128).contains(&o[1]))
                // 192.0.0.0/24, IETF protocol assignments.
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                // 198.18.0.0/15, benchmarking.
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            // Forms that carry an IPv4 address reach that address: judge it.
            // 64:ff9b::/96 (NAT64) and 64:ff9b:1::/48 (local NAT64).
            if s[0] == 0x64 && s[1] == 0xff9b {
                return is_public(embedded(s[6], s[7]));
            }
            // 2002::/16 (6to4).
            if s[0] == 0x2002 {
                return is_public(embedded(s[1], s[2]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // ::/96, IPv4-compatible (deprecated).
                || (s[..6].iter().all(|x| *x == 0))
                // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // 2001::/32 Teredo; 2001:db8::/32 documentation.
                || (s[0] == 0x2001 && (s[1] == 0 || s[1] == 0x0db8)))
        }
    }
}

/// What a notification about an order says.
pub struct Message {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub sms: String,
}

/// A line of an order, as a notification lists it.
pub struct Line {
    pub name: String,
    pub quantity: i32,
    pub line_total: i64,
}

/// The order as a notification describes it.
pub struct OrderFacts<'a> {
    pub order_id: &'a str,
    pub customer_name: &'a str,
    pub status: &'a str,
    pub total: i64,
    pub currency: &'a str,
    pub lines: &'a [Line],
    pub carrier: Option<&'a str>,
    pub tracking_number: Option<&'a str>,
    /// `YYYY-MM-DD`.
    pub estimated_delivery: Option<&'a str>,
    pub note: Option<&'a str>,
    pub tracking_url: &'a str,
}

fn money(minor: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The e-mail (text and HTML) and SMS texts of a notification.
pub fn compose(kind: Notable, f: &OrderFacts<'_>) -> Message {
    let short = &f.order_id[..f.order_id.len().min(8)];
    let headline = match kind {
        Notable::Placed => "your order is confirmed".to_owned(),
        Notable::Shipped => "your order is on its way".to_owned(),
        Notable::Delivered => "your order was delivered".to_owned(),
        Notable::Canceled => "your order was canceled".to_owned(),
        Notable::Refunded => "your payment was refunded".to_owned(),
    };
    let shipment = match (f.carrier, f.tracking_number) {
        (Some(c), Some(t)) => Some(format!("{c}, tracking number {t}")),
        (Some(c), None) => Some(c.to_owned()),
        (None, Some(t)) => Some(format!("tracking number {t}")),
        (None, None) => None,
    };
    let mut text = format!(
        "Hello {name},\n\n{Headline}.\n\nOrder {id}\nStatus: {status}\n",
        name = f.customer_name,
        Headline = capitalise(&headline),
        id = f.order_id,
        status = f.status,
    );
    for l in f.lines {
        text.push_str(&format!(
            "  {} x {}  {}\n",
            l.quantity,
            l.name,
            money(l.line_total, f.currency)
        ));
    }
    text.push_str(&format!("Total: {}\n", money(f.total, f.currency)));
    if let Some(s) = &shipment {
        text.push_str(&format!("Shipment: {s}\n"));
    }
    let eta = f.estimated_delivery.filter(|_| kind == Notable::Shipped);
    if let Some(d) = eta {
        text.push_str(&format!("Estimated delivery: {d}\n"));
    }
    if let Some(n) = f.note {
        text.push_str(&format!("Note: {n}\n"));
    }
    text.push_str(&format!("\nFollow your order: {}\n", f.tracking_url));

    let mut html = format!(
        "<!doctype html><html><body><p>Hello {name},</p><p><strong>{Headline}.</strong></p>\
         <p>Order <code>{id}</code> &middot; status <strong>{status}</strong></p><table>",
        name = escape(f.customer_name),
        Headline = escape(&capitalise(&headline)),
        id = escape(f.order_id),
        status = escape(f.status),
    );
    for l in f.lines {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            l.quantity,
            escape(&l.name),
            escape(&money(l.line_total, f.currency))
        ));
    }
    html.push_str(&format!(
        "</table><p>Total: <strong>{}</strong></p>",
        escape(&money(f.total, f.currency))
    ));
    if let Some(s) = &shipment {
        html.push_str(&format!("<p>Shipment: {}</p>", escape(s)));
    }
    if let Some(d) = eta {
        html.push_str(&format!("<p>Estimated delivery: {}</p>", escape(d)));
    }
    if let Some(n) = f.note {
        html.push_str(&format!("<p>Note: {}</p>", escape(n)));
    }
    html.push_str(&format!(
        "<p><a href=\"{url}\">Follow your order</a></p></body></html>",
        url = escape(f.tracking_url)
    ));

    let mut sms = format!("Order {short}: {headline}.");
    if kind == Notable::Shipped
        && let Some(s) = &shipment
    {
        sms.push_str(&format!(" {s}."));
    }
    if let Some(d) = eta {
        sms.push_str(&format!(" Expected {d}."));
    }
    sms.push_str(&format!(" {}", f.tracking_url));
    Message {
        subject: format!("Order {short}: {headline}"),
        text,
        html,
        sms,
    }
}

/// What a message from the shop is about.
pub struct ShopMessageFacts<'a> {
    pub customer_name: &'a str,
    pub message: &'a str,
    /// The order it is about: id, status, tracking page.
    pub order: Option<(&'a str, &'a str, &'a str)>,
    /// `YYYY-MM-DD`.
    pub estimated_delivery: Option<&'a str>,
}

/// Longest SMS body Twilio accepts.
const SMS_MAX: usize = 1600;

/// The e-mail and SMS texts of a message from the shop.
pub fn compose_shop_message(f: &ShopMessageFacts<'_>) -> Message {
    let about = f
        .order
        .map(|(id, _, _)| format!("Order {}: ", &id[..id.len().min(8)]))
        .unwrap_or_default();
    let subject = format!("{about}a message from the shop");
    let mut text = format!(
        "Hello {name},\n\n{message}\n",
        name = f.customer_name,
        message = f.message
    );
    let mut html = format!(
        "<!doctype html><html><body><p>Hello {name},</p><p>{message}</p>",
        name = escape(f.customer_name),
        message = escape(f.message).replace('\n', "<br>")
    );
    let mut sms = format!("{about}{}", f.message);
    if let Some((id, status, url)) = f.order {
        text.push_str(&format!("\nOrder {id}\nStatus: {status}\n"));
        html.push_str(&format!(
            "<p>Order <code>{}</code> &middot; status <strong>{}</strong></p>",
            escape(id),
            escape(status)
        ));
        if let Some(d) = f.estimated_delivery {
            text.push_str(&format!("Estimated delivery: {d}\n"));
            html.push_str(&format!("<p>Estimated delivery: {}</p>", escape(d)));
        }
        text.push_str(&format!("\nFollow your order: {url}\n"));
        html.push_str(&format!(
            "<p><a href=\"{}\">Follow your order</a></p>",
            escape(url)
        ));
        let tail = format!(" {url}");
        let room = SMS_MAX.saturating_sub(tail.chars().count());
        sms = sms.chars().take(room).collect::<String>() + &tail;
    } else {
        sms = sms.chars().take(SMS_MAX).collect();
    }
    html.push_str("</body></html>");
    Message {
        subject: capitalise(&subject),
        text,
        html,
        sms,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_that_matter() {
        assert_eq!(
            notable(STATUS_EVENT, "placed", Some("created")),
            Some(Notable::Placed)
        );
        assert_eq!(
            notable(STATUS_EVENT, "shipped", Some("processing")),
            Some(Notable::Shipped)
        );
        assert_eq!(
            notable(STATUS_EVENT, "canceled", Some("canceled")),
            Some(Notable::Refunded)
        );
        assert_eq!(notable(STATUS_EVENT, "created", None), None);
        assert_eq!(notable(STATUS_EVENT, "processing", Some("placed")), None);
        assert_eq!(notable(TRACKING_EVENT, "shipped", Some("shipped")), None);
    }

    #[test]
    fn the_retry_schedule() {
        let s = RetrySchedule::parse("5, 30,120").unwrap();
        let first = s.after(1).unwrap().as_secs_f64();
        assert!((4.0..=6.0).contains(&first), "{first}");
        assert!(s.after(3).is_some());
        assert!(s.after(4).is_none(), "dead after the last");
        assert!(RetrySchedule::parse("5,,7").is_err());
        assert!(RetrySchedule::parse("0").is_err());
        assert!(RetrySchedule::parse("").is_err());
    }

    /// The test vector of the Standard Webhooks reference library.
    #[test]
    fn signatures_follow_standard_webhooks() {
        let sig = sign_webhook(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")
        );
        let s = new_webhook_secret();
        assert!(s.starts_with("whsec_") && s.len() > 40);
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.100.100.200",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn texts_name_the_order_and_escape_html() {
        let lines = [Line {
            name: "Mug <b>".into(),
            quantity: 2,
            line_total: 2500,
        }];
        let m = compose(
            Notable::Shipped,
            &OrderFacts {
                order_id: "0193abcd-0000",
                customer_name: "Ann",
                status: "shipped",
                total: 2500,
                currency: "USD",
                lines: &lines,
                carrier: Some("UPS"),
                tracking_number: Some("1Z999"),
                estimated_delivery: Some("2026-12-04"),
                note: None,
                tracking_url: "https://shop.example/orders/0193abcd-0000",
            },
        );
        assert!(m.text.contains("UPS, tracking number 1Z999"));
        assert!(m.text.contains("25.00 USD"));
        assert!(m.html.contains("Mug &lt;b&gt;"));
        assert!(m.sms.contains("1Z999") && m.sms.len() < 160, "{}", m.sms);
        assert_eq!(m.subject, "Order 0193abcd: your order is on its way");
        assert!(
            m.text.contains("Estimated delivery: 2026-12-04"),
            "{}",
            m.text
        );
    }

    #[test]
    fn shop_messages_name_the_order_and_escape_html() {
        let m = compose_shop_message(&ShopMessageFacts {
            customer_name: "Ann",
            message: "Your <mug> ships Friday\nSorry!",
            order: Some((
                "0193abcd-0000",
                "placed",
                "https://shop.example/orders/0193abcd-0000",
            )),
            estimated_delivery: None,
        });
        assert_eq!(m.subject, "Order 0193abcd: a message from the shop");
        assert!(m.text.contains("Your <mug> ships Friday"));
        assert!(m.html.contains("Your &lt;mug&gt; ships Friday<br>Sorry!"));
        assert!(
            m.sms
                .ends_with(" https://shop.example/orders/0193abcd-0000")
        );
        let long = "x".repeat(5000);
        let m = compose_shop_message(&ShopMessageFacts {
            customer_name: "Ann",
            message: &long,
            order: None,
            estimated_delivery: None,
        });
        assert_eq!(m.subject, "A message from the shop");
        assert_eq!(m.sms.chars().count(), 1600);
    }
}
