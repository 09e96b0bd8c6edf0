//! Discovery: `listings` filters, orderings, cursor pagination (also while
//! listings are being added) and the errors for bad filters and cursors.

use std::collections::{BTreeSet, HashMap, HashSet};

use agora_tests::{assert_bad_input, on_both_backends, GqlResponse, TestApp};
use serde_json::{json, Value};

const SEARCH: &str = "query($f: ListingFilter, $o: ListingOrderBy! = CREATED_DESC, \
    $first: Int, $after: String, $last: Int, $before: String) { \
    listings(filter: $f, orderBy: $o, first: $first, after: $after, last: $last, before: $before) { \
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } \
    edges { cursor node { id title } } } }";
const PAUSE: &str = "mutation($i: ChangeListingStatusInput!) { pauseListing(input: $i) { listing { status } } }";
const PUBLISH: &str = "mutation($i: ChangeListingStatusInput!) { publishListing(input: $i) { listing { status } } }";
const ARCHIVE: &str = "mutation($i: ChangeListingStatusInput!) { archiveListing(input: $i) { listing { status } } }";
const UPDATE: &str = "mutation($i: UpdateListingInput!) { updateListing(input: $i) { listing { version } } }";

async fn search(app: &TestApp, vars: Value) -> GqlResponse {
    app.gql(SEARCH, vars, None).await
}

/// The `listings` connection of a successful search.
async fn connection(app: &TestApp, vars: Value) -> Value {
    search(app, vars).await.ok()["listings"].clone()
}

fn titles(conn: &Value) -> Vec<String> {
    conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["title"].as_str().unwrap().to_owned())
        .collect()
}

/// The titles matching `filter`, checking that `totalCount` counts exactly them.
async fn matching(app: &TestApp, filter: Value) -> BTreeSet<String> {
    let conn = connection(app, json!({ "f": filter, "first": 100 })).await;
    let found = titles(&conn);
    assert_eq!(conn["totalCount"].as_u64(), Some(found.len() as u64), "totalCount for {filter}");
    found.into_iter().collect()
}

fn set(titles: &[&str]) -> BTreeSet<String> {
    titles.iter().map(|t| (*t).to_owned()).collect()
}

fn fixed(asset: &str, amount: u64) -> Value {
    json!({ "fixed": { "asset": asset, "amount": amount.to_string() } })
}

async fn change_status(app: &TestApp, mutation: &str, id: &str, token: &str) {
    app.gql(mutation, json!({ "i": { "id": id } }), Some(token)).await.ok();
}

async fn text_search_matches_every_word_in_title_description_and_tags(app: TestApp) {
    let (a, _) = app.new_provider("ana").await;
    let (b, _) = app.new_provider("ben").await;
    let (c, _) = app.new_provider("cem").await;
    let seed = [
        (&a, "Rust code review", "An hour with an experienced reviewer.", json!(["rust", "review"])),
        (&a, "Python mentoring", "Pair programming in PYTHON for beginners.", json!(["python"])),
        (&b, "GPU rental", "Rent a graphics card by the hour.", json!(["cuda", "compute"])),
        (&b, "Guaranteed 100% uptime relay", "A fast_lane relay for your node.", json!(["relay"])),
        (&c, "100 percent coverage audit", "A fastXlane review of your contracts.", json!(["audit"])),
    ];
    let mut ids = Vec::new();
    for (who, title, description, tags) in seed {
        let input = json!({ "title": title, "description": description, "tags": tags });
        ids.push(app.new_listing(&who.access_token, input).await);
    }
    app.new_listing(&c.access_token, json!({ "title": "Rust draft", "tags": ["rust"], "publish": false })).await;

    let search_text = |text: &str| matching(&app, json!({ "text": text }));
    assert_eq!(search_text("RUST Review").await, set(&["Rust code review"]));
    assert_eq!(search_text("review").await, set(&["Rust code review", "100 percent coverage audit"]));
    assert_eq!(search_text("python").await, set(&["Python mentoring"]));
    assert_eq!(search_text("  hour   RENT ").await, set(&["GPU rental"]));
    // Tags are searched too.
    assert_eq!(search_text("cuda").await, set(&["GPU rental"]));
    assert_eq!(search_text("rust python").await, set(&[]));
    assert_eq!(search_text("kubernetes").await, set(&[]));
    // `%` and `_` are literal characters, not LIKE wildcards.
    assert_eq!(search_text("100%").await, set(&["Guaranteed 100% uptime relay"]));
    assert_eq!(search_text("fast_lane").await, set(&["Guaranteed 100% uptime relay"]));
    assert_eq!(search_text("%").await, set(&["Guaranteed 100% uptime relay"]));
    assert_eq!(search_text("_").await, set(&["Guaranteed 100% uptime relay"]));
    assert_eq!(search_text("\\").await, set(&[]));
    assert_eq!(search_text("\\%").await, set(&[]));
    // Blank text does not filter.
    assert_eq!(search_text("   ").await.len(), 5);

    // An edit is searchable at once, and the old words are gone.
    let edit = json!({ "i": { "id": ids[2], "title": "Graphics card hire", "tags": ["opencl"] } });
    app.gql(UPDATE, edit, Some(&b.access_token)).await.ok();
    assert_eq!(search_text("cuda").await, set(&[]));
    assert_eq!(search_text("gpu").await, set(&[]));
    assert_eq!(search_text("opencl hire").await, set(&["Graphics card hire"]));
    assert_eq!(matching(&app, json!({ "tags": ["cuda"] })).await, set(&[]));
    assert_eq!(matching(&app, json!({ "tags": ["opencl"] })).await, set(&["Graphics card hire"]));
}

fn offer(title: &str, category: &str, tags: &[&str], region: &str, pricing: Value) -> Value {
    let asset = pricing.as_object().and_then(|o| o.values().next()).map(|p| p["asset"].clone());
    json!({ "title": title, "category": category, "tags": tags, "region": region, "asset": asset, "pricing": pricing })
}

async fn filters_select_by_category_tags_region_asset_price_and_provider(app: TestApp) {
    let (a, a_id) = app.new_provider("ana").await;
    let (b, b_id) = app.new_provider("ben").await;
    let (c, _) = app.new_provider("cem").await;
    let xrp_hourly = json!({ "metered": {
        "asset": "XRP", "unit": "hour", "pricePerUnit": "2000000", "minDeposit": "5000000",
    } });
    let seed = [
        (&a, offer("Rust review", "expert-session", &["rust", "review"], "eu", fixed("BTC", 50_000))),
        (&a, offer("Async mentoring", "expert-session", &["rust", "async"], "us-west", fixed("BTC", 20_000))),
        (&a, offer("GPU hours", "compute", &["gpu"], "eu", xrp_hourly)),
        (&b, offer("Rust screencast", "content", &["rust", "review", "video"], "global", fixed("BTC", 10_000))),
        (&b, offer("Relay bandwidth", "bandwidth", &["relay"], "eu", fixed("XRP", 3_000_000))),
    ];
    for (who, input) in seed {
        app.new_listing(&who.access_token, input).await;
    }
    // Listings that match many filters but are not active.
    let hidden = |title: &str| offer(title, "expert-session", &["rust", "review"], "eu", fixed("BTC", 50_000));
    let mut draft = hidden("Hidden draft");
    draft["publish"] = json!(false);
    app.new_listing(&b.access_token, draft).await;
    let paused = app.new_listing(&c.access_token, hidden("Hidden paused")).await;
    change_status(&app, PAUSE, &paused, &c.access_token).await;
    let archived = app.new_listing(&c.access_token, hidden("Hidden archived")).await;
    change_status(&app, ARCHIVE, &archived, &c.access_token).await;

    let all = vec!["Rust review", "Async mentoring", "GPU hours", "Rust screencast", "Relay bandwidth"];
    let cases = [
        (json!({}), all.clone()),
        (json!({ "tags": [] }), all.clone()),
        (json!({ "category": "expert-session" }), vec!["Rust review", "Async mentoring"]),
        (json!({ "category": "Compute" }), vec!["GPU hours"]),
        (json!({ "tags": ["rust"] }), vec!["Rust review", "Async mentoring", "Rust screencast"]),
        (json!({ "tags": ["RUST"] }), vec!["Rust review", "Async mentoring", "Rust screencast"]),
        (json!({ "tags": ["review", "rust"] }), vec!["Rust review", "Rust screencast"]),
        (json!({ "tags": ["rust", "review", "video"] }), vec!["Rust screencast"]),
        (json!({ "tags": ["rust", "gpu"] }), vec![]),
        (json!({ "region": "eu" }), vec!["Rust review", "GPU hours", "Relay bandwidth"]),
        (json!({ "region": "US-West" }), vec!["Async mentoring"]),
        (json!({ "region": "mars" }), vec![]),
        (json!({ "asset": "XRP" }), vec!["GPU hours", "Relay bandwidth"]),
        (json!({ "asset": "BTC" }), vec!["Rust review", "Async mentoring", "Rust screencast"]),
        // Price bounds are inclusive and apply to the fixed price or the price per unit.
        (json!({ "priceMin": "20000", "priceMax": "50000" }), vec!["Rust review", "Async mentoring"]),
        (json!({ "priceMin": 20000, "priceMax": 20000 }), vec!["Async mentoring"]),
        (json!({ "priceMax": "10000" }), vec!["Rust screencast"]),
        (json!({ "priceMax": "9999" }), vec![]),
        (json!({ "priceMin": "2000000" }), vec!["GPU hours", "Relay bandwidth"]),
        (json!({ "priceMin": "2000001" }), vec!["Relay bandwidth"]),
        (json!({ "priceMin": "18446744073709551615" }), vec![]),
        (json!({ "providerId": a_id }), vec!["Rust review", "Async mentoring", "GPU hours"]),
        (json!({ "providerId": b_id }), vec!["Rust screencast", "Relay bandwidth"]),
        // Combined filters must all hold.
        (json!({ "tags": ["rust"], "priceMax": "20000" }), vec!["Async mentoring", "Rust screencast"]),
        (json!({ "tags": ["rust"], "region": "eu", "providerId": b_id }), vec![]),
        (
            json!({ "category": "expert-session", "region": "us-west", "asset": "BTC", "text": "async" }),
            vec!["Async mentoring"],
        ),
        (json!({ "text": "rust", "asset": "XRP" }), vec![]),
    ];
    for (filter, expected) in cases {
        assert_eq!(matching(&app, filter.clone()).await, set(&expected), "{filter}");
    }

    // totalCount counts every match, not just the page.
    let page = connection(&app, json!({ "f": { "tags": ["rust"] }, "first": 1 })).await;
    assert_eq!((titles(&page).len(), page["totalCount"].as_u64()), (1, Some(3)));

    // Publishing a paused listing brings it back.
    change_status(&app, PUBLISH, &paused, &c.access_token).await;
    let found = matching(&app, json!({ "tags": ["rust", "review"] })).await;
    assert_eq!(found, set(&["Rust review", "Rust screencast", "Hidden paused"]));
}

async fn drafts_paused_and_archived_listings_never_appear_in_search(app: TestApp) {
    let (p, provider_id) = app.new_provider("pia").await;
    let t = p.access_token.as_str();
    app.new_listing(t, json!({ "title": "Zebra draft", "publish": false })).await;
    let paused = app.new_listing(t, json!({ "title": "Zebra paused" })).await;
    change_status(&app, PAUSE, &paused, t).await;
    let archived = app.new_listing(t, json!({ "title": "Zebra archived" })).await;
    change_status(&app, ARCHIVE, &archived, t).await;
    let draft_then_archived = app.new_listing(t, json!({ "title": "Zebra draft archived", "publish": false })).await;
    change_status(&app, ARCHIVE, &draft_then_archived, t).await;

    for order in ["CREATED_DESC", "CREATED_ASC", "PRICE_ASC", "PRICE_DESC", "RATING_DESC"] {
        let conn = connection(&app, json!({ "o": order })).await;
        assert_eq!((conn["totalCount"].as_u64(), titles(&conn).len()), (Some(0), 0), "{order}");
        let backward = connection(&app, json!({ "o": order, "last": 10 })).await;
        assert_eq!(titles(&backward).len(), 0, "{order} backwards");
    }
    assert_eq!(matching(&app, json!({ "text": "zebra" })).await, set(&[]));
    assert_eq!(matching(&app, json!({ "providerId": provider_id })).await, set(&[]));
    let q = "query($id: ID!) { provider(id: $id) { listings { totalCount } } }";
    let profile = app.gql(q, json!({ "id": provider_id }), None).await.ok();
    assert_eq!(profile["provider"]["listings"]["totalCount"], 0);
    // The owner still has all of them.
    let mine = app.gql("{ myListings { totalCount } }", json!({}), Some(t)).await.ok();
    assert_eq!(mine["myListings"]["totalCount"], 4);
}

async fn invalid_filters_are_bad_user_input(app: TestApp) {
    let (p, _) = app.new_provider("pia").await;
    let listing_id = app.new_listing(&p.access_token, json!({})).await;
    let cases = [
        (json!({ "priceMin": "50000", "priceMax": "49999" }), "filter.priceMin", "INCONSISTENT"),
        (json!({ "priceMin": "-1" }), "filter.priceMin", "INVALID_FORMAT"),
        (json!({ "priceMax": "1.5" }), "filter.priceMax", "INVALID_FORMAT"),
        (json!({ "category": "weapons" }), "filter.category", "UNKNOWN_VALUE"),
        (json!({ "tags": ["no spaces"] }), "filter.tags", "INVALID_FORMAT"),
        (json!({ "region": "e u" }), "filter.region", "INVALID_FORMAT"),
        (json!({ "providerId": listing_id }), "filter.providerId", "WRONG_TYPE"),
        (json!({ "providerId": "nope" }), "filter.providerId", "INVALID_FORMAT"),
        (json!({ "text": "a b c d e f g h i" }), "filter.text", "TOO_MANY"),
        (json!({ "text": "x".repeat(201) }), "filter.text", "TOO_LONG"),
    ];
    for (filter, field, reason) in cases {
        let resp = search(&app, json!({ "f": filter })).await;
        assert_bad_input(&resp, field, reason);
    }
}

/// Listings "L0".."L5" created in that order with these prices; L3 is metered.
async fn seed_for_ordering(app: &TestApp) -> Vec<(String, u64)> {
    let mut providers = Vec::new();
    for name in ["ana", "ben", "cem"] {
        providers.push(app.new_provider(name).await.0);
    }
    let prices = [30_000, 10_000, 30_000, 20_000, 50_000, 10_000];
    let mut seeded = Vec::new();
    for (i, price) in prices.into_iter().enumerate() {
        let pricing = if i == 3 {
            let per_hour = price.to_string();
            json!({ "metered": { "asset": "BTC", "unit": "hour", "pricePerUnit": per_hour, "minDeposit": "40000" } })
        } else {
            fixed("BTC", price)
        };
        let title = format!("L{i}");
        let token = &providers[i % providers.len()].access_token;
        app.new_listing(token, json!({ "title": title, "pricing": pricing })).await;
        seeded.push((title, price));
    }
    seeded
}

async fn each_ordering_sorts_with_ties_broken_by_id(app: TestApp) {
    let seeded = seed_for_ordering(&app).await;
    let created: Vec<String> = seeded.iter().map(|(t, _)| t.clone()).collect();
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let order = |o: &'static str| {
        let app = &app;
        async move { titles(&connection(app, json!({ "o": o, "first": 50 })).await) }
    };
    let default = titles(&connection(&app, json!({ "first": 50 })).await);
    assert_eq!(default, newest_first);
    assert_eq!(order("CREATED_DESC").await, newest_first);
    assert_eq!(order("CREATED_ASC").await, created);
    // Equal prices keep creation order (ids are time-ordered), reversed when descending.
    assert_eq!(order("PRICE_ASC").await, ["L1", "L5", "L3", "L0", "L2", "L4"]);
    assert_eq!(order("PRICE_DESC").await, ["L4", "L2", "L0", "L3", "L5", "L1"]);
    // Every rating is 0 for now, so the order is the tie-break by id alone: one
    // of the creation orders, the same on every request and across pages.
    let by_rating = order("RATING_DESC").await;
    assert!(by_rating == newest_first || by_rating == created, "{by_rating:?}");
    assert_eq!(order("RATING_DESC").await, by_rating);
    for page_size in [1, 2, 4] {
        let walked = walk_forward(&app, "RATING_DESC", page_size).await;
        assert_eq!(walked, by_rating, "pages of {page_size}");
    }
}

/// Pages forwards with `first: page_size`, checking the page info on the way.
async fn walk_forward(app: &TestApp, order: &str, page_size: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let conn = connection(app, json!({ "o": order, "first": page_size, "after": after })).await;
        let page = titles(&conn);
        let info = &conn["pageInfo"];
        assert!(page.len() <= page_size);
        assert_eq!(info["hasPreviousPage"], !after.is_null(), "{order}");
        let edges = conn["edges"].as_array().unwrap();
        if let (Some(first), Some(last)) = (edges.first(), edges.last()) {
            assert_eq!(info["startCursor"], first["cursor"]);
            assert_eq!(info["endCursor"], last["cursor"]);
        }
        seen.extend(page);
        if info["hasNextPage"] == false {
            return seen;
        }
        assert!(seen.len() < 1000, "pagination does not end");
        after = info["endCursor"].clone();
    }
}

/// Pages backwards from the end with `last: page_size`; returns the rows in display order.
async fn walk_backward(app: &TestApp, order: &str, page_size: usize) -> Vec<String> {
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut before = Value::Null;
    loop {
        let conn = connection(app, json!({ "o": order, "last": page_size, "before": before })).await;
        let info = &conn["pageInfo"];
        assert_eq!(info["hasNextPage"], !before.is_null(), "{order}");
        pages.push(titles(&conn));
        if info["hasPreviousPage"] == false {
            return pages.into_iter().rev().flatten().collect();
        }
        assert!(pages.len() < 1000, "pagination does not end");
        before = info["startCursor"].clone();
    }
}

async fn pagination_visits_every_listing_once_in_both_directions(app: TestApp) {
    let mut providers = Vec::new();
    for name in ["ana", "ben", "cem"] {
        providers.push(app.new_provider(name).await.0);
    }
    // Only four prices, so the price orderings are mostly ties.
    for i in 0..25u64 {
        let token = &providers[i as usize % 3].access_token;
        let input = json!({ "title": format!("item {i:02}"), "pricing": fixed("BTC", 10_000 + (i % 4) * 5_000) });
        app.new_listing(token, input).await;
    }
    for order in ["CREATED_DESC", "CREATED_ASC", "PRICE_ASC", "PRICE_DESC", "RATING_DESC"] {
        let all = connection(&app, json!({ "o": order, "first": 100 })).await;
        assert_eq!(all["totalCount"], 25);
        assert_eq!(all["pageInfo"]["hasNextPage"], false);
        let all = titles(&all);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 25);

        let mut sizes = Vec::new();
        let mut after = Value::Null;
        let mut forward = Vec::new();
        loop {
            let conn = connection(&app, json!({ "o": order, "first": 7, "after": after })).await;
            assert_eq!(conn["totalCount"], 25);
            let page = titles(&conn);
            sizes.push(page.len());
            forward.extend(page);
            if conn["pageInfo"]["hasNextPage"] == false {
                break;
            }
            after = conn["pageInfo"]["endCursor"].clone();
            assert!(sizes.len() < 10, "{order}: pagination does not end");
        }
        assert_eq!(sizes, [7, 7, 7, 4], "{order}");
        assert_eq!(forward, all, "{order}: forwards");
        assert_eq!(walk_forward(&app, order, 7).await, all, "{order}: forwards");
        assert_eq!(walk_backward(&app, order, 7).await, all, "{order}: backwards");
        let last = connection(&app, json!({ "o": order, "last": 7 })).await;
        assert_eq!(titles(&last), all[18..], "{order}: the last page");
    }
}

/// Pages through `order` in pages of 4 while adding three listings after every
/// page: one at the cheapest price, one in the middle, one above all.
async fn paginate_while_inserting(app: &TestApp, order: &str) {
    let (p, _) = app.new_provider("seller").await;
    let t = p.access_token.as_str();
    let mut price_of: HashMap<String, u64> = HashMap::new();
    for i in 0..15u64 {
        let title = format!("old {i:02}");
        let price = 10_000 + (i % 5) * 10_000;
        app.new_listing(t, json!({ "title": title, "pricing": fixed("BTC", price) })).await;
        price_of.insert(title, price);
    }
    let original = titles(&connection(app, json!({ "o": order, "first": 100 })).await);
    assert_eq!(original.len(), 15);

    let mut seen: Vec<String> = Vec::new();
    let mut expected_new = BTreeSet::new();
    let mut skipped_new = BTreeSet::new();
    let mut after = Value::Null;
    for round in 0.. {
        assert!(round < 20, "{order}: pagination does not end");
        let conn = connection(app, json!({ "o": order, "first": 4, "after": after })).await;
        let page = titles(&conn);
        seen.extend(page.iter().cloned());
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
        let cursor_price = price_of[page.last().unwrap()];
        for (j, price) in [10_000, 30_000, 60_000].into_iter().enumerate() {
            let title = format!("new {round}-{j}");
            app.new_listing(t, json!({ "title": title, "pricing": fixed("BTC", price) })).await;
            price_of.insert(title.clone(), price);
            // A new row has the largest id, so it sorts after the cursor unless
            // its price puts it before.
            let after_cursor = order == "CREATED_ASC" || price >= cursor_price;
            if after_cursor {
                expected_new.insert(title);
            } else {
                skipped_new.insert(title);
            }
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{order}: duplicates in {seen:?}");
    let old: Vec<String> = seen.iter().filter(|t| t.starts_with("old")).cloned().collect();
    assert_eq!(old, original, "{order}: the rows that existed before are all visited, in order");
    let new: BTreeSet<String> = seen.iter().filter(|t| t.starts_with("new")).cloned().collect();
    assert_eq!(new, expected_new, "{order}: new rows after the cursor are visited");
    assert!(new.is_disjoint(&skipped_new));
    if order == "PRICE_ASC" {
        assert!(!skipped_new.is_empty(), "some rows were inserted before the cursor");
        let prices: Vec<u64> = seen.iter().map(|t| price_of[t]).collect();
        assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{order}: {prices:?}");
    } else {
        let first_new = seen.iter().position(|t| t.starts_with("new")).unwrap_or(seen.len());
        assert_eq!(first_new, 15, "{order}: new rows come after every old one");
    }
}

async fn pages_in_creation_order_neither_repeat_nor_skip_rows_while_listings_are_added(app: TestApp) {
    paginate_while_inserting(&app, "CREATED_ASC").await;
}

async fn pages_in_price_order_neither_repeat_nor_skip_rows_while_listings_are_added(app: TestApp) {
    paginate_while_inserting(&app, "PRICE_ASC").await;
}

async fn bad_cursors_and_page_sizes_are_bad_user_input(app: TestApp) {
    let (p, _) = app.new_provider("pia").await;
    for _ in 0..3 {
        app.new_listing(&p.access_token, json!({})).await;
    }
    let page = connection(&app, json!({ "first": 1 })).await;
    let created_desc_cursor = page["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    // The cursor works with its own ordering.
    let next = connection(&app, json!({ "first": 5, "after": created_desc_cursor })).await;
    assert_eq!(titles(&next).len(), 2);

    for bad in ["!!!", "Zm9v", "Y2R8MHxub3QtYS11dWlk", "Y2R8eHwwMTkwYTViMi03YzNlLTdkNDEtOGYwMC0wMDAwMDAwMDAwMDA", ""] {
        assert_bad_input(&search(&app, json!({ "first": 1, "after": bad })).await, "after", "INVALID_CURSOR");
        assert_bad_input(&search(&app, json!({ "last": 1, "before": bad })).await, "before", "INVALID_CURSOR");
    }
    let truncated = &created_desc_cursor[..12];
    assert_bad_input(&search(&app, json!({ "after": truncated })).await, "after", "INVALID_CURSOR");
    for order in ["CREATED_ASC", "PRICE_ASC", "PRICE_DESC", "RATING_DESC"] {
        let mismatch = search(&app, json!({ "o": order, "first": 1, "after": created_desc_cursor })).await;
        assert_bad_input(&mismatch, "after", "CURSOR_ORDER_MISMATCH");
        let mismatch = search(&app, json!({ "o": order, "last": 1, "before": created_desc_cursor })).await;
        assert_bad_input(&mismatch, "before", "CURSOR_ORDER_MISMATCH");
    }

    assert_bad_input(&search(&app, json!({ "first": 101 })).await, "first", "OUT_OF_RANGE");
    assert_bad_input(&search(&app, json!({ "first": -1 })).await, "first", "OUT_OF_RANGE");
    assert_bad_input(&search(&app, json!({ "last": 101 })).await, "last", "OUT_OF_RANGE");
    assert_eq!(titles(&connection(&app, json!({ "first": 100 })).await).len(), 3);
    let empty = connection(&app, json!({ "first": 0 })).await;
    assert_eq!((titles(&empty).len(), &empty["pageInfo"]["hasNextPage"]), (0, &json!(true)));

    let both = search(&app, json!({ "first": 2, "last": 2 })).await;
    assert_eq!(both.error_code(), Some("BAD_USER_INPUT"));
    let mixed = search(&app, json!({ "first": 2, "before": created_desc_cursor })).await;
    assert_eq!(mixed.error_code(), Some("BAD_USER_INPUT"));
    let mixed = search(&app, json!({ "after": created_desc_cursor, "last": 2 })).await;
    assert_eq!(mixed.error_code(), Some("BAD_USER_INPUT"));

    // The other connections check their cursors the same way.
    let mine = app
        .gql("query($a: String) { myListings(after: $a) { totalCount } }", json!({ "a": "!!!" }), Some(&p.access_token))
        .await;
    assert_bad_input(&mine, "after", "INVALID_CURSOR");
}

on_both_backends!(
    text_search_matches_every_word_in_title_description_and_tags,
    filters_select_by_category_tags_region_asset_price_and_provider,
    drafts_paused_and_archived_listings_never_appear_in_search,
    invalid_filters_are_bad_user_input,
    each_ordering_sorts_with_ties_broken_by_id,
    pagination_visits_every_listing_once_in_both_directions,
    pages_in_creation_order_neither_repeat_nor_skip_rows_while_listings_are_added,
    pages_in_price_order_neither_repeat_nor_skip_rows_while_listings_are_added,
    bad_cursors_and_page_sizes_are_bad_user_input,
);
