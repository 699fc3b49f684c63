//! Items and stock: the rules for a valid item and its price.

use crate::error::FieldError;

/// Prices are at most 10^12 minor units, so that quantity × price × lines fits in `i64`.
pub const MAX_PRICE: i64 = 1_000_000_000_000;
pub const MAX_STOCK: i64 = 1_000_000_000;

pub fn parse_sku(field: &str, raw: &str) -> Result<String, FieldError> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
        Err(FieldError::new(
            field,
            "must have 1 to 100 printable characters",
        ))
    } else {
        Ok(s.to_owned())
    }
}

pub fn parse_price(field: &str, v: i64) -> Result<i64, FieldError> {
    if (0..=MAX_PRICE).contains(&v) {
        Ok(v)
    } else {
        Err(FieldError::new(
            field,
            "must be a whole number of minor units from 0 to 10^12",
        ))
    }
}

pub fn parse_stock(field: &str, v: i64) -> Result<i64, FieldError> {
    if (0..=MAX_STOCK).contains(&v) {
        Ok(v)
    } else {
        Err(FieldError::new(
            field,
            "must be a whole number from 0 to 10^9",
        ))
    }
}

/// An ISO 4217 alphabetic code, upper case.
pub fn parse_currency(field: &str, raw: &str) -> Result<String, FieldError> {
    let s = raw.trim().to_ascii_uppercase();
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s)
    } else {
        Err(FieldError::new(
            field,
            "must be an ISO 4217 currency code such as USD",
        ))
    }
}

/// Optional free text: trimmed, empty means none, at most `max` characters.
pub fn parse_text(
    field: &str,
    raw: Option<&str>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.chars().count() > max => Err(FieldError::new(
            field,
            format!("must have at most {max} characters"),
        )),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

pub fn parse_attributes(
    field: &str,
    v: serde_json::Value,
) -> Result<serde_json::Value, FieldError> {
    match &v {
        serde_json::Value::Object(_) if v.to_string().len() <= 64 * 1024 => Ok(v),
        serde_json::Value::Object(_) => Err(FieldError::new(field, "must be at most 64 KiB")),
        serde_json::Value::Null => Ok(serde_json::json!({})),
        _ => Err(FieldError::new(field, "must be a JSON object")),
    }
}

/// How an item list is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemSort {
    Name,
    Price,
    PriceDesc,
}

impl ItemSort {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemSort::Name => "name",
            ItemSort::Price => "price",
            ItemSort::PriceDesc => "-price",
        }
    }

    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        match raw {
            None | Some("name") => Ok(ItemSort::Name),
            Some("price") => Ok(ItemSort::Price),
            Some("-price") => Ok(ItemSort::PriceDesc),
            Some(_) => Err(FieldError::new(
                "sort",
                "must be one of price, -price, name",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_upper_case_codes() {
        assert_eq!(
            parse_currency("currency", "usd").ok().as_deref(),
            Some("USD")
        );
        assert!(parse_currency("currency", "US").is_err());
        assert!(parse_currency("currency", "U$D").is_err());
    }

    #[test]
    fn prices_and_stock_are_bounded() {
        assert!(parse_price("price", -1).is_err());
        assert!(parse_price("price", MAX_PRICE + 1).is_err());
        assert!(parse_stock("stock", -1).is_err());
        assert_eq!(parse_stock("stock", 0).ok(), Some(0));
    }
}
