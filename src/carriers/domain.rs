//! The rules of carrier updates, without I/O: AfterShip's tags mapped onto our carrier
//! statuses and order statuses, which carrier names mean the same carrier, what an update
//! does to an order in a given status, and how a delivery date is predicted.

use time::{Date, OffsetDateTime, PrimitiveDateTime};

use crate::orders::domain::{CarrierStatus, OrderStatus};

/// AfterShip's delivery status of a shipment (`tag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Pending,
    InfoReceived,
    InTransit,
    OutForDelivery,
    AttemptFail,
    Delivered,
    AvailableForPickup,
    Exception,
    Expired,
}

impl Tag {
    pub fn parse(s: &str) -> Option<Tag> {
        Some(match s.trim() {
            "Pending" => Tag::Pending,
            "InfoReceived" => Tag::InfoReceived,
            "InTransit" => Tag::InTransit,
            "OutForDelivery" => Tag::OutForDelivery,
            "AttemptFail" => Tag::AttemptFail,
            "Delivered" => Tag::Delivered,
            "AvailableForPickup" => Tag::AvailableForPickup,
            "Exception" => Tag::Exception,
            "Expired" => Tag::Expired,
            _ => return None,
        })
    }

    /// The carrier status a scan with this tag is recorded with. `Delivered` is a status
    /// change, not a scan; `Pending` means the carrier has said nothing yet.
    pub fn carrier_status(self) -> Option<CarrierStatus> {
        Some(match self {
            Tag::InfoReceived => CarrierStatus::InfoReceived,
            Tag::InTransit => CarrierStatus::InTransit,
            Tag::OutForDelivery => CarrierStatus::OutForDelivery,
            Tag::AttemptFail => CarrierStatus::AttemptFailed,
            Tag::AvailableForPickup => CarrierStatus::AvailableForPickup,
            // No news for 30 days: something is wrong with the shipment.
            Tag::Exception | Tag::Expired => CarrierStatus::Exception,
            Tag::Pending | Tag::Delivered => return None,
        })
    }

    /// Words for a scan that came without a checkpoint message.
    pub fn words(self) -> &'static str {
        match self {
            Tag::Pending => "Pending",
            Tag::InfoReceived => "Shipping information received",
            Tag::InTransit => "In transit",
            Tag::OutForDelivery => "Out for delivery",
            Tag::AttemptFail => "Delivery attempt failed",
            Tag::Delivered => "Delivered",
            Tag::AvailableForPickup => "Available for pickup",
            Tag::Exception => "Delivery exception",
            Tag::Expired => "No tracking information for 30 days",
        }
    }
}

/// What an update does to an order: the status changes to make, in order, and whether a
/// scan goes on the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub advance: Vec<OrderStatus>,
    pub scan: bool,
}

/// Never backwards: an order only moves forward along placed → shipped → delivered.
///
/// - `created` or `canceled` orders have no shipment: nothing happens.
/// - `Delivered` delivers the order; one still `placed` or `processing` is `shipped`
///   first (the carrier had it), so that every step is on the timeline and notified.
/// - A scan that means the carrier has the parcel (in transit, out for delivery, a failed
///   attempt, waiting for pickup) ships a `placed` or `processing` order, then goes on the
///   timeline. Other scans (information received, exceptions) only go on the timeline.
/// - A `delivered` order keeps its status; later scans (a return, an exception) are
///   recorded.
pub fn plan(status: OrderStatus, tag: Tag) -> Plan {
    use OrderStatus as S;
    let nothing = Plan {
        advance: Vec::new(),
        scan: false,
    };
    if tag == Tag::Pending {
        return nothing;
    }
    let ship_first = matches!(status, S::Placed | S::Processing);
    match (status, tag) {
        (S::Created | S::Canceled, _) => nothing,
        (S::Delivered, Tag::Delivered) => nothing,
        (_, Tag::Delivered) => Plan {
            advance: if ship_first {
                vec![S::Shipped, S::Delivered]
            } else {
                vec![S::Delivered]
            },
            scan: false,
        },
        (_, Tag::InTransit | Tag::OutForDelivery | Tag::AttemptFail | Tag::AvailableForPickup)
            if ship_first =>
        {
            Plan {
                advance: vec![S::Shipped],
                scan: true,
            }
        }
        _ => Plan {
            advance: Vec::new(),
            scan: true,
        },
    }
}

/// A carrier's name as a key: lower case, without spaces, dots, hyphens or underscores
/// (`U.P.S.` and `ups` are the same; the migration keys history the same way).
pub fn carrier_key(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '_'))
        .collect()
}

/// Carriers known by more than one name: AfterShip's slug first, then the other names
/// staff may type, all as keys (see `carrier_key`). Any other name matches itself.
pub const ALIASES: &[&[&str]] = &[
    &["ups", "unitedparcelservice", "upsground"],
    &[
        "usps",
        "uspostalservice",
        "unitedstatespostalservice",
        "uspostal",
        "uspostoffice",
    ],
    &["fedex", "federalexpress", "fedexground", "fedexexpress"],
    &["dhl", "dhlexpress"],
    &["dhlgermany", "dhlpaket", "deutschepost"],
    &["royalmail", "royalmailgroup"],
    &["canadapost", "postescanada"],
    &["australiapost", "auspost"],
];

/// Every key that names the same carrier as `name`.
pub fn carrier_keys(name: &str) -> Vec<String> {
    let key = carrier_key(name);
    match ALIASES.iter().find(|group| group.contains(&key.as_str())) {
        Some(group) => group.iter().map(|k| (*k).to_owned()).collect(),
        None => vec![key],
    }
}

/// Does an AfterShip `slug` name the order's `carrier`?
pub fn same_carrier(slug: &str, carrier: &str) -> bool {
    let key = carrier_key(carrier);
    !key.is_empty() && carrier_keys(slug).contains(&key)
}

/// How many of a carrier's latest deliveries a prediction looks at, and how many it needs.
pub const PREDICTION_WINDOW: u32 = 500;
pub const PREDICTION_MIN_SAMPLES: usize = 3;

/// The median of `seconds` (the mean of the two middle values for an even count), or
/// `None` with fewer than `PREDICTION_MIN_SAMPLES`.
pub fn median_seconds(mut seconds: Vec<i64>) -> Option<i64> {
    if seconds.len() < PREDICTION_MIN_SAMPLES {
        return None;
    }
    seconds.sort_unstable();
    let n = seconds.len();
    Some(if n % 2 == 1 {
        seconds[n / 2]
    } else {
        seconds[n / 2 - 1] + (seconds[n / 2] - seconds[n / 2 - 1]) / 2
    })
}

/// The predicted delivery date (UTC) of an order shipped at `shipped_at`.
pub fn predicted_date(shipped_at: OffsetDateTime, median_secs: i64) -> Option<Date> {
    shipped_at
        .checked_add(time::Duration::seconds(median_secs))
        .map(|t| t.to_offset(time::UtcOffset::UTC).date())
}

/// A date as the carrier gives it: `YYYY-MM-DD`, possibly followed by a time.
pub fn parse_date(raw: &str) -> Option<Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let s = raw.trim();
    Date::parse(s.get(..10)?, &fmt).ok()
}

pub fn format_date(d: Date) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    d.format(&fmt).unwrap_or_default()
}

/// A checkpoint's time: RFC 3339, or a local time without an offset (taken as UTC).
pub fn parse_checkpoint_time(raw: &str) -> Option<OffsetDateTime> {
    let s = raw.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t.to_offset(time::UtcOffset::UTC));
    }
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|t| t.assume_utc())
}

/// Text from outside, trimmed and cut to `max` characters; `None` when empty.
pub fn clip(s: Option<&str>, max: usize) -> Option<String> {
    let t = s?.trim();
    (!t.is_empty()).then(|| t.chars().take(max).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus as S;

    #[test]
    fn every_tag_maps() {
        let cases = [
            ("InfoReceived", Some("info_received")),
            ("InTransit", Some("in_transit")),
            ("OutForDelivery", Some("out_for_delivery")),
            ("AttemptFail", Some("attempt_failed")),
            ("AvailableForPickup", Some("available_for_pickup")),
            ("Exception", Some("exception")),
            ("Expired", Some("exception")),
            ("Delivered", None),
            ("Pending", None),
        ];
        for (tag, want) in cases {
            let t = Tag::parse(tag).unwrap();
            assert_eq!(t.carrier_status().map(CarrierStatus::as_str), want, "{tag}");
        }
        assert_eq!(Tag::parse("Teleported"), None);
    }

    #[test]
    fn orders_never_move_backwards() {
        for tag in [
            Tag::InfoReceived,
            Tag::InTransit,
            Tag::OutForDelivery,
            Tag::AttemptFail,
            Tag::AvailableForPickup,
            Tag::Exception,
            Tag::Expired,
            Tag::Delivered,
            Tag::Pending,
        ] {
            let p = plan(S::Delivered, tag);
            assert!(p.advance.is_empty(), "{tag:?}");
            for ended in [S::Created, S::Canceled] {
                assert_eq!(
                    plan(ended, tag),
                    Plan {
                        advance: vec![],
                        scan: false
                    }
                );
            }
        }
        assert_eq!(plan(S::Shipped, Tag::Delivered).advance, vec![S::Delivered]);
        assert_eq!(
            plan(S::Placed, Tag::Delivered).advance,
            vec![S::Shipped, S::Delivered]
        );
        assert_eq!(
            plan(S::Processing, Tag::OutForDelivery),
            Plan {
                advance: vec![S::Shipped],
                scan: true
            }
        );
        assert_eq!(
            plan(S::Placed, Tag::InfoReceived),
            Plan {
                advance: vec![],
                scan: true
            }
        );
        assert!(plan(S::Shipped, Tag::Pending) == plan(S::Created, Tag::InTransit));
    }

    #[test]
    fn carriers_by_any_of_their_names() {
        assert!(same_carrier("ups", "UPS"));
        assert!(same_carrier("ups", "United Parcel Service"));
        assert!(same_carrier("usps", "U.S. Postal Service"));
        assert!(same_carrier("fedex", "FedEx Ground"));
        assert!(same_carrier("royal-mail", "Royal Mail"));
        assert!(same_carrier("some-local-courier", "Some Local Courier"));
        assert!(!same_carrier("ups", "FedEx"));
        assert!(!same_carrier("dhl", "DHL Paket"));
        assert!(!same_carrier("ups", "  "));
        assert_eq!(carrier_keys("UPS"), carrier_keys("ups"));
    }

    #[test]
    fn the_median_needs_three() {
        assert_eq!(median_seconds(vec![]), None);
        assert_eq!(median_seconds(vec![5, 1]), None);
        assert_eq!(median_seconds(vec![9, 1, 5]), Some(5));
        assert_eq!(median_seconds(vec![4, 1, 10, 2]), Some(3));
    }

    #[test]
    fn dates_and_times_from_the_carrier() {
        assert_eq!(
            parse_date("2026-12-04").map(format_date).as_deref(),
            Some("2026-12-04")
        );
        assert_eq!(
            parse_date("2026-12-04T18:00:00")
                .map(format_date)
                .as_deref(),
            Some("2026-12-04")
        );
        assert_eq!(parse_date("04/12/2026"), None);
        assert_eq!(parse_date("2026-13-04"), None);
        let t = parse_checkpoint_time("2026-12-01T10:00:00+08:00").unwrap();
        assert_eq!(t.hour(), 2);
        assert!(parse_checkpoint_time("2026-12-01T10:00:00").is_some());
        assert!(parse_checkpoint_time("yesterday").is_none());
        let shipped = parse_checkpoint_time("2026-12-01T22:00:00Z").unwrap();
        assert_eq!(
            predicted_date(shipped, 3 * 3600)
                .map(format_date)
                .as_deref(),
            Some("2026-12-02")
        );
    }
}
