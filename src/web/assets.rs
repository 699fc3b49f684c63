//! The pages' CSS, JavaScript and icon, embedded in the binary at build time. Each is
//! served at `/assets/<name>?v=<hash of its bytes>`: a request naming the current hash may
//! be cached for a year (`immutable`), since a new build changes the hash and so the URL;
//! any other is cached briefly and revalidated with its `ETag`.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    /// The first 16 hex digits of the SHA-256 of `bytes`.
    pub hash: String,
    /// `/assets/<name>?v=<hash>`, what the templates link to.
    pub url: String,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        (
            $name,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $name)) as &[u8],
            $type,
        )
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    [
        asset!("app.css", "text/css; charset=utf-8"),
        asset!("app.js", JS),
        asset!("shop.js", JS),
        asset!("cart.js", JS),
        asset!("login.js", JS),
        asset!("orders.js", JS),
        asset!("track.js", JS),
        asset!("console.js", JS),
        asset!("console-order.js", JS),
        asset!("icon.svg", "image/svg+xml"),
    ]
    .into_iter()
    .map(|(name, bytes, content_type)| {
        let hash = hex::encode(&Sha256::digest(bytes)[..8]);
        let url = format!("/assets/{name}?v={hash}");
        (
            name,
            Asset {
                bytes,
                content_type,
                hash,
                url,
            },
        )
    })
    .collect()
});

/// The versioned URL of an embedded asset (for templates).
pub fn url(name: &str) -> &'static str {
    ASSETS
        .get(name)
        .map_or("/assets/missing", |a| a.url.as_str())
}

#[derive(serde::Deserialize)]
pub struct Version {
    v: Option<String>,
}

pub async fn serve(
    Path(name): Path<String>,
    Query(version): Query<Version>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = ASSETS.get(name.as_str()) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{}\"", asset.hash);
    let cache = if version.v.as_deref() == Some(asset.hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300, must-revalidate"
    };
    let mut res = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    res
}
