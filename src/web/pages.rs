//! The page handlers. The shop front renders the public catalogue on the server; the other
//! pages render their frame and labels, and their script fills in what the user's token
//! may read from the API (the server cannot know the user: no cookies, so no CSRF either).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::assets;
use crate::app::AppState;
use crate::http::{QueryParams, decode_cursor, encode_cursor};
use crate::inventory::domain::ItemSort;
use crate::inventory::store::{ItemCursor, ItemFilter, ItemRow};
use crate::orders::domain::OrderStatus;
use crate::search::domain::{SearchQuery, SearchSort, words as search_words};

/// Items on one page of the shop front.
const SHOP_PAGE: u32 = 48;
/// Most search results the shop front shows (the search API's own limit).
const MAX_SEARCH_RESULTS: u32 = 192;
/// Stock at or below this shows as "only N left".
const LOW_STOCK: i64 = 5;

/// What every page's frame needs (see `templates/base.html`).
pub struct Chrome {
    pub title: String,
    /// `data-page` on `<body>`: which script runs.
    pub page: &'static str,
    pub css: &'static str,
    pub app_js: &'static str,
    pub page_js: &'static str,
    pub icon: &'static str,
}

impl Chrome {
    fn new(title: impl Into<String>, page: &'static str, script: &str) -> Self {
        Chrome {
            title: title.into(),
            page,
            css: assets::url("app.css"),
            app_js: assets::url("app.js"),
            page_js: assets::url(script),
            icon: assets::url("icon.svg"),
        }
    }
}

fn render(t: &impl Template, status: StatusCode) -> Response {
    match t.render() {
        Ok(html) => {
            let mut res = (status, Html(html)).into_response();
            // The frame holds nothing private; the data is fetched with the user's token.
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be shown",
            )
                .into_response()
        }
    }
}

/// An amount of minor units as people read it: `$12.50`, `12.50 CHF`.
pub fn money(amount: i64, currency: &str) -> String {
    let (sign, abs) = if amount < 0 {
        ("-", amount.unsigned_abs())
    } else {
        ("", amount.unsigned_abs())
    };
    let (major, minor) = (abs / 100, abs % 100);
    match currency {
        "USD" => format!("{sign}${major}.{minor:02}"),
        "EUR" => format!("{sign}€{major}.{minor:02}"),
        "GBP" => format!("{sign}£{major}.{minor:02}"),
        other => format!("{sign}{major}.{minor:02} {other}"),
    }
}

pub struct ItemCard {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub description: String,
    pub price: String,
    /// `in`, `low` or `out`.
    pub stock_state: &'static str,
    pub stock_text: String,
    pub available: bool,
}

impl From<ItemRow> for ItemCard {
    fn from(i: ItemRow) -> Self {
        let (stock_state, stock_text) = match i.stock {
            s if s <= 0 => ("out", "Out of stock".to_owned()),
            s if s <= LOW_STOCK => ("low", format!("Only {s} left")),
            _ => ("in", "In stock".to_owned()),
        };
        let mut description = i.description.unwrap_or_default();
        if description.chars().count() > 160 {
            description = description.chars().take(157).collect::<String>() + "…";
        }
        ItemCard {
            id: i.id.to_string(),
            sku: i.sku,
            name: i.name,
            category: i.category.unwrap_or_default(),
            description,
            price: money(i.price, &i.currency),
            stock_state,
            stock_text,
            available: i.stock > 0,
        }
    }
}

#[derive(Template)]
#[template(path = "shop.html")]
pub struct ShopPage {
    pub chrome: Chrome,
    pub query: String,
    pub category: String,
    pub categories: Vec<String>,
    pub items: Vec<ItemCard>,
    /// The link to the next page of results, if there is one.
    pub more: Option<String>,
}

/// The shop front cannot read the catalogue: 503, logged.
fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "reading items for the shop front failed");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The shop is not available right now. Please try again in a moment.",
    )
}

/// `/`: the catalogue, searched (`?q=`, through the search index: prefixes, a typo,
/// relevance) and filtered by category (`?category=`).
pub async fn shop(State(state): State<AppState>, q: QueryParams) -> Response {
    let query: String = q.one("q").unwrap_or("").trim().chars().take(200).collect();
    let category: String = q
        .one("category")
        .unwrap_or("")
        .trim()
        .chars()
        .take(200)
        .collect();
    // Every category there is, from the search facets (cached per node, see `search`).
    let all = SearchQuery {
        words: Vec::new(),
        category: None,
        min_price: None,
        max_price: None,
        include_out_of_stock: true,
        sort: SearchSort::Name,
        limit: 1,
    };
    let categories = match state.search.search(&all).await {
        Ok(found) => found.categories,
        Err(e) => return unavailable(e),
    };
    let mut categories: Vec<String> = categories.into_iter().map(|(c, _)| c).collect();
    if !category.is_empty() {
        categories.push(category.clone());
    }
    categories.sort();
    categories.dedup();
    // The shop front's own address with these `q` and `category` and one more pair.
    let link = |name: &str, value: &str| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        if !query.is_empty() {
            link.append_pair("q", &query);
        }
        if !category.is_empty() {
            link.append_pair("category", &category);
        }
        link.append_pair(name, value);
        format!("/?{}", link.finish())
    };
    let words = search_words(&query);
    let (rows, more) = if words.is_empty() {
        // Browsing: every item by name, a page at a time.
        let after = q
            .one("after")
            .and_then(|c| decode_cursor::<ItemCursor>(c).ok());
        let filter = ItemFilter {
            category: (!category.is_empty()).then(|| category.clone()),
            ..ItemFilter::default()
        };
        match state
            .items
            .list(&filter, ItemSort::Name, after.as_ref(), SHOP_PAGE)
            .await
        {
            Ok((rows, next)) => (rows, next.map(|c| link("after", &encode_cursor(&c)))),
            Err(e) => return unavailable(e),
        }
    } else {
        // Searching: the best matches first (the same index as `GET /v1/search`, items out
        // of stock included and shown as such); "more" shows a longer list.
        let limit = q
            .one("limit")
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(SHOP_PAGE)
            .clamp(SHOP_PAGE, MAX_SEARCH_RESULTS);
        let search = SearchQuery {
            words,
            category: (!category.is_empty()).then(|| category.clone()),
            min_price: None,
            max_price: None,
            include_out_of_stock: true,
            sort: SearchSort::Relevance,
            limit,
        };
        match state.search.search(&search).await {
            Ok(found) => {
                let more = (found.items.len() == limit as usize && limit < MAX_SEARCH_RESULTS)
                    .then(|| link("limit", &(limit + SHOP_PAGE).to_string()));
                (found.items, more)
            }
            Err(e) => return unavailable(e),
        }
    };
    let title = if query.is_empty() {
        "Shop".to_owned()
    } else {
        format!("“{query}” · Shop")
    };
    render(
        &ShopPage {
            chrome: Chrome::new(title, "shop", "shop.js"),
            query,
            category,
            categories,
            items: rows.into_iter().map(ItemCard::from).collect(),
            more,
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "cart.html")]
pub struct CartPage {
    pub chrome: Chrome,
}

pub async fn cart() -> Response {
    render(
        &CartPage {
            chrome: Chrome::new("Your cart", "cart", "cart.js"),
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
}

pub async fn login() -> Response {
    render(
        &LoginPage {
            chrome: Chrome::new("Sign in", "login", "login.js"),
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "orders.html")]
pub struct OrdersPage {
    pub chrome: Chrome,
}

pub async fn orders() -> Response {
    render(
        &OrdersPage {
            chrome: Chrome::new("Your orders", "orders", "orders.js"),
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "track.html")]
pub struct TrackPage {
    pub chrome: Chrome,
    pub order_id: String,
}

/// `/orders/{id}`: the tracking page. Any well-formed id gets the frame; whether the order
/// exists for this visitor is the API's answer to its token (or tracking link).
pub async fn track(Path(id): Path<String>) -> Response {
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error_page(StatusCode::NOT_FOUND, "There is no such order.");
    };
    render(
        &TrackPage {
            chrome: Chrome::new("Your order", "track", "track.js"),
            order_id: id.to_string(),
        },
        StatusCode::OK,
    )
}

pub struct StatusChoice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// Every status, as the console's filter offers it.
pub const STATUSES: [(OrderStatus, &str); 6] = [
    (OrderStatus::Created, "Awaiting payment"),
    (OrderStatus::Placed, "Placed"),
    (OrderStatus::Processing, "Processing"),
    (OrderStatus::Shipped, "Shipped"),
    (OrderStatus::Delivered, "Delivered"),
    (OrderStatus::Canceled, "Canceled"),
];

#[derive(Template)]
#[template(path = "console.html")]
pub struct ConsolePage {
    pub chrome: Chrome,
    pub statuses: Vec<StatusChoice>,
    pub any_status: bool,
    pub query: String,
}

/// `/admin/orders?status=…&q=…`: the console's list; the filter lives in the URL.
pub async fn console(q: QueryParams) -> Response {
    let chosen = q.all("status");
    let statuses: Vec<StatusChoice> = STATUSES
        .iter()
        .map(|(s, label)| StatusChoice {
            value: s.as_str(),
            label,
            selected: chosen.contains(&s.as_str()),
        })
        .collect();
    render(
        &ConsolePage {
            chrome: Chrome::new("Orders · Console", "console", "console.js"),
            any_status: !statuses.iter().any(|s| s.selected),
            statuses,
            query: q.one("q").unwrap_or("").chars().take(254).collect(),
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "console_order.html")]
pub struct ConsoleOrderPage {
    pub chrome: Chrome,
    pub order_id: String,
}

pub async fn console_order(Path(id): Path<String>) -> Response {
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error_page(StatusCode::NOT_FOUND, "There is no such order.");
    };
    render(
        &ConsoleOrderPage {
            chrome: Chrome::new("Order · Console", "console-order", "console-order.js"),
            order_id: id.to_string(),
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub message: String,
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    render(
        &ErrorPage {
            chrome: Chrome::new("Not here", "error", "app.js"),
            status: status.as_u16(),
            message: message.to_owned(),
        },
        status,
    )
}

/// The answer to a path nobody serves: a page for browsers, problem+json for the API.
pub fn is_page_request(path: &str, accept: Option<&str>) -> bool {
    !path.starts_with("/v1/") && accept.is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_as_people_write_it() {
        assert_eq!(money(1250, "USD"), "$12.50");
        assert_eq!(money(5, "EUR"), "€0.05");
        assert_eq!(money(100_000, "CHF"), "1000.00 CHF");
        assert_eq!(money(-250, "USD"), "-$2.50");
    }

    #[test]
    fn html_in_names_is_escaped() {
        let page = ErrorPage {
            chrome: Chrome::new("<script>x</script>", "error", "app.js"),
            status: 404,
            message: "<img src=x onerror=alert(1)>".into(),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<img src=x"), "{html}");
        // askama escapes `<` as `&#60;` (or `&lt;`): the text shows, the tag does not exist.
        assert!(
            html.contains("&#60;img src=x onerror=alert(1)&#62;")
                || html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>x</script>"));
    }

    #[test]
    fn only_browsers_off_the_api_get_a_page() {
        assert!(is_page_request(
            "/nope",
            Some("text/html,application/xhtml+xml")
        ));
        assert!(!is_page_request("/v1/nope", Some("text/html")));
        assert!(!is_page_request("/nope", Some("application/json")));
        assert!(!is_page_request("/nope", None));
    }
}
