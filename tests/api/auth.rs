//! Registration, login, refresh-token rotation and reuse detection, logout, roles.

use agora_tests::{on_both_backends, TestApp, PASSWORD};
use serde_json::json;

const ME: &str = "{ me { id email roles } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshSession(input: { refreshToken: $t }) { accessToken refreshToken } }";

async fn register_login_and_me(app: TestApp) {
    let registered = app.register("Ada@Example.org").await;
    assert_eq!(registered["register"]["user"]["email"], "ada@example.org");
    assert_eq!(registered["register"]["user"]["roles"], json!(["BUYER"]));
    let s = app.login("ada@example.org").await;
    let me = app.gql(ME, json!({}), Some(&s.access_token)).await.ok();
    assert_eq!(me["me"]["email"], "ada@example.org");
    assert_eq!(me["me"]["id"], registered["register"]["user"]["id"]);
}

async fn registration_rejects_bad_input_and_duplicates(app: TestApp) {
    let q = "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }";
    let short = app.gql(q, json!({"i": {"email": "a@example.org", "password": "elevenchars"}}), None).await;
    assert_eq!(short.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(short.error()["extensions"]["field"], "input.password");
    assert_eq!(short.error()["extensions"]["reason"], "TOO_SHORT");
    let bad_email = app.gql(q, json!({"i": {"email": "not-an-email", "password": PASSWORD}}), None).await;
    assert_eq!(bad_email.error()["extensions"]["field"], "input.email");
    let first = app.register("dup@example.org").await;
    // A second sign-up looks exactly like a first one, so it tells nobody
    // whether the address has an account; the account itself is untouched.
    let q = "mutation($i: RegisterInput!) { register(input: $i) { user { id email roles provider { id } escrowKeys { id } } } }";
    let dup = app
        .gql(q, json!({"i": {"email": "DUP@example.org", "password": "another long passphrase"}}), None)
        .await
        .ok();
    let fresh = app
        .gql(q, json!({"i": {"email": "fresh@example.org", "password": "another long passphrase"}}), None)
        .await
        .ok();
    assert_eq!(dup["register"]["user"]["email"], "dup@example.org");
    assert_ne!(dup["register"]["user"]["id"], first["register"]["user"]["id"]);
    let shape = |v: &serde_json::Value| {
        let u = &v["register"]["user"];
        (u["roles"].clone(), u["provider"].clone(), u["escrowKeys"].clone())
    };
    assert_eq!(shape(&dup), shape(&fresh));
    let login = "mutation($i: LoginInput!) { login(input: $i) { user { id } } }";
    let wrong = app
        .gql(login, json!({"i": {"email": "dup@example.org", "password": "another long passphrase"}}), None)
        .await;
    assert_eq!(wrong.error_code(), Some("UNAUTHENTICATED"));
    let owner = app.login("dup@example.org").await;
    assert_eq!(json!(owner.user_id), first["register"]["user"]["id"]);
}

async fn login_with_a_wrong_password_is_unauthenticated(app: TestApp) {
    app.register("bob@example.org").await;
    let q = "mutation($i: LoginInput!) { login(input: $i) { accessToken } }";
    let wrong = app
        .gql(q, json!({"i": {"email": "bob@example.org", "password": "not the password"}}), None)
        .await;
    assert_eq!(wrong.error_code(), Some("UNAUTHENTICATED"));
    let unknown = app.gql(q, json!({"i": {"email": "nobody@example.org", "password": PASSWORD}}), None).await;
    assert_eq!(unknown.error_code(), Some("UNAUTHENTICATED"));
    // The same message for both, so accounts cannot be enumerated.
    assert_eq!(wrong.error()["message"], unknown.error()["message"]);
}

async fn repeated_failed_logins_are_rate_limited(app: TestApp) {
    app.register("carol@example.org").await;
    let q = "mutation($i: LoginInput!) { login(input: $i) { accessToken } }";
    let wrong = json!({"i": {"email": "carol@example.org", "password": "not the password"}});
    for _ in 0..10 {
        assert_eq!(app.gql(q, wrong.clone(), None).await.error_code(), Some("UNAUTHENTICATED"));
    }
    let limited = app.gql(q, wrong, None).await;
    assert_eq!(limited.error_code(), Some("RATE_LIMITED"));
    assert!(limited.error()["extensions"]["retryAfterSeconds"].as_u64().unwrap() > 0);
    // Even the right password waits until the window passes.
    let right = json!({"i": {"email": "carol@example.org", "password": PASSWORD}});
    assert_eq!(app.gql(q, right, None).await.error_code(), Some("RATE_LIMITED"));
}

async fn refresh_rotates_the_token(app: TestApp) {
    let s = app.new_user("dave").await;
    let first = app.gql(REFRESH, json!({"t": s.refresh_token}), None).await.ok();
    let rotated = first["refreshSession"]["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(rotated, s.refresh_token);
    let access = first["refreshSession"]["accessToken"].as_str().unwrap();
    assert_eq!(app.gql(ME, json!({}), Some(access)).await.ok()["me"]["email"], "dave@example.org");
    // The new token works once more.
    app.gql(REFRESH, json!({"t": rotated}), None).await.ok();
}

async fn reusing_a_rotated_refresh_token_revokes_the_session(app: TestApp) {
    let s = app.new_user("erin").await;
    let first = app.gql(REFRESH, json!({"t": s.refresh_token}), None).await.ok();
    let current = first["refreshSession"]["refreshToken"].as_str().unwrap().to_owned();
    let current_access = first["refreshSession"]["accessToken"].as_str().unwrap().to_owned();
    // A thief replays the old token.
    let replay = app.gql(REFRESH, json!({"t": s.refresh_token}), None).await;
    assert_eq!(replay.error_code(), Some("UNAUTHENTICATED"));
    // The whole family is gone: the legitimate current token and access tokens too.
    let after = app.gql(REFRESH, json!({"t": current}), None).await;
    assert_eq!(after.error_code(), Some("UNAUTHENTICATED"));
    let me = app.gql(ME, json!({}), Some(&current_access)).await;
    assert_eq!(me.error_code(), Some("UNAUTHENTICATED"));
    // Logging in again starts a new, working session.
    let again = app.login("erin@example.org").await;
    app.gql(ME, json!({}), Some(&again.access_token)).await.ok();
}

async fn logout_ends_the_session(app: TestApp) {
    let s = app.new_user("frank").await;
    let other = app.login("frank@example.org").await;
    let out = app.gql("mutation { logout(input: {}) { ok } }", json!({}), Some(&s.access_token)).await.ok();
    assert_eq!(out["logout"]["ok"], true);
    assert_eq!(app.gql(ME, json!({}), Some(&s.access_token)).await.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(
        app.gql(REFRESH, json!({"t": s.refresh_token}), None).await.error_code(),
        Some("UNAUTHENTICATED")
    );
    // Other sessions of the same account are untouched.
    app.gql(ME, json!({}), Some(&other.access_token)).await.ok();
}

async fn bad_tokens_and_anonymous_callers_are_unauthenticated(app: TestApp) {
    assert_eq!(app.gql(ME, json!({}), None).await.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(app.gql(ME, json!({}), Some("not.a.jwt")).await.error_code(), Some("UNAUTHENTICATED"));
    let create = app.create_listing("garbage", json!({})).await;
    assert_eq!(create.error_code(), Some("UNAUTHENTICATED"));
    let anonymous = app
        .gql(
            "mutation($i: CreateListingInput!) { createListing(input: $i) { listing { id } } }",
            json!({"i": agora_tests::valid_listing_input()}),
            None,
        )
        .await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
}

const GRANT: &str = "mutation($i: GrantRoleInput!) { grantRole(input: $i) { user { id roles } } }";

async fn only_admins_grant_roles(app: TestApp) {
    let target = app.new_user("grace").await;
    let other = app.new_user("heidi").await;
    let input = json!({"i": {"userId": target.user_id, "role": "ARBITRATOR"}});
    let denied = app.gql(GRANT, input.clone(), Some(&other.access_token)).await;
    assert_eq!(denied.error_code(), Some("FORBIDDEN"));
    app.make_admin("heidi@example.org").await;
    let granted = app.gql(GRANT, input, Some(&other.access_token)).await.ok();
    assert_eq!(granted["grantRole"]["user"]["roles"], json!(["BUYER", "ARBITRATOR"]));
    let me = app.gql(ME, json!({}), Some(&target.access_token)).await.ok();
    assert_eq!(me["me"]["roles"], json!(["BUYER", "ARBITRATOR"]));
    // Provider is self-service, never granted.
    let provider = app
        .gql(GRANT, json!({"i": {"userId": target.user_id, "role": "PROVIDER"}}), Some(&other.access_token))
        .await;
    assert_eq!(provider.error_code(), Some("BAD_USER_INPUT"));
}

const REGISTER_KEY: &str =
    "mutation($i: RegisterEscrowKeyInput!) { registerEscrowKey(input: $i) { escrowKey { chain kind publicKey address } } }";

async fn escrow_keys_are_validated_per_chain(app: TestApp) {
    let s = app.new_user("ivan").await;
    let t = Some(s.access_token.as_str());
    let g = "0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798";
    let ok = app.gql(REGISTER_KEY, json!({"i": {"chain": "BITCOIN", "publicKey": g}}), t).await.ok();
    assert_eq!(ok["registerEscrowKey"]["escrowKey"]["kind"], "COMPRESSED_PUBLIC_KEY");
    assert_eq!(ok["registerEscrowKey"]["escrowKey"]["publicKey"], g.to_lowercase());
    let dup = app.gql(REGISTER_KEY, json!({"i": {"chain": "BITCOIN", "publicKey": g}}), t).await;
    assert_eq!(dup.error_code(), Some("CONFLICT"));
    let uncompressed = format!("04{}", "11".repeat(64));
    let bad = app.gql(REGISTER_KEY, json!({"i": {"chain": "BITCOIN", "publicKey": uncompressed}}), t).await;
    assert_eq!(bad.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(bad.error()["extensions"]["field"], "input.publicKey");
    let xrpl_pk = "0330E7FC9D56BB25D6893BA3F317AE5BCF33B3291BD63DB32654A313222F7FD020";
    let xrpl = app
        .gql(
            REGISTER_KEY,
            json!({"i": {"chain": "XRPL", "publicKey": xrpl_pk, "address": "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"}}),
            t,
        )
        .await
        .ok();
    assert_eq!(xrpl["registerEscrowKey"]["escrowKey"]["address"], "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh");
    let mismatch = app
        .gql(
            REGISTER_KEY,
            json!({"i": {"chain": "XRPL", "publicKey": xrpl_pk, "address": "rf1BiGeXwwQoi8Z2ueFYTEXSwuJYfV2Jpn"}}),
            t,
        )
        .await;
    assert_eq!(mismatch.error()["extensions"]["field"], "input.address");
    let keys = app.gql("{ me { escrowKeys { chain } } }", json!({}), t).await.ok();
    assert_eq!(keys["me"]["escrowKeys"].as_array().unwrap().len(), 2);
}

on_both_backends!(
    register_login_and_me,
    registration_rejects_bad_input_and_duplicates,
    login_with_a_wrong_password_is_unauthenticated,
    repeated_failed_logins_are_rate_limited,
    refresh_rotates_the_token,
    reusing_a_rotated_refresh_token_revokes_the_session,
    logout_ends_the_session,
    bad_tokens_and_anonymous_callers_are_unauthenticated,
    only_admins_grant_roles,
    escrow_keys_are_validated_per_chain,
);
