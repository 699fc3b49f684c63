//! What a search asks for, and the rules that turn user text into index terms. Query
//! text is data: it is cut into words of letters and digits, and only those words reach
//! the index (quoted), so no operator, quote or parenthesis of any query language can.

use crate::error::FieldError;

/// Longest accepted query text, in characters.
pub const MAX_QUERY_CHARS: usize = 500;
/// Words past this many are ignored.
pub const MAX_WORDS: usize = 12;
/// Words at least this long may carry one typo.
pub const TYPO_MIN_CHARS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchSort {
    Relevance,
    Price,
    PriceDesc,
    Name,
}

impl SearchSort {
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        match raw {
            None | Some("relevance") => Ok(SearchSort::Relevance),
            Some("price") => Ok(SearchSort::Price),
            Some("-price") => Ok(SearchSort::PriceDesc),
            Some("name") => Ok(SearchSort::Name),
            Some(_) => Err(FieldError::new(
                "sort",
                "must be one of relevance, price, -price, name",
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SearchQuery {
    /// Lower-case words of letters and digits; empty: every item (filters still apply).
    pub words: Vec<String>,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// Items out of stock are left out unless this is set (`in_stock=false`).
    pub include_out_of_stock: bool,
    pub sort: SearchSort,
    pub limit: u32,
}

/// The words of a query: runs of letters and digits, lower case, each once, at most
/// `MAX_WORDS`.
pub fn words(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in raw.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let w = w.to_lowercase();
        if !out.contains(&w) {
            out.push(w);
        }
        if out.len() == MAX_WORDS {
            break;
        }
    }
    out
}

/// Are `a` and `b` at most one edit apart (insert, delete, substitute, or swap two
/// neighbours)?
pub fn one_edit_apart(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if prefix == n && prefix == m {
        return true;
    }
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    match n.cmp(&m) {
        std::cmp::Ordering::Equal => {
            ra[1..] == rb[1..]
                || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
        }
        std::cmp::Ordering::Less => ra == &rb[1..],
        std::cmp::Ordering::Greater => &ra[1..] == rb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_text_becomes_plain_words() {
        assert_eq!(words("Télé  55\" OLED"), vec!["télé", "55", "oled"]);
        assert_eq!(
            words("\"a\" OR b* NEAR(c) -d (e AND"),
            vec!["a", "or", "b", "near", "c", "d", "e", "and"]
        );
        assert!(words("\"*()^:-").is_empty());
        assert_eq!(words("x x X").len(), 1);
        assert_eq!(words(&"w ".repeat(5000)).len(), 1);
        assert_eq!(
            words(&(0..100).map(|i| format!("w{i} ")).collect::<String>()).len(),
            MAX_WORDS
        );
    }

    #[test]
    fn one_typo_is_one_edit() {
        assert!(one_edit_apart("television", "televsion"));
        assert!(one_edit_apart("television", "televisoin"));
        assert!(one_edit_apart("television", "telefision"));
        assert!(one_edit_apart("television", "televisions"));
        assert!(one_edit_apart("same", "same"));
        assert!(!one_edit_apart("television", "telvsion"));
        assert!(!one_edit_apart("camera", "cinema"));
    }

    #[test]
    fn sorts() {
        assert_eq!(SearchSort::parse(None), Ok(SearchSort::Relevance));
        assert_eq!(SearchSort::parse(Some("-price")), Ok(SearchSort::PriceDesc));
        assert!(SearchSort::parse(Some("price desc")).is_err());
    }
}
