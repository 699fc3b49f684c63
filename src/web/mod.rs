//! The pages a browser sees, served by the binary itself: the shop front (`/`), the cart,
//! sign-in, a customer's orders and live tracking page, and the staff console.
//!
//! Pages are askama templates (auto-escaped) rendered here; what only the signed-in user
//! may see is fetched by small hand-written scripts (`assets/*.js`, no framework, no build
//! step) from the public `/v1` API with the user's own token, so the pages obey exactly the
//! API's rules. Every page and asset is embedded in the binary and answered with a strict
//! `Content-Security-Policy` (no inline script, nothing from another host),
//! `X-Content-Type-Options` and `Referrer-Policy`. Tokens never appear in page URLs: the
//! scripts keep them in the browser's storage and send them as `Authorization` headers, the
//! live stream included (`fetch` streaming of `/v1/events`).
//!
//! - `assets`: the embedded CSS, JS and icon, with versioned URLs and cache headers.
//! - `pages`: the page handlers and their templates.

pub mod assets;
pub mod pages;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::get;

use crate::app::AppState;

/// Everything a page may load: its own scripts, styles and images, and its own API.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::shop))
        .route("/cart", get(pages::cart))
        .route("/login", get(pages::login))
        .route("/orders", get(pages::orders))
        .route("/orders/{id}", get(pages::track))
        .route("/admin/orders", get(pages::console))
        .route("/admin/orders/{id}", get(pages::console_order))
        .route("/assets/{name}", get(assets::serve))
        .layer(from_fn(security_headers))
}

/// The headers every page and asset carries.
pub async fn security_headers(req: Request, next: Next) -> Response {
    with_security_headers(next.run(req).await)
}

pub fn with_security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}
