//! `GET /v1/search`: the full-text item index on both backends (FTS5; tsvector + pg_trgm).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp};

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn search(app: &TestApp, token: &str, params: &str) -> Value {
    let r = app.get(&format!("/v1/search?{params}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{params}: {}", r.text);
    r.body
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A small catalogue: (id of) the OLED television, the LCD television, the soundbar that
/// mentions televisions only in its description, and a radio that is out of stock.
struct Catalogue {
    oled: String,
    lcd: String,
    soundbar: String,
    radio: String,
}

async fn catalogue(app: &TestApp) -> Catalogue {
    let oled = app
        .item_with(json!({"sku": "TV-OLED-55", "name": "Television OLED 55", "category": "tv",
            "description": "Deep blacks", "price": 120000, "stock": 5, "attributes": {"colour": "black"}}))
        .await;
    let lcd = app
        .item_with(
            json!({"sku": "TV-LCD-43", "name": "Television LCD 43", "category": "tv",
            "description": "Bright and cheap", "price": 40000, "stock": 8}),
        )
        .await;
    let soundbar = app
        .item_with(
            json!({"sku": "AUD-SB-1", "name": "Soundbar", "category": "audio",
            "description": "Makes any television sound better", "price": 25000, "stock": 3}),
        )
        .await;
    let radio = app
        .item_with(
            json!({"sku": "AUD-RAD-9", "name": "Kitchen radio", "category": "audio",
            "description": "Small", "price": 3000, "stock": 0}),
        )
        .await;
    Catalogue {
        oled,
        lcd,
        soundbar,
        radio,
    }
}

/// Words match the start of longer ones, the name weighs more than the description, one
/// typo in a longer word is forgiven, and SKUs are found by their parts.
async fn search_ranks_prefixes_and_typos(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let c = catalogue(&app).await;
    let found = ids(&search(&app, &token, "query=telev").await);
    assert_eq!(found.len(), 3, "{found:?}");
    // Name matches before the description-only match.
    assert_eq!(found[2], c.soundbar);
    assert!(found[..2].contains(&c.oled) && found[..2].contains(&c.lcd));
    // Every word must match.
    assert_eq!(
        ids(&search(&app, &token, "query=television%20oled").await),
        vec![c.oled.clone()]
    );
    assert_eq!(
        ids(&search(&app, &token, "query=TELEVISION+Ole").await),
        vec![c.oled.clone()]
    );
    // One typo in a longer word.
    for typo in ["televsion", "telwvision", "televisoin", "soundbr"] {
        let found = ids(&search(&app, &token, &format!("query={typo}")).await);
        assert!(!found.is_empty(), "{typo} found nothing");
        assert!(
            found.contains(&c.oled) || found.contains(&c.soundbar),
            "{typo}: {found:?}"
        );
    }
    // Nothing like it: nothing.
    assert!(ids(&search(&app, &token, "query=xylophone").await).is_empty());
    // SKU and its parts; category; attributes.
    assert_eq!(
        ids(&search(&app, &token, "query=TV-OLED-55").await),
        vec![c.oled.clone()]
    );
    assert_eq!(
        ids(&search(&app, &token, "query=lcd-4").await),
        vec![c.lcd.clone()]
    );
    let audio = ids(&search(&app, &token, "query=audio").await);
    assert_eq!(audio, vec![c.soundbar.clone()], "the radio is out of stock");
    assert_eq!(
        ids(&search(&app, &token, "query=black").await),
        vec![c.oled.clone()]
    );
}
both!(search_ranks_prefixes_and_typos);

/// Filters, sorts and category facets.
async fn search_filters_sorts_and_facets(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let c = catalogue(&app).await;
    // No query: every item in stock.
    let all = search(&app, &token, "").await;
    assert_eq!(ids(&all).len(), 3);
    assert_eq!(all["facets"]["category"], json!({"tv": 2, "audio": 1}));
    // in_stock=false includes items out of stock.
    let with_out = search(&app, &token, "in_stock=false&sort=name").await;
    assert_eq!(ids(&with_out).len(), 4);
    assert_eq!(with_out["facets"]["category"], json!({"tv": 2, "audio": 2}));
    assert_eq!(with_out["data"][0]["name"], "Kitchen radio");
    // Category, price range; facets ignore the category filter itself.
    let tv = search(&app, &token, "query=television&category=tv").await;
    assert_eq!(ids(&tv).len(), 2);
    assert_eq!(tv["facets"]["category"], json!({"tv": 2, "audio": 1}));
    let cheap = search(&app, &token, "query=television&max_price=50000").await;
    let mut cheap_ids = ids(&cheap);
    cheap_ids.sort();
    let mut expected = vec![c.lcd.clone(), c.soundbar.clone()];
    expected.sort();
    assert_eq!(cheap_ids, expected);
    assert_eq!(ids(&cheap).len(), 2);
    assert_eq!(
        ids(&search(&app, &token, "min_price=30000&max_price=50000").await),
        vec![c.lcd.clone()]
    );
    // Sorts.
    let by_price = ids(&search(&app, &token, "query=telev&sort=price").await);
    assert_eq!(
        by_price,
        vec![c.soundbar.clone(), c.lcd.clone(), c.oled.clone()]
    );
    let by_price_desc = ids(&search(&app, &token, "query=telev&sort=-price").await);
    assert_eq!(
        by_price_desc,
        vec![c.oled.clone(), c.lcd.clone(), c.soundbar.clone()]
    );
    let by_name = ids(&search(&app, &token, "sort=name&in_stock=false").await);
    assert_eq!(
        by_name,
        vec![
            c.radio.clone(),
            c.soundbar.clone(),
            c.lcd.clone(),
            c.oled.clone()
        ]
    );
    assert_eq!(
        ids(&search(&app, &token, "sort=name&limit=2").await).len(),
        2
    );
}
both!(search_filters_sorts_and_facets);

/// The index follows every item change at once: renames, prices, and stock (an order
/// that takes the last unit takes the item out of the results).
async fn search_follows_item_changes(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let c = catalogue(&app).await;
    let r = app
        .patch(
            &format!("/v1/items/{}", c.soundbar),
            &app.admin_token,
            json!({"name": "Cinema speaker", "price": 19900, "category": "speakers"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let found = search(&app, &token, "query=cinema").await;
    assert_eq!(ids(&found), vec![c.soundbar.clone()]);
    assert_eq!(found["data"][0]["price"], 19900);
    assert_eq!(found["facets"]["category"], json!({"speakers": 1}));
    assert!(ids(&search(&app, &token, "query=soundbar").await).is_empty());
    // A price change shows at once, in filters too.
    app.patch(
        &format!("/v1/items/{}", c.lcd),
        &app.admin_token,
        json!({"price": 99}),
    )
    .await;
    assert_eq!(
        ids(&search(&app, &token, "max_price=100").await),
        vec![c.lcd.clone()]
    );
    // With words, the filters and sorts read the index's own copy of name, category and
    // price: it follows too (the soundbar's description mentions television).
    assert_eq!(
        ids(&search(&app, &token, "query=television&max_price=100").await),
        vec![c.lcd.clone()]
    );
    assert_eq!(
        ids(&search(&app, &token, "query=television&category=speakers").await),
        vec![c.soundbar.clone()]
    );
    assert_eq!(
        ids(&search(&app, &token, "query=television&sort=name").await),
        vec![c.soundbar.clone(), c.lcd.clone(), c.oled.clone()]
    );
    assert_eq!(
        ids(&search(&app, &token, "query=television&sort=price").await),
        vec![c.lcd.clone(), c.soundbar.clone(), c.oled.clone()]
    );
    // Selling the last units takes the item out; the stock coming back brings it back.
    let r = app.order(&token, &[(&c.oled, 5)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        ids(&search(&app, &token, "query=oled").await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&search(&app, &token, "query=oled&in_stock=false").await),
        vec![c.oled.clone()]
    );
    app.patch(
        &format!("/v1/items/{}", c.oled),
        &app.admin_token,
        json!({"stock_adjustment": 2}),
    )
    .await;
    assert_eq!(
        ids(&search(&app, &token, "query=oled").await),
        vec![c.oled.clone()]
    );
    // A new item is searchable at once.
    let new = app
        .item_with(json!({"name": "Projector 4K", "category": "tv"}))
        .await;
    assert_eq!(
        ids(&search(&app, &token, "query=projector").await),
        vec![new]
    );
}
both!(search_follows_item_changes);

/// Query text is data: quotes, operators, wildcards, parentheses, SQL, control characters
/// and huge queries are 200 or a clear 422, never a 500.
async fn search_treats_query_text_as_data(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let c = catalogue(&app).await;
    let hostile = [
        "\"",
        "\"television",
        "television\"",
        "'",
        "a OR b",
        "television OR",
        "NOT television",
        "AND",
        "*",
        "tele*",
        "NEAR(television oled)",
        "NEAR",
        "(",
        "((television",
        "television)",
        "-television",
        "^television",
        "name:television",
        "{name}: television",
        "television & oled | !x",
        "television:*",
        "'; DROP TABLE items; --",
        "%",
        "_",
        "\\",
        "\\\"",
        "\u{0}",
        "télévision 📺",
        "<->",
        "a:*B",
        "",
        "   ",
    ];
    for q in hostile {
        let r = app
            .get(&format!("/v1/search?query={}", encode(q)), &token)
            .await;
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{q:?}: {} {}",
            r.status,
            r.text
        );
    }
    // The words inside operators still search as words.
    let r = search(
        &app,
        &token,
        &format!("query={}", encode("\"television\" AND (oled*")),
    )
    .await;
    assert!(ids(&r).is_empty() || ids(&r) == vec![c.oled.clone()], "{r}");
    let r = search(&app, &token, &format!("query={}", encode("(oled*"))).await;
    assert_eq!(ids(&r), vec![c.oled.clone()]);
    // Long queries: up to 500 characters are searched, longer ones are a clear 422.
    let r = app
        .get(
            &format!("/v1/search?query={}", "television+".repeat(45)),
            &token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .get(
            &format!("/v1/search?query={}", "x".repeat(10 * 1024)),
            &token,
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["query"]);
    let r = app
        .get(
            &format!("/v1/search?query={}", "a%20(".repeat(2000)),
            &token,
        )
        .await;
    r.assert_problem(422, "validation_failed");
    // The items are all still there.
    assert_eq!(ids(&search(&app, &token, "in_stock=false").await).len(), 4);
}
both!(search_treats_query_text_as_data);

/// Bad parameters are 422 naming the parameter; callers need a token with items:read.
async fn search_refuses_bad_parameters(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    for (params, field) in [
        ("sort=cheapest", "sort"),
        ("min_price=abc", "min_price"),
        ("max_price=-1", "max_price"),
        ("min_price=10&max_price=5", "max_price"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("in_stock=maybe", "in_stock"),
        ("min_price=99999999999999999999", "min_price"),
    ] {
        let r = app.get(&format!("/v1/search?{params}"), &token).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.fields(), vec![field], "{params}");
    }
    let r = app
        .send(reqwest::Method::GET, "/v1/search?query=x", None, None)
        .await;
    r.assert_problem(401, "unauthorized");
    let (_, key) = app.api_key(&["orders:read"]).await;
    app.get("/v1/search?query=x", &key)
        .await
        .assert_problem(403, "forbidden");
    let (_, key) = app.api_key(&["items:read"]).await;
    assert_eq!(
        app.get("/v1/search?query=x", &key).await.status,
        StatusCode::OK
    );
}
both!(search_refuses_bad_parameters);

/// Repeated searches are answered from the node's cache, yet never stale: stock and price
/// are as of the request, and any change that can change an answer (stock reaching or
/// leaving zero, text, category, price, a new item) is seen at once, by every node.
async fn cached_searches_are_never_stale(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let c = catalogue(&app).await;
    let first = search(&app, &token, "query=television&sort=price").await;
    assert_eq!(
        ids(&first),
        vec![c.soundbar.clone(), c.lcd.clone(), c.oled.clone()]
    );
    let hits = app.state.search.hits();
    assert_eq!(
        search(&app, &token, "query=television&sort=price").await,
        first
    );
    assert_eq!(
        app.state.search.hits(),
        hits + 1,
        "the repeat is a cache hit"
    );
    // An order that leaves stock: still a hit, and the stock shown is the new one.
    let r = app.order(&token, &[(&c.oled, 2)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let again = search(&app, &token, "query=television&sort=price").await;
    assert_eq!(app.state.search.hits(), hits + 2);
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(again["data"][2]["stock"], 3);
    // Selling the rest takes it out at once.
    let r = app.order(&token, &[(&c.oled, 3)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let sold_out = search(&app, &token, "query=television&sort=price").await;
    assert_eq!(ids(&sold_out), vec![c.soundbar.clone(), c.lcd.clone()]);
    assert_eq!(sold_out["facets"]["category"], json!({"audio": 1, "tv": 1}));
    // A price change re-sorts at once.
    let r = app
        .patch(
            &format!("/v1/items/{}", c.lcd),
            &app.admin_token,
            json!({"price": 100}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        ids(&search(&app, &token, "query=television&sort=price").await),
        vec![c.lcd.clone(), c.soundbar.clone()]
    );
    // A new item is found by a search answered before.
    let before = ids(&search(&app, &token, "query=telev").await);
    let tv = app
        .item_with(json!({"name": "Television mini", "category": "tv", "price": 5000}))
        .await;
    let after = ids(&search(&app, &token, "query=telev").await);
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.contains(&tv));
    if b == Backend::Postgres {
        // Another node's change is seen by this node's cached answer.
        let other = app.another_node(|_| {}).await;
        let cached = search(&app, &token, "query=telev").await;
        assert_eq!(ids(&cached), after);
        let r = other
            .patch(
                &format!("/v1/items/{tv}"),
                &other.admin_token,
                json!({"name": "Radio mini"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let now = ids(&search(&app, &token, "query=telev").await);
        assert!(!now.contains(&tv), "{now:?}");
    }
}
both!(cached_searches_are_never_stale);
