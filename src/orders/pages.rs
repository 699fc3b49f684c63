//! Pages of order lists, rendered once and kept per node, checked on every read.
//!
//! A customer reading its orders mostly reads the same page again. Every `UPDATE orders`
//! moves the row's `version` in the same transaction, and an order's lines never change
//! after placement, so the ids and versions of a page's orders name its content. A read
//! first asks the database for those (`list_versions`: the same filter, two columns, no
//! lines) and then:
//! - answers `304 Not Modified` when the caller's `If-None-Match` holds that page's tag;
//! - serves the page this node rendered before when its ids and versions are the same;
//! - otherwise reads the page whole, renders it and keeps it.
//!
//! Nothing is trusted that the database did not say in this request, so the cache is never
//! stale, on one node or many, and a caller always sees its own writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::store::{OrderCursor, OrderFilter};

/// What a page is looked up by: the same request gives the same page.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PageKey {
    pub filter: OrderFilter,
    pub after: Option<OrderCursor>,
    pub limit: u32,
}

/// A page as sent: its body and its entity tag.
pub struct RenderedPage {
    pub etag: String,
    pub body: Bytes,
}

/// The answer to a list read.
pub enum Listed {
    /// The caller's `If-None-Match` names the current page.
    NotModified {
        etag: String,
    },
    Page(Arc<RenderedPage>),
}

struct Cached {
    versions: Vec<(Uuid, i64)>,
    page: Arc<RenderedPage>,
}

/// At most `capacity` rendered pages; a full cache forgets one page per new one.
pub(crate) struct PageCache {
    capacity: usize,
    entries: Mutex<HashMap<PageKey, Cached>>,
    /// Pages served from the cache (also `ordo_order_pages_total{outcome="hit"}`).
    hits: AtomicU64,
}

impl PageCache {
    pub fn new(capacity: usize) -> Self {
        PageCache {
            capacity,
            entries: Mutex::default(),
            hits: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The page rendered for `key` when its orders are still at `versions`.
    pub fn get(&self, key: &PageKey, versions: &[(Uuid, i64)]) -> Option<Arc<RenderedPage>> {
        let entries = self.entries.lock().expect("page cache");
        let cached = entries.get(key)?;
        let page = (cached.versions == versions).then(|| cached.page.clone())?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(page)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn put(&self, key: PageKey, versions: Vec<(Uuid, i64)>, page: Arc<RenderedPage>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("page cache");
        if entries.len() >= self.capacity
            && !entries.contains_key(&key)
            && let Some(old) = entries.keys().next().cloned()
        {
            entries.remove(&old);
        }
        entries.insert(key, Cached { versions, page });
    }
}

/// The entity tag of a page whose orders are at `versions`: the same for the same content,
/// different as soon as one order changes, one appears or one leaves the page. The crate's
/// version is part of it, since a new release may render the same orders differently.
pub fn etag_of(versions: &[(Uuid, i64)]) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    for (id, version) in versions {
        h.update(id.as_bytes());
        h.update(version.to_le_bytes());
    }
    let digest = h.finalize();
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in &digest[..16] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    tag
}

/// Whether an `If-None-Match` header value names `etag` (a list of tags, or `*`; weak tags
/// compare by their opaque part, as RFC 9110 says for `If-None-Match`).
pub fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_every_change_of_a_page() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let page = etag_of(&[(a, 1), (b, 1)]);
        assert_eq!(page, etag_of(&[(a, 1), (b, 1)]));
        assert_ne!(page, etag_of(&[(a, 2), (b, 1)]), "an order changed");
        assert_ne!(page, etag_of(&[(a, 1)]), "an order left the page");
        assert_ne!(page, etag_of(&[(b, 1), (a, 1)]), "the order changed");
        assert_eq!(page.len(), 34);
        assert!(none_match(&page, &page));
        assert!(none_match(&format!("\"x\", W/{page}"), &page));
        assert!(none_match("*", &page));
        assert!(!none_match("\"x\"", &page));
    }

    #[test]
    fn a_full_cache_forgets_one_page_per_new_one() {
        let cache = PageCache::new(2);
        let page = Arc::new(RenderedPage {
            etag: String::new(),
            body: Bytes::new(),
        });
        let key = |limit| PageKey {
            filter: OrderFilter::default(),
            after: None,
            limit,
        };
        for limit in 1..=3 {
            cache.put(key(limit), vec![], page.clone());
        }
        let kept = (1..=3)
            .filter(|l| cache.get(&key(*l), &[]).is_some())
            .count();
        assert_eq!(kept, 2);
        assert!(cache.get(&key(3), &[]).is_some(), "the newest is kept");
        assert!(
            cache.get(&key(3), &[(Uuid::nil(), 1)]).is_none(),
            "other versions"
        );
    }
}
