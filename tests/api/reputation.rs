#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a missing field should fail it loudly

//! Reputation end to end: reviews of settled Bitcoin orders, who may write and
//! edit them, and how they move the provider's score, its explanation and
//! the order of listings.

use agora_domain::clock::Clock;
use agora_api::orders::chain::{deliver_bitcoin_event, BitcoinChainEvent};
use agora_tests::{assert_bad_input, on_both_backends, GqlResponse, Session, TestApp};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::orders_btc::{action, assert_valid_spend, fund, get_order, order_uuid, parties, place, submit, Parties};

const SUBMIT: &str = "mutation($i: SubmitReviewInput!) { submitReview(input: $i) { review { id orderId author rating text editableUntil } } }";
const UPDATE: &str = "mutation($i: UpdateReviewInput!) { updateReview(input: $i) { review { id rating text updatedAt } } }";
const PROVIDER: &str = "query($id: ID!) { provider(id: $id) {
    rating { score count }
    reputation { score scoreMilli reviewCount faultCount prior { mean weight } halfLifeDays
        inputs { kind orderId rating weightValue weightRecency weight contribution at } }
    reviews(first: 5) { edges { node { rating text author } } }
} }";

/// A 5-star review on the usual 50 000 sat order, fresh. The order weighs
/// √(50 000 / 100 000) = 0.70711 and the prior is m = 3.5 with C = 5:
/// (5·3.5 + 0.70711·5) / (5 + 0.70711) = 21.03553 / 5.70711 = 3.68585.
const FIVE_STARS_ON_ONE_ORDER: f64 = 3.686;
/// The same with 1 star: (17.5 + 0.70711) / 5.70711 = 3.19025.
const ONE_STAR_ON_ONE_ORDER: f64 = 3.19;

/// Places the usual order, funds it, releases it, has both parties sign and
/// confirms the payout: the order ends SETTLED.
async fn settle(app: &TestApp, p: &Parties, order: &Value) {
    fund(app, order, 50_000, 1).await;
    let releasing = action(app, "releaseFunds", order, &p.buyer.access_token).await.ok()["releaseFunds"]["order"].clone();
    let psbt = releasing["payout"]["psbt"].as_str().unwrap();
    let by_buyer = p.buyer_wallet.sign(&releasing["bitcoinEscrow"], psbt);
    submit(app, order, &by_buyer, &p.buyer.access_token).await.ok();
    let by_provider = p.provider_wallet.sign(&releasing["bitcoinEscrow"], psbt);
    let done = submit(app, order, &by_provider, &p.provider.access_token).await.ok()["submitPayoutSignature"]["order"].clone();
    let tx = assert_valid_spend(&done, 50_000);
    deliver_bitcoin_event(&app.state, order_uuid(order), BitcoinChainEvent::PayoutConfirmed { txid: tx.compute_txid() })
        .await
        .expect("confirmation applied");
    assert_eq!(get_order(app, order, &p.buyer.access_token).await["status"], "SETTLED");
}

async fn settled_order(app: &TestApp, p: &Parties) -> Value {
    let order = place(app, p).await;
    settle(app, p, &order).await;
    order
}

async fn review(app: &TestApp, order: &Value, rating: i64, text: Option<&str>, s: &Session) -> GqlResponse {
    app.gql(SUBMIT, json!({"i": {"orderId": order["id"], "rating": rating, "text": text}}), Some(&s.access_token))
        .await
}

async fn provider_view(app: &TestApp, provider: &Session) -> Value {
    let id = provider_id(app, provider).await;
    app.gql(PROVIDER, json!({"id": id}), None).await.ok()["provider"].clone()
}

async fn provider_id(app: &TestApp, provider: &Session) -> Value {
    let me = app.gql("{ me { provider { id } } }", json!({}), Some(&provider.access_token)).await.ok();
    me["me"]["provider"]["id"].clone()
}

/// Listing ids in `listings(orderBy: RATING_DESC)` order.
async fn listings_by_rating(app: &TestApp) -> Vec<String> {
    let data = app
        .gql("{ listings(orderBy: RATING_DESC, first: 10) { edges { node { id } } } }", json!({}), None)
        .await
        .ok();
    data["listings"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[track_caller]
fn assert_refused(resp: &GqlResponse, code: &str, reason: Option<&str>) {
    assert_eq!(
        (resp.error_code(), resp.error()["extensions"]["reason"].as_str()),
        (Some(code), reason),
        "{}",
        serde_json::to_string_pretty(&resp.body).unwrap_or_default()
    );
}

#[track_caller]
fn assert_close(actual: &Value, expected: f64, tolerance: f64) {
    let actual = actual.as_f64().unwrap_or(f64::NAN);
    assert!((actual - expected).abs() <= tolerance, "expected {expected} ± {tolerance}, got {actual}");
}

async fn a_buyer_review_of_a_settled_order_raises_the_provider_score_and_its_listings_rank(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let (rival, _) = app.new_provider("rival").await;
    let rival_listing = app.new_listing(&rival.access_token, json!({"title": "Another review"})).await;
    // Both unrated (0): ties go to the newer listing.
    assert_eq!(listings_by_rating(&app).await, [rival_listing.clone(), p.listing_id.clone()]);

    let order = settled_order(&app, &p).await;
    // Settling a released order is no fault: still no score.
    let before = provider_view(&app, &p.provider).await;
    assert_eq!(before["rating"], json!({"score": 0.0, "count": 0}));
    assert_eq!(before["reputation"]["score"], Value::Null);

    let written = review(&app, &order, 5, Some("  Clear and thorough.  "), &p.buyer).await.ok();
    let r = &written["submitReview"]["review"];
    assert_eq!((&r["orderId"], &r["author"], &r["rating"], &r["text"]), (&order["id"], &json!("BUYER"), &json!(5), &json!("Clear and thorough.")));

    let after = provider_view(&app, &p.provider).await;
    assert_eq!(after["rating"], json!({"score": FIVE_STARS_ON_ONE_ORDER, "count": 1}));
    let rep = &after["reputation"];
    assert_eq!((&rep["scoreMilli"], &rep["reviewCount"], &rep["faultCount"]), (&json!(3686), &json!(1), &json!(0)));
    assert_eq!((&rep["prior"], &rep["halfLifeDays"]), (&json!({"mean": 3.5, "weight": 5.0}), &json!(180.0)));
    let inputs = rep["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 1);
    let input = &inputs[0];
    assert_eq!((&input["kind"], &input["orderId"], &input["rating"]), (&json!("REVIEW"), &order["id"], &json!(5)));
    assert_close(&input["weightValue"], 0.5f64.sqrt(), 1e-9);
    assert_close(&input["weightRecency"], 1.0, 1e-4);
    // The only input carries the whole distance from the prior.
    assert_close(&input["contribution"], rep["score"].as_f64().unwrap() - 3.5, 1e-9);
    assert_eq!(after["reviews"]["edges"][0]["node"], json!({"rating": 5, "text": "Clear and thorough.", "author": "BUYER"}));

    // The provider now outranks the unrated rival.
    assert_eq!(listings_by_rating(&app).await, [p.listing_id.clone(), rival_listing]);

    // One review per side: the buyer again is refused, the provider may review the buyer.
    assert_refused(&review(&app, &order, 4, None, &p.buyer).await, "CONFLICT", Some("ALREADY_REVIEWED"));
    let of_buyer = review(&app, &order, 4, None, &p.provider).await.ok();
    assert_eq!(of_buyer["submitReview"]["review"]["author"], "PROVIDER");
    assert_refused(&review(&app, &order, 4, None, &p.provider).await, "CONFLICT", Some("ALREADY_REVIEWED"));
    // A review of the buyer does not touch the provider's score.
    assert_eq!(provider_view(&app, &p.provider).await["rating"], json!({"score": FIVE_STARS_ON_ONE_ORDER, "count": 1}));

    let q = "query($u: ID) { buyerRecord(userId: $u) { ordersSettled disputesOpened disputesLost ratingsReceived averageRatingReceived } }";
    let expected = json!({"ordersSettled": 1, "disputesOpened": 0, "disputesLost": 0, "ratingsReceived": 1, "averageRatingReceived": 4.0});
    let own = app.gql(q, json!({}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(own["buyerRecord"], expected);
    // The provider the buyer ordered from sees it too; a stranger does not.
    let buyer_id = json!(p.buyer.user_id);
    let seen = app.gql(q, json!({"u": buyer_id}), Some(&p.provider.access_token)).await.ok();
    assert_eq!(seen["buyerRecord"], expected);
    let hidden = app.gql(q, json!({"u": buyer_id}), Some(&rival.access_token)).await.ok();
    assert_eq!(hidden["buyerRecord"], Value::Null);

    let both = app
        .gql("query($id: ID!) { orderReviews(orderId: $id) { author rating } }", json!({"id": order["id"]}), Some(&p.buyer.access_token))
        .await
        .ok();
    assert_eq!(both["orderReviews"], json!([{"author": "BUYER", "rating": 5}, {"author": "PROVIDER", "rating": 4}]));
}

async fn reviews_are_refused_to_outsiders_before_settlement_and_outside_one_to_five_stars(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    assert_refused(&review(&app, &order, 5, None, &p.buyer).await, "CONFLICT", Some("NOT_SETTLED"));
    settle(&app, &p, &order).await;

    let outsider = app.new_user("outsider").await;
    let resp = review(&app, &order, 5, None, &outsider).await;
    assert_eq!(resp.error_code(), Some("NOT_FOUND"), "{:?}", resp.body);
    for rating in [0, 6] {
        assert_bad_input(&review(&app, &order, rating, None, &p.buyer).await, "input.rating", "OUT_OF_RANGE");
    }
    let long = "x".repeat(2_001);
    assert_bad_input(&review(&app, &order, 5, Some(&long), &p.buyer).await, "input.text", "TOO_LONG");
    let anonymous = app.gql(SUBMIT, json!({"i": {"orderId": order["id"], "rating": 5}}), None).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
    // None of the refusals left a review behind.
    assert_eq!(provider_view(&app, &p.provider).await["rating"]["count"], 0);
    review(&app, &order, 5, None, &p.buyer).await.ok();
}

async fn a_review_can_be_edited_for_fourteen_days_and_not_after(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = settled_order(&app, &p).await;
    let written = review(&app, &order, 1, Some("Late and vague."), &p.buyer).await.ok();
    let review_id = written["submitReview"]["review"]["id"].clone();
    assert_eq!(provider_view(&app, &p.provider).await["rating"]["score"], ONE_STAR_ON_ONE_ORDER);

    // Only the author can edit; to anyone else the review does not exist.
    let by_provider = app.gql(UPDATE, json!({"i": {"reviewId": review_id, "rating": 5}}), Some(&p.provider.access_token)).await;
    assert_eq!(by_provider.error_code(), Some("NOT_FOUND"));

    // Within the window: a new rating, the text kept when omitted; the score follows.
    app.clock.advance(Duration::days(13));
    let edited = app.gql(UPDATE, json!({"i": {"reviewId": review_id, "rating": 5}}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(edited["updateReview"]["review"]["rating"], 5);
    assert_eq!(edited["updateReview"]["review"]["text"], "Late and vague.");
    let view = provider_view(&app, &p.provider).await;
    // Recomputed 13 days after settlement: the order weighs 0.70711 × 0.5^(13/180) = 0.67258,
    // (17.5 + 0.67258·5) / 5.67258 = 3.67785.
    assert_eq!(view["rating"], json!({"score": 3.678, "count": 1}));
    assert_eq!(view["reputation"]["inputs"][0]["rating"], 5);
    assert_close(&view["reputation"]["inputs"][0]["weightRecency"], 0.5f64.powf(13.0 / 180.0), 1e-4);
    let cleared = app.gql(UPDATE, json!({"i": {"reviewId": review_id, "text": null}}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(cleared["updateReview"]["review"]["text"], Value::Null);

    // Past fourteen days after it was written, the review is final.
    app.clock.advance(Duration::days(1) + Duration::minutes(1));
    let late = app.gql(UPDATE, json!({"i": {"reviewId": review_id, "rating": 2}}), Some(&p.buyer.access_token)).await;
    assert_refused(&late, "CONFLICT", Some("EDIT_WINDOW_CLOSED"));
    assert_eq!(provider_view(&app, &p.provider).await["reputation"]["inputs"][0]["rating"], 5);
}

async fn a_refund_for_a_missed_delivery_deadline_counts_against_the_provider(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 50_000, 1).await;
    let delivery_by: DateTime<Utc> = order["deadlines"]["deliveryBy"].as_str().unwrap().parse().unwrap();
    app.clock.advance(delivery_by - app.clock.now() + Duration::seconds(1));
    let refunding = action(&app, "requestRefund", &order, &p.buyer.access_token).await.ok()["requestRefund"]["order"].clone();
    // The marketplace co-signed under the delivery-deadline rule; the buyer completes it.
    let signed = p.buyer_wallet.sign(&refunding["bitcoinEscrow"], refunding["payout"]["psbt"].as_str().unwrap());
    let done = submit(&app, &order, &signed, &p.buyer.access_token).await.ok()["submitPayoutSignature"]["order"].clone();
    let tx = assert_valid_spend(&done, 50_000);
    deliver_bitcoin_event(&app.state, order_uuid(&order), BitcoinChainEvent::PayoutConfirmed { txid: tx.compute_txid() })
        .await
        .expect("confirmation applied");

    let view = provider_view(&app, &p.provider).await;
    // A fault is a 1-star observation with the order's weight, like the
    // 1-star review above: (17.5 + 0.70711) / 5.70711 = 3.19025; no review is counted.
    assert_eq!(view["rating"], json!({"score": ONE_STAR_ON_ONE_ORDER, "count": 0}));
    let rep = &view["reputation"];
    assert_eq!((&rep["reviewCount"], &rep["faultCount"]), (&json!(0), &json!(1)));
    let input = &rep["inputs"][0];
    assert_eq!((&input["kind"], &input["orderId"], &input["rating"]), (&json!("DISPUTE_FAULT"), &order["id"], &json!(1)));

    // The buyer may still review the refunded order; both inputs then count.
    review(&app, &order, 2, None, &p.buyer).await.ok();
    let both = provider_view(&app, &p.provider).await;
    assert_eq!(both["reputation"]["inputs"].as_array().unwrap().len(), 2);
    assert_eq!(both["rating"]["count"], 1);
    let record = app
        .gql("{ buyerRecord { ordersSettled disputesLost } }", json!({}), Some(&p.buyer.access_token))
        .await
        .ok();
    assert_eq!(record["buyerRecord"], json!({"ordersSettled": 1, "disputesLost": 0}));
}

on_both_backends!(
    a_refund_for_a_missed_delivery_deadline_counts_against_the_provider,
    a_buyer_review_of_a_settled_order_raises_the_provider_score_and_its_listings_rank,
    reviews_are_refused_to_outsiders_before_settlement_and_outside_one_to_five_stars,
    a_review_can_be_edited_for_fourteen_days_and_not_after,
);
