//! Listings: the provider's lifecycle (draft, edit, publish, pause, archive),
//! who may change what, every validation rule, fetching by id, and provider
//! profiles.

use agora_tests::{assert_bad_input, on_both_backends, valid_listing_input, GqlResponse, TestApp};
use serde_json::{json, Value};

const UPDATE: &str = "mutation($i: UpdateListingInput!) { updateListing(input: $i) { listing { \
    id title description category tags region asset status version deliveryWindowHours \
    pricing { ... on FixedPricing { asset amount } } } } }";
const PUBLISH: &str =
    "mutation($i: ChangeListingStatusInput!) { publishListing(input: $i) { listing { id title status version } } }";
const PAUSE: &str =
    "mutation($i: ChangeListingStatusInput!) { pauseListing(input: $i) { listing { id title status version } } }";
const ARCHIVE: &str =
    "mutation($i: ChangeListingStatusInput!) { archiveListing(input: $i) { listing { id title status version } } }";
const LISTING: &str = "query($id: ID!) { listing(id: $id) { id title status version } }";
const NODE: &str = "query($id: ID!) { node(id: $id) { id ... on Listing { title status } } }";
const MY_COUNT: &str = "{ myListings { totalCount } }";
const BECOME_PROVIDER: &str = "mutation($i: ProviderProfileInput!) { becomeProvider(input: $i) { provider { \
    id displayName region languages } } }";

/// Runs `PUBLISH`, `PAUSE` or `ARCHIVE` on listing `id`.
async fn set_status(
    app: &TestApp,
    mutation: &str,
    id: &str,
    expected_version: Option<i64>,
    token: Option<&str>,
) -> GqlResponse {
    let mut input = json!({ "id": id });
    if let Some(v) = expected_version {
        input["expectedVersion"] = json!(v);
    }
    app.gql(mutation, json!({ "i": input }), token).await
}

/// The listing in the payload of a successful listing mutation.
fn listing_of(resp: GqlResponse) -> Value {
    let data = resp.ok();
    data.as_object()
        .and_then(|o| o.values().next())
        .map(|payload| payload["listing"].clone())
        .unwrap_or_default()
}

async fn fetch(app: &TestApp, id: &str, token: Option<&str>) -> Value {
    app.gql(LISTING, json!({ "id": id }), token).await.ok()["listing"].clone()
}

async fn my_listing_count(app: &TestApp, token: &str) -> i64 {
    let data = app.gql(MY_COUNT, json!({}), Some(token)).await.ok();
    data["myListings"]["totalCount"].as_i64().unwrap()
}

async fn a_provider_drafts_edits_publishes_pauses_and_archives_a_listing(app: TestApp) {
    let (p, _) = app.new_provider("paula").await;
    let t = Some(p.access_token.as_str());
    let created = app.create_listing(&p.access_token, json!({ "publish": false })).await.ok();
    let draft = &created["createListing"]["listing"];
    assert_eq!((draft["status"].as_str(), draft["version"].as_i64()), (Some("DRAFT"), Some(0)));
    let id = draft["id"].as_str().unwrap();

    let edited = listing_of(app.gql(UPDATE, json!({ "i": { "id": id, "title": "Async Rust review" } }), t).await);
    assert_eq!(edited["title"], "Async Rust review");
    // The fields not given keep their values.
    let valid = valid_listing_input();
    assert_eq!(edited["description"], valid["description"]);
    assert_eq!(edited["category"], "expert-session");
    assert_eq!(edited["tags"], json!(["rust", "review"]));
    assert_eq!(edited["region"], "eu");
    assert_eq!(edited["pricing"], json!({ "asset": "BTC", "amount": "50000" }));
    assert_eq!(edited["deliveryWindowHours"], 48);
    assert_eq!((edited["status"].as_str(), edited["version"].as_i64()), (Some("DRAFT"), Some(1)));

    let input = json!({ "i": {
        "id": id,
        "expectedVersion": 1,
        "tags": ["Rust", "async"],
        "pricing": { "fixed": { "asset": "BTC", "amount": "75000" } },
    } });
    let repriced = listing_of(app.gql(UPDATE, input, t).await);
    assert_eq!(repriced["pricing"]["amount"], "75000");
    assert_eq!(repriced["tags"], json!(["rust", "async"]));
    assert_eq!(repriced["title"], "Async Rust review");
    assert_eq!(repriced["version"], 2);

    let mut version = 2;
    for (mutation, status) in [(PUBLISH, "ACTIVE"), (PAUSE, "PAUSED"), (PUBLISH, "ACTIVE"), (ARCHIVE, "ARCHIVED")] {
        let l = listing_of(set_status(&app, mutation, id, Some(version), t).await);
        version += 1;
        assert_eq!((l["status"].as_str(), l["version"].as_i64()), (Some(status), Some(version)));
    }
    let mine = app
        .gql("{ myListings(status: [ARCHIVED]) { totalCount edges { node { id title } } } }", json!({}), t)
        .await
        .ok();
    assert_eq!(mine["myListings"]["totalCount"], 1);
    assert_eq!(mine["myListings"]["edges"][0]["node"]["title"], "Async Rust review");
}

async fn invalid_transitions_and_stale_versions_are_conflicts(app: TestApp) {
    let (p, _) = app.new_provider("quinn").await;
    let t = Some(p.access_token.as_str());
    let draft = app.new_listing(&p.access_token, json!({ "publish": false })).await;
    assert_eq!(set_status(&app, PAUSE, &draft, None, t).await.error_code(), Some("CONFLICT"));
    assert_eq!(fetch(&app, &draft, t).await["status"], "DRAFT");

    let active = app.new_listing(&p.access_token, json!({})).await;
    assert_eq!(fetch(&app, &active, t).await["version"], 1);
    assert_eq!(set_status(&app, PUBLISH, &active, None, t).await.error_code(), Some("CONFLICT"));
    let stale = app.gql(UPDATE, json!({ "i": { "id": active, "expectedVersion": 0, "title": "Stale" } }), t).await;
    assert_eq!(stale.error_code(), Some("CONFLICT"));
    assert_eq!(set_status(&app, PAUSE, &active, Some(0), t).await.error_code(), Some("CONFLICT"));
    assert_eq!(set_status(&app, ARCHIVE, &active, Some(2), t).await.error_code(), Some("CONFLICT"));
    let unchanged = fetch(&app, &active, t).await;
    assert_eq!(
        (unchanged["title"].as_str(), unchanged["status"].as_str(), unchanged["version"].as_i64()),
        (Some("Rust code review"), Some("ACTIVE"), Some(1))
    );

    listing_of(set_status(&app, ARCHIVE, &active, Some(1), t).await);
    for mutation in [PUBLISH, PAUSE, ARCHIVE] {
        assert_eq!(set_status(&app, mutation, &active, None, t).await.error_code(), Some("CONFLICT"));
    }
    let update = app.gql(UPDATE, json!({ "i": { "id": active, "title": "Revived" } }), t).await;
    assert_eq!(update.error_code(), Some("CONFLICT"));
    let archived = fetch(&app, &active, t).await;
    assert_eq!(
        (archived["title"].as_str(), archived["status"].as_str(), archived["version"].as_i64()),
        (Some("Rust code review"), Some("ARCHIVED"), Some(2))
    );
}

async fn concurrent_edits_from_the_same_version_let_exactly_one_win(app: TestApp) {
    let (p, _) = app.new_provider("rita").await;
    let t = Some(p.access_token.as_str());
    let id = app.new_listing(&p.access_token, json!({})).await;
    let edit = |title: &str| app.gql(UPDATE, json!({ "i": { "id": id, "expectedVersion": 1, "title": title } }), t);
    let (a, b, c, d) = tokio::join!(edit("Edit A"), edit("Edit B"), edit("Edit C"), edit("Edit D"));
    let mut winners = Vec::new();
    for (title, resp) in [("Edit A", a), ("Edit B", b), ("Edit C", c), ("Edit D", d)] {
        match resp.error_code() {
            None => winners.push(title),
            Some(code) => assert_eq!(code, "CONFLICT", "{}", resp.body),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let now = fetch(&app, &id, t).await;
    assert_eq!((now["title"].as_str(), now["version"].as_i64()), (Some(winners[0]), Some(2)));
}

async fn a_buyer_cannot_create_a_listing(app: TestApp) {
    let buyer = app.new_user("bruno").await;
    let denied = app.create_listing(&buyer.access_token, json!({})).await;
    assert_eq!(denied.error_code(), Some("FORBIDDEN"));
    assert_eq!(my_listing_count(&app, &buyer.access_token).await, 0);
    let search = app.gql("{ listings { totalCount } }", json!({}), None).await.ok();
    assert_eq!(search["listings"]["totalCount"], 0);
}

async fn another_provider_cannot_change_someone_elses_active_listing(app: TestApp) {
    let (owner, _) = app.new_provider("olga").await;
    let (intruder, _) = app.new_provider("ivo").await;
    let buyer = app.new_user("bea").await;
    let id = app.new_listing(&owner.access_token, json!({})).await;
    for token in [&intruder.access_token, &buyer.access_token] {
        let t = Some(token.as_str());
        let update = app.gql(UPDATE, json!({ "i": { "id": id, "title": "Mine now" } }), t).await;
        assert_eq!(update.error_code(), Some("FORBIDDEN"));
        for mutation in [PUBLISH, PAUSE, ARCHIVE] {
            assert_eq!(set_status(&app, mutation, &id, None, t).await.error_code(), Some("FORBIDDEN"));
        }
    }
    let unchanged = fetch(&app, &id, None).await;
    assert_eq!(
        (unchanged["title"].as_str(), unchanged["status"].as_str(), unchanged["version"].as_i64()),
        (Some("Rust code review"), Some("ACTIVE"), Some(1))
    );
}

async fn someone_elses_draft_is_not_found(app: TestApp) {
    let (owner, _) = app.new_provider("olga").await;
    let (intruder, _) = app.new_provider("ivo").await;
    let t = Some(intruder.access_token.as_str());
    let draft = app.new_listing(&owner.access_token, json!({ "publish": false })).await;
    let update = app.gql(UPDATE, json!({ "i": { "id": draft, "title": "Mine now" } }), t).await;
    assert_eq!(update.error_code(), Some("NOT_FOUND"));
    for mutation in [PUBLISH, PAUSE, ARCHIVE] {
        assert_eq!(set_status(&app, mutation, &draft, None, t).await.error_code(), Some("NOT_FOUND"));
    }
    // The same answer as for a listing that does not exist, so drafts cannot be probed.
    let paused = app.new_listing(&owner.access_token, json!({})).await;
    listing_of(set_status(&app, PAUSE, &paused, None, Some(&owner.access_token)).await);
    assert_eq!(set_status(&app, PUBLISH, &paused, None, t).await.error_code(), Some("NOT_FOUND"));
    assert_eq!(fetch(&app, &draft, t).await, Value::Null);
    let still = fetch(&app, &draft, Some(&owner.access_token)).await;
    assert_eq!((still["status"].as_str(), still["version"].as_i64()), (Some("DRAFT"), Some(0)));
}

async fn anonymous_callers_cannot_change_listings(app: TestApp) {
    let (owner, _) = app.new_provider("olga").await;
    let id = app.new_listing(&owner.access_token, json!({})).await;
    let create = app
        .gql(
            "mutation($i: CreateListingInput!) { createListing(input: $i) { listing { id } } }",
            json!({ "i": valid_listing_input() }),
            None,
        )
        .await;
    assert_eq!(create.error_code(), Some("UNAUTHENTICATED"));
    let update = app.gql(UPDATE, json!({ "i": { "id": id, "title": "Anonymous" } }), None).await;
    assert_eq!(update.error_code(), Some("UNAUTHENTICATED"));
    for mutation in [PUBLISH, PAUSE, ARCHIVE] {
        assert_eq!(set_status(&app, mutation, &id, None, None).await.error_code(), Some("UNAUTHENTICATED"));
    }
    assert_eq!(app.gql(MY_COUNT, json!({}), None).await.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(fetch(&app, &id, None).await["version"], 1);
}

fn metered(asset: &str, unit: &str, price_per_unit: &str, min_deposit: &str) -> Value {
    json!({ "metered": { "asset": asset, "unit": unit, "pricePerUnit": price_per_unit, "minDeposit": min_deposit } })
}

fn fixed(asset: &str, amount: Value) -> Value {
    json!({ "fixed": { "asset": asset, "amount": amount } })
}

async fn every_invalid_listing_field_is_named_and_nothing_is_written(app: TestApp) {
    let (p, _) = app.new_provider("vera").await;
    app.new_listing(&p.access_token, json!({})).await;
    let eleven_tags: Vec<String> = (0..11).map(|n| format!("tag{n}")).collect();
    let cases = [
        (json!({ "title": "" }), "input.title", "EMPTY"),
        (json!({ "title": "   " }), "input.title", "EMPTY"),
        (json!({ "title": "x".repeat(121) }), "input.title", "TOO_LONG"),
        (json!({ "title": "two\nlines" }), "input.title", "INVALID_CHARACTERS"),
        (json!({ "description": "" }), "input.description", "EMPTY"),
        (json!({ "description": "y".repeat(5001) }), "input.description", "TOO_LONG"),
        (json!({ "category": "weapons" }), "input.category", "UNKNOWN_VALUE"),
        (json!({ "tags": ["no spaces"] }), "input.tags", "INVALID_FORMAT"),
        (json!({ "tags": ["C++!"] }), "input.tags", "INVALID_FORMAT"),
        (json!({ "tags": ["-rust"] }), "input.tags", "INVALID_FORMAT"),
        (json!({ "tags": ["rust", "Rust"] }), "input.tags", "DUPLICATE"),
        (json!({ "tags": eleven_tags }), "input.tags", "TOO_MANY"),
        (json!({ "region": "e u" }), "input.region", "INVALID_FORMAT"),
        (json!({ "pricing": fixed("BTC", json!("0")) }), "input.pricing.amount", "NOT_POSITIVE"),
        (json!({ "pricing": fixed("BTC", json!("-5")) }), "input.pricing.amount", "NOT_POSITIVE"),
        (json!({ "pricing": fixed("BTC", json!(-5)) }), "input.pricing.amount", "NOT_POSITIVE"),
        (json!({ "pricing": fixed("BTC", json!("1.5")) }), "input.pricing.amount", "INVALID_FORMAT"),
        (json!({ "pricing": fixed("BTC", json!("1e5")) }), "input.pricing.amount", "INVALID_FORMAT"),
        (json!({ "pricing": fixed("BTC", json!("")) }), "input.pricing.amount", "INVALID_FORMAT"),
        (json!({ "pricing": fixed("BTC", json!("18446744073709551616")) }), "input.pricing.amount", "OVERFLOW"),
        (json!({ "pricing": fixed("BTC", json!("2100000000000001")) }), "input.pricing.amount", "OVERFLOW"),
        (json!({ "pricing": fixed("BTC", json!("9999")) }), "input.pricing.amount", "OUT_OF_RANGE"),
        (json!({ "asset": "XRP", "pricing": fixed("XRP", json!("999999")) }), "input.pricing.amount", "OUT_OF_RANGE"),
        (json!({ "asset": "XRP" }), "input.pricing.asset", "ASSET_MISMATCH"),
        (json!({ "pricing": metered("BTC", "parsec", "1000", "20000") }), "input.pricing.unit", "UNKNOWN_VALUE"),
        (json!({ "pricing": metered("BTC", "hour", "20000", "15000") }), "input.pricing.minDeposit", "INCONSISTENT"),
        (json!({ "pricing": metered("BTC", "hour", "100", "9999") }), "input.pricing.minDeposit", "OUT_OF_RANGE"),
        (json!({ "pricing": metered("BTC", "hour", "0", "20000") }), "input.pricing.pricePerUnit", "NOT_POSITIVE"),
        (json!({ "deliveryWindowHours": 0 }), "input.deliveryWindowHours", "OUT_OF_RANGE"),
        (json!({ "deliveryWindowHours": -1 }), "input.deliveryWindowHours", "OUT_OF_RANGE"),
        (json!({ "deliveryWindowHours": 24 * 365 + 1 }), "input.deliveryWindowHours", "OUT_OF_RANGE"),
    ];
    for (overrides, field, reason) in cases {
        let rejected = app.create_listing(&p.access_token, overrides.clone()).await;
        assert_bad_input(&rejected, field, reason);
        assert!(
            rejected.error()["message"].as_str().unwrap().starts_with(field),
            "the message names the field: {}",
            rejected.error()
        );
    }
    // A rejected create writes nothing, whether it would have been a draft or published.
    assert_eq!(my_listing_count(&app, &p.access_token).await, 1);
    let search = app.gql("{ listings { totalCount } }", json!({}), None).await.ok();
    assert_eq!(search["listings"]["totalCount"], 1);
}

async fn an_invalid_update_changes_nothing(app: TestApp) {
    let (p, _) = app.new_provider("vera").await;
    let t = Some(p.access_token.as_str());
    let id = app.new_listing(&p.access_token, json!({})).await;
    let empty = app.gql(UPDATE, json!({ "i": { "id": id, "title": " ", "description": "New" } }), t).await;
    assert_bad_input(&empty, "input.title", "EMPTY");
    // Changing the asset alone leaves the price in the old asset: the whole is validated.
    let asset_only = app.gql(UPDATE, json!({ "i": { "id": id, "asset": "XRP" } }), t).await;
    assert_bad_input(&asset_only, "input.pricing.asset", "ASSET_MISMATCH");
    let tags = app.gql(UPDATE, json!({ "i": { "id": id, "tags": ["ok", "OK"] } }), t).await;
    assert_bad_input(&tags, "input.tags", "DUPLICATE");
    let unchanged = app
        .gql("query($id: ID!) { listing(id: $id) { title description asset tags version } }", json!({ "id": id }), t)
        .await
        .ok();
    assert_eq!(
        unchanged["listing"],
        json!({
            "title": "Rust code review",
            "description": "An hour with an experienced reviewer.",
            "asset": "BTC",
            "tags": ["rust", "review"],
            "version": 1,
        })
    );
    // Asset and price changed together are fine.
    let xrp = json!({ "i": { "id": id, "asset": "XRP", "pricing": fixed("XRP", json!("2000000")) } });
    let moved = listing_of(app.gql(UPDATE, xrp, t).await);
    assert_eq!(moved["pricing"], json!({ "asset": "XRP", "amount": "2000000" }));
    assert_eq!(moved["version"], 2);
}

async fn values_at_the_limits_are_accepted_and_normalised(app: TestApp) {
    let (p, _) = app.new_provider("wim").await;
    let q = "mutation($i: CreateListingInput!) { createListing(input: $i) { listing { \
        title tags asset deliveryWindowHours pricing { \
        ... on FixedPricing { asset amount } \
        ... on MeteredPricing { asset unit pricePerUnit minDeposit } } } } }";
    let create = |overrides: Value| {
        let mut input = valid_listing_input();
        for (k, v) in overrides.as_object().unwrap() {
            input[k] = v.clone();
        }
        app.gql(q, json!({ "i": input }), Some(&p.access_token))
    };
    let ten_tags: Vec<String> = (0..10).map(|n| format!("Tag-{n}")).collect();
    let edge = create(json!({
        "title": format!("  {}  ", "t".repeat(120)),
        "tags": ten_tags,
        "deliveryWindowHours": 24 * 365,
        "pricing": fixed("BTC", json!(10000)),
    }))
    .await
    .ok();
    let l = &edge["createListing"]["listing"];
    assert_eq!(l["title"].as_str().unwrap(), "t".repeat(120));
    assert_eq!(l["tags"][3], "tag-3");
    assert_eq!(l["deliveryWindowHours"], 24 * 365);
    // A JSON integer is accepted and comes back as a decimal string.
    assert_eq!(l["pricing"], json!({ "asset": "BTC", "amount": "10000" }));

    let supply = create(json!({ "pricing": fixed("BTC", json!("2100000000000000")) })).await.ok();
    assert_eq!(supply["createListing"]["listing"]["pricing"]["amount"], "2100000000000000");
    let xrp = create(json!({ "asset": "XRP", "pricing": metered("XRP", "Minute", "1000", "1000000") }))
        .await
        .ok();
    assert_eq!(
        xrp["createListing"]["listing"]["pricing"],
        json!({ "asset": "XRP", "unit": "minute", "pricePerUnit": "1000", "minDeposit": "1000000" })
    );
    let one_unit = create(json!({ "pricing": metered("BTC", "job", "25000", "25000") })).await.ok();
    assert_eq!(one_unit["createListing"]["listing"]["pricing"]["minDeposit"], "25000");
    assert_eq!(my_listing_count(&app, &p.access_token).await, 4);
}

async fn node_shows_active_listings_to_anyone_and_drafts_only_to_their_owner(app: TestApp) {
    let (owner, _) = app.new_provider("olga").await;
    let (other, _) = app.new_provider("otto").await;
    let buyer = app.new_user("bea").await;
    let active = app.new_listing(&owner.access_token, json!({ "title": "Open for business" })).await;
    let draft = app.new_listing(&owner.access_token, json!({ "title": "Work in progress", "publish": false })).await;
    let paused = app.new_listing(&owner.access_token, json!({ "title": "On a break" })).await;
    listing_of(set_status(&app, PAUSE, &paused, None, Some(&owner.access_token)).await);

    for token in [None, Some(buyer.access_token.as_str()), Some(other.access_token.as_str())] {
        let node = app.gql(NODE, json!({ "id": active }), token).await.ok();
        assert_eq!(node["node"], json!({ "id": active, "title": "Open for business", "status": "ACTIVE" }));
        for hidden in [&draft, &paused] {
            assert_eq!(app.gql(NODE, json!({ "id": hidden }), token).await.ok()["node"], Value::Null);
            assert_eq!(fetch(&app, hidden, token).await, Value::Null);
        }
    }
    let own = app.gql(NODE, json!({ "id": draft }), Some(&owner.access_token)).await.ok();
    assert_eq!(own["node"], json!({ "id": draft, "title": "Work in progress", "status": "DRAFT" }));
    let own_paused = app.gql(NODE, json!({ "id": paused }), Some(&owner.access_token)).await.ok();
    assert_eq!(own_paused["node"]["status"], "PAUSED");

    let nodes = app
        .gql(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": [draft, active, "not-an-id"] }),
            Some(&buyer.access_token),
        )
        .await
        .ok();
    assert_eq!(nodes["nodes"], json!([null, { "id": active }, null]));

    // Admins see everything.
    app.make_admin("bea@example.org").await;
    let admin = app.gql(NODE, json!({ "id": draft }), Some(&buyer.access_token)).await.ok();
    assert_eq!(admin["node"]["status"], "DRAFT");
}

async fn ids_of_the_wrong_type_are_bad_user_input(app: TestApp) {
    let (p, provider_id) = app.new_provider("pia").await;
    let listing_id = app.new_listing(&p.access_token, json!({})).await;
    let wrong = app.gql(LISTING, json!({ "id": provider_id }), None).await;
    assert_bad_input(&wrong, "id", "WRONG_TYPE");
    let garbage = app.gql(LISTING, json!({ "id": "not an id" }), None).await;
    assert_bad_input(&garbage, "id", "INVALID_FORMAT");
    let provider = app.gql("query($id: ID!) { provider(id: $id) { id } }", json!({ "id": listing_id }), None).await;
    assert_bad_input(&provider, "id", "WRONG_TYPE");
    let update = app
        .gql(UPDATE, json!({ "i": { "id": provider_id, "title": "x" } }), Some(&p.access_token))
        .await;
    assert_bad_input(&update, "input.id", "WRONG_TYPE");
}

async fn a_provider_profile_shows_only_its_active_listings(app: TestApp) {
    let (p, provider_id) = app.new_provider("nina").await;
    let (other, _) = app.new_provider("otto").await;
    let t = Some(p.access_token.as_str());
    app.new_listing(&p.access_token, json!({ "title": "First" })).await;
    app.new_listing(&p.access_token, json!({ "title": "Second" })).await;
    app.new_listing(&p.access_token, json!({ "title": "Draft", "publish": false })).await;
    let paused = app.new_listing(&p.access_token, json!({ "title": "Paused" })).await;
    listing_of(set_status(&app, PAUSE, &paused, None, t).await);
    let archived = app.new_listing(&p.access_token, json!({ "title": "Archived" })).await;
    listing_of(set_status(&app, ARCHIVE, &archived, None, t).await);
    app.new_listing(&other.access_token, json!({ "title": "Someone else's" })).await;

    let q = "query($id: ID!) { provider(id: $id) { id displayName bio region languages rating { score count } \
        listings { totalCount edges { node { title status provider { id } } } } } }";
    let data = app.gql(q, json!({ "id": provider_id }), None).await.ok();
    let provider = &data["provider"];
    assert_eq!(provider["id"], provider_id);
    assert_eq!(provider["displayName"], "nina");
    assert_eq!(provider["region"], "eu");
    assert_eq!(provider["languages"], json!(["en"]));
    assert_eq!(provider["rating"], json!({ "score": 0.0, "count": 0 }));
    assert_eq!(provider["listings"]["totalCount"], 2);
    let edges = provider["listings"]["edges"].as_array().unwrap();
    let titles: Vec<&str> = edges.iter().map(|e| e["node"]["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Second", "First"]);
    for e in edges {
        assert_eq!(e["node"]["status"], "ACTIVE");
        assert_eq!(e["node"]["provider"]["id"], provider_id);
    }
    let node_query = "query($id: ID!) { node(id: $id) { ... on Provider { displayName } } }";
    let node = app.gql(node_query, json!({ "id": provider_id }), None).await.ok();
    assert_eq!(node["node"]["displayName"], "nina");
    let me = app.gql("{ me { roles provider { id } } }", json!({}), t).await.ok();
    assert_eq!(me["me"]["provider"]["id"], provider_id);
    assert_eq!(me["me"]["roles"], json!(["BUYER", "PROVIDER"]));
}

async fn becoming_a_provider_twice_is_a_conflict(app: TestApp) {
    let (p, provider_id) = app.new_provider("nina").await;
    let again = app
        .gql(
            BECOME_PROVIDER,
            json!({ "i": { "displayName": "Nina Again", "region": "us", "languages": ["de"] } }),
            Some(&p.access_token),
        )
        .await;
    assert_eq!(again.error_code(), Some("CONFLICT"));
    let profile = app
        .gql("query($id: ID!) { provider(id: $id) { displayName region } }", json!({ "id": provider_id }), None)
        .await
        .ok();
    assert_eq!(profile["provider"], json!({ "displayName": "nina", "region": "eu" }));
}

async fn provider_profiles_are_validated(app: TestApp) {
    let u = app.new_user("uma").await;
    let t = Some(u.access_token.as_str());
    let profile = |display_name: &str, region: &str, languages: Value| {
        json!({ "i": { "displayName": display_name, "region": region, "languages": languages } })
    };
    let cases = [
        (profile("", "eu", json!(["en"])), "input.displayName", "EMPTY"),
        (profile("   ", "eu", json!(["en"])), "input.displayName", "EMPTY"),
        (profile(&"n".repeat(81), "eu", json!(["en"])), "input.displayName", "TOO_LONG"),
        (profile("Uma", "e u", json!(["en"])), "input.region", "INVALID_FORMAT"),
        (profile("Uma", "x", json!(["en"])), "input.region", "TOO_SHORT"),
        (profile("Uma", "-eu", json!(["en"])), "input.region", "INVALID_FORMAT"),
        (profile("Uma", "eu", json!(["english"])), "input.languages", "INVALID_FORMAT"),
        (profile("Uma", "eu", json!(["en-"])), "input.languages", "INVALID_FORMAT"),
        (profile("Uma", "eu", json!([])), "input.languages", "EMPTY"),
        (profile("Uma", "eu", json!(["en", "EN"])), "input.languages", "DUPLICATE"),
    ];
    for (input, field, reason) in cases {
        assert_bad_input(&app.gql(BECOME_PROVIDER, input, t).await, field, reason);
    }
    // Nothing was granted by the failed attempts.
    let me = app.gql("{ me { roles provider { id } } }", json!({}), t).await.ok();
    assert_eq!(me["me"], json!({ "roles": ["BUYER"], "provider": null }));
    assert_eq!(app.create_listing(&u.access_token, json!({})).await.error_code(), Some("FORBIDDEN"));

    let ok = app.gql(BECOME_PROVIDER, profile(" Uma ", "EU-West", json!(["pt-br", "EN"])), t).await.ok();
    let p = &ok["becomeProvider"]["provider"];
    assert_eq!(p["displayName"], "Uma");
    assert_eq!(p["region"], "eu-west");
    assert_eq!(p["languages"], json!(["pt-BR", "en"]));
    app.new_listing(&u.access_token, json!({})).await;
}

on_both_backends!(
    a_provider_drafts_edits_publishes_pauses_and_archives_a_listing,
    invalid_transitions_and_stale_versions_are_conflicts,
    concurrent_edits_from_the_same_version_let_exactly_one_win,
    a_buyer_cannot_create_a_listing,
    another_provider_cannot_change_someone_elses_active_listing,
    someone_elses_draft_is_not_found,
    anonymous_callers_cannot_change_listings,
    every_invalid_listing_field_is_named_and_nothing_is_written,
    an_invalid_update_changes_nothing,
    values_at_the_limits_are_accepted_and_normalised,
    node_shows_active_listings_to_anyone_and_drafts_only_to_their_owner,
    ids_of_the_wrong_type_are_bad_user_input,
    a_provider_profile_shows_only_its_active_listings,
    becoming_a_provider_twice_is_a_conflict,
    provider_profiles_are_validated,
);
