-- Deterministic benchmark data in Agora's own (migrated) tables.
--
--   psql "$DATABASE_URL" -v providers=10000 -v listings=100000 -v reviews=300000 -v buyers=20000 -f benches/seed.sql
--
-- The same variables always give the same rows (ids, texts, prices): every value is
-- a function of the row number, pseudo-random values come from md5 of it. Ids are
-- valid UUIDv7 whose time part is the row's creation time, as Agora writes them, so
-- "newest first" (ordering by id) is ordering by creation.
--
-- Foreign-key order: users -> user_roles -> providers -> listings -> listing_tags
--   -> orders -> reviews. Every review is a buyer's review of a settled order.
-- The orders behind the reviews are settled XRPL orders whose JSON columns
-- (terms, escrow state) are placeholders: no benchmark reads them (the `orders`
-- query reads only the bench buyer's orders, which benches/run.sh places through
-- Agora's own API), and the watchers only load orders that are not settled.
\set ON_ERROR_STOP on
\if :{?providers} \else \set providers 10000 \endif
\if :{?listings} \else \set listings 100000 \endif
\if :{?reviews} \else \set reviews 300000 \endif
\if :{?buyers} \else \set buyers 20000 \endif

SET client_min_messages = warning;
SET synchronous_commit = off;

-- A UUIDv7 for row `n` of kind `tag`, created at `ts`.
CREATE OR REPLACE FUNCTION pg_temp.bench_uuid(ts timestamptz, tag int, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
  SELECT (substr(ms, 1, 8) || '-' || substr(ms, 9, 4) || '-7' || lpad(to_hex(tag), 3, '0') || '-8'
          || substr(nn, 1, 3) || '-' || substr(nn, 4, 12))::uuid
  FROM (SELECT lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') AS ms,
               lpad(to_hex(n), 15, '0') AS nn) x
$$;
-- A deterministic pseudo-random non-negative integer for (n, salt).
CREATE OR REPLACE FUNCTION pg_temp.bench_rand(n bigint, salt text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
  SELECT ('x' || substr(md5(salt || n::text), 1, 8))::bit(32)::bigint
$$;
CREATE OR REPLACE FUNCTION pg_temp.bench_word(n bigint, salt text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT (ARRAY['webrtc','rust','tutoring','bandwidth','gpu','render','consulting','design',
                'audit','security','python','mentoring','storage','relay','vpn','transcoding',
                'translation','legal','tax','fitness','music','guitar','piano','math','physics',
                'chemistry','writing','editing','video','podcast','inference','training','cluster',
                'backup','archive','streaming','coaching','startup','marketing','seo','crypto',
                'bitcoin','xrpl','escrow','kubernetes','database','postgres','frontend','mobile',
                'gaming'])[1 + pg_temp.bench_rand(n, salt) % 50]
$$;

BEGIN;

-- Accounts: providers are rows 1..providers, buyers follow. Nobody logs in as
-- them: the password hash is a valid argon2id hash of a random password.
INSERT INTO users (id, email, password_hash, created_at, updated_at)
SELECT pg_temp.bench_uuid(t, 1, n), 'bench-user-' || n || '@bench.invalid',
       '$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1nDBUqDZOBw1hNcx6WcWUzmbd+ku3phg2HZSyTzdclg',
       t, t
FROM generate_series(1, :providers + :buyers) n,
     LATERAL (SELECT timestamptz '2025-01-01 00:00:00+00' + n * interval '1 second' AS t) x;

INSERT INTO user_roles (user_id, role, granted_by, granted_at)
SELECT pg_temp.bench_uuid(t, 1, n), 'provider', NULL, t
FROM generate_series(1, :providers) n,
     LATERAL (SELECT timestamptz '2025-01-01 00:00:00+00' + n * interval '1 second' AS t) x;

INSERT INTO providers (user_id, display_name, bio, region, languages, rating_milli, rating_count, created_at, updated_at)
SELECT pg_temp.bench_uuid(t, 1, n),
       initcap(pg_temp.bench_word(n, 'pa')) || ' ' || initcap(pg_temp.bench_word(n, 'pb')) || ' Studio ' || n,
       'Provider ' || n || ': ' || pg_temp.bench_word(n, 'b1') || ', ' || pg_temp.bench_word(n, 'b2') || ' and '
         || pg_temp.bench_word(n, 'b3') || ' since 2019.',
       (ARRAY['eu','us','asia','latam','africa','oceania'])[1 + n % 6],
       (ARRAY['["en"]','["en","de"]','["fr","en"]','["es"]'])[1 + n % 4],
       3000 + pg_temp.bench_rand(n, 'rating') % 2001, 30, t, t
FROM generate_series(1, :providers) n,
     LATERAL (SELECT timestamptz '2025-01-01 00:00:00+00' + n * interval '1 second' AS t) x;

-- Listings: `listings` active ones and, spread among them (every 11th row), one
-- paused or draft listing for every ten active ones.
-- Created about every 2 minutes over 2025-2026, each by a pseudo-random provider.
CREATE TEMP TABLE bench_listings ON COMMIT DROP AS
SELECT n,
       pg_temp.bench_uuid(t, 2, n) AS id,
       pg_temp.bench_uuid(timestamptz '2025-01-01 00:00:00+00' + p * interval '1 second', 1, p) AS provider_id,
       p,
       t,
       pg_temp.bench_word(n, 't1') AS w1, pg_temp.bench_word(n, 't2') AS w2,
       pg_temp.bench_word(n, 't3') AS w3, pg_temp.bench_word(n, 't4') AS w4,
       CASE WHEN n % 11 <> 0 THEN 'active' WHEN n % 22 = 0 THEN 'paused' ELSE 'draft' END AS status
FROM generate_series(1, :listings / 10 * 11) n,
     LATERAL (SELECT timestamptz '2025-02-01 00:00:00+00' + n * interval '2 minutes' AS t,
                     1 + pg_temp.bench_rand(n, 'provider') % :providers AS p) x;

INSERT INTO listings (id, provider_id, title, description, category, tags, region, asset, pricing_kind, price,
                      metered_unit, min_deposit, delivery_window_hours, status, search_text, provider_rating,
                      version, created_at, updated_at)
SELECT id, provider_id, title, description, category,
       '["' || w3 || '","' || w4 || '"]', region, asset,
       CASE WHEN metered THEN 'metered' ELSE 'fixed' END, price,
       CASE WHEN metered THEN 'minute' END, CASE WHEN metered THEN price * 30 END,
       24 * (1 + n % 7), status,
       lower(title || E'\n' || description || E'\n' || w3 || E'\n' || w4),
       3000 + pg_temp.bench_rand(p, 'rating') % 2001, 0, t, t
FROM (SELECT b.*,
             initcap(w1) || ' ' || w2 || ' by the hour, offer ' || n AS title,
             'Hands-on ' || w1 || ' and ' || w2 || ' for teams and individuals. We cover ' || w3 || ', ' || w4
               || ' and everything around them; sessions are recorded on request, with notes afterwards. '
               || 'Offer ' || n || '.' AS description,
             (ARRAY['expert-session','bandwidth','compute','content'])[1 + n % 4] AS category,
             (ARRAY['eu','us','asia','latam','africa','oceania'])[1 + n % 6] AS region,
             CASE WHEN n % 3 = 0 THEN 'xrp' ELSE 'btc' END AS asset,
             n % 5 = 0 AS metered,
             1000 + pg_temp.bench_rand(n, 'price') % 1000000 AS price
      FROM bench_listings b) l;

INSERT INTO listing_tags (listing_id, tag)
SELECT id, w3 FROM bench_listings
UNION
SELECT id, w4 FROM bench_listings;

-- Orders and reviews: review r is by buyer (r mod buyers) of the provider of
-- listing (r mod the number of listings), about a settled order.
CREATE TEMP TABLE bench_reviews ON COMMIT DROP AS
SELECT r,
       pg_temp.bench_uuid(rt, 3, r) AS order_id,
       pg_temp.bench_uuid(rt + interval '3 days', 4, r) AS review_id,
       pg_temp.bench_uuid(timestamptz '2025-01-01 00:00:00+00' + (:providers + 1 + r % :buyers) * interval '1 second',
                          1, :providers + 1 + r % :buyers) AS buyer_id,
       l.provider_id, l.id AS listing_id, rt AS t,
       1000 + pg_temp.bench_rand(r, 'value') % 1000000 AS value
FROM generate_series(1, :reviews) r
JOIN bench_listings l ON l.n = 1 + (r % (:listings / 10 * 11)),
     LATERAL (SELECT timestamptz '2025-03-01 00:00:00+00' + r * interval '1 minute' AS rt) x;

INSERT INTO orders (id, buyer_id, provider_id, listing_id, arbitrator_id, chain, asset, amount_due, status, terms,
                    state, escrow, arbitrator_key_index, escrow_address, version, created_at, updated_at)
SELECT order_id, buyer_id, provider_id, listing_id, NULL, 'xrpl', 'xrp', value, 'Settled', '{}', '{}', '{}',
       1000000 + r, NULL, 0, t, t + interval '3 days'
FROM bench_reviews;

INSERT INTO reviews (id, order_id, reviewer_id, subject_id, side, rating, text, asset, order_value, settled_at,
                     editable_until, created_at, updated_at)
SELECT review_id, order_id, buyer_id, provider_id, 'buyer', 1 + pg_temp.bench_rand(r, 'stars') % 5,
       CASE WHEN r % 4 = 0 THEN NULL
            ELSE 'Great ' || pg_temp.bench_word(r, 'r1') || ' session, would book again (' || r || ').' END,
       'xrp', value, t + interval '2 days', t + interval '32 days', t + interval '3 days', t + interval '3 days'
FROM bench_reviews;

COMMIT;

VACUUM ANALYZE users;
VACUUM ANALYZE user_roles;
VACUUM ANALYZE providers;
VACUUM ANALYZE listings;
VACUUM ANALYZE listing_tags;
VACUUM ANALYZE orders;
VACUUM ANALYZE reviews;
