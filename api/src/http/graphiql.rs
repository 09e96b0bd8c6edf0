//! The GraphiQL page on `GET /graphql` (only where `http.graphiql` is on),
//! opened with the repository's operation documents
//! (`client/operations/*.graphql`, the README's tour) as tabs, so a newcomer
//! can run the tour without copying anything.
//!
//! Its scripts and stylesheet are exact package versions, each with a
//! Subresource Integrity hash: a browser runs them only if they are byte for
//! byte the files of those npm packages. The page's `Content-Security-Policy`
//! allows those URLs and the page's own inline script (by its hash), nothing
//! else: no other script, no other origin to connect to than this server.
//! `scripts/check-graphiql-assets` recomputes the hashes from the packages.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

/// One pinned file: its URL and its SRI hash (sha384 of the file in the npm package).
pub struct Asset {
    pub url: &'static str,
    pub integrity: &'static str,
}

/// The CDN that serves npm packages file by file, by exact version.
pub const ASSET_ORIGIN: &str = "https://unpkg.com";

pub const SCRIPTS: [Asset; 3] = [
    Asset {
        url: "https://unpkg.com/react@18.3.1/umd/react.production.min.js",
        integrity: "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
    },
    Asset {
        url: "https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js",
        integrity: "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
    },
    Asset {
        url: "https://unpkg.com/graphiql@4.1.2/graphiql.min.js",
        integrity: "sha384-9XdHu7ajgGJziD4J1zNBKQ842Q/+zZfDv+ib1eMhZWBH6hPAs806x+Jbcf0yNO6B",
    },
];

pub const STYLESHEET: Asset = Asset {
    url: "https://unpkg.com/graphiql@4.1.2/graphiql.min.css",
    integrity: "sha384-1el1QShFBnnXTx9x/Cprg82hZWKt0ry29OAYIXt05swbi0KcZDFoj0CWguMpopJr",
};

/// The tabs GraphiQL opens with: a title and the operations of one file.
const TOUR: [(&str, &str); 3] = [
    ("account", include_str!("../../../client/operations/account.graphql")),
    ("listings", include_str!("../../../client/operations/listings.graphql")),
    ("orders", include_str!("../../../client/operations/orders.graphql")),
];

/// The page and the policy it is served with.
pub struct Page {
    pub html: String,
    pub csp: String,
}

/// The page's own script: mounts GraphiQL on this server's endpoints.
fn inline_script() -> String {
    let tabs: Vec<serde_json::Value> = TOUR
        .iter()
        .map(|(_, query)| serde_json::json!({ "query": query }))
        .collect();
    // JSON is valid JavaScript; `<` is escaped so no document can close the script.
    let tabs = serde_json::Value::from(tabs).to_string().replace('<', "\\u003c");
    format!(
        r#"
      const endpoint = (path, socket) => {{
        const url = new URL(path, window.location.origin);
        if (socket) url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
        return url.toString();
      }};
      ReactDOM.createRoot(document.getElementById('graphiql')).render(
        React.createElement(GraphiQL, {{
          fetcher: GraphiQL.createFetcher({{
            url: endpoint('/graphql', false),
            subscriptionUrl: endpoint('/graphql/ws', true),
          }}),
          defaultEditorToolsVisibility: true,
          defaultTabs: {tabs},
        }})
      );
    "#
    )
}

fn build() -> Page {
    let script = inline_script();
    let script_hash = format!("'sha256-{}'", BASE64.encode(Sha256::digest(script.as_bytes())));
    let tags: String = SCRIPTS
        .iter()
        .map(|a| format!("    <script src=\"{}\" integrity=\"{}\" crossorigin=\"anonymous\"></script>\n", a.url, a.integrity))
        .collect();
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Agora GraphiQL</title>
    <link rel="stylesheet" href="{css}" integrity="{css_integrity}" crossorigin="anonymous">
{tags}  </head>
  <body style="margin: 0">
    <div id="graphiql" style="height: 100vh">Loading…</div>
    <script>{script}</script>
  </body>
</html>
"#,
        css = STYLESHEET.url,
        css_integrity = STYLESHEET.integrity,
    );
    let script_sources: Vec<&str> = SCRIPTS.iter().map(|a| a.url).collect();
    // Styles: GraphiQL's editors set inline styles at run time, so inline
    // styles are allowed; style cannot run code. Fonts are data: URIs inside
    // the pinned stylesheet.
    let csp = format!(
        "default-src 'none'; script-src {script_hash} {scripts}; style-src {css} 'unsafe-inline'; font-src data:; \
         img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        scripts = script_sources.join(" "),
        css = STYLESHEET.url,
    );
    Page { html, csp }
}

/// The page, built once.
pub fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphiql_opens_with_every_operation_of_the_tour() {
        let html = &page().html;
        assert!(html.contains("defaultTabs: ["));
        for name in ["mutation Register(", "query SearchListings(", "mutation PlaceOrder(", "subscription OrderUpdated("] {
            assert!(html.contains(name), "{name} missing");
        }
    }

    /// Every `src`/`href` of the page: a pinned asset with its integrity hash.
    #[test]
    fn graphiql_loads_only_pinned_assets_with_integrity_hashes() {
        let html = &page().html;
        let mut loaded = 0;
        for attr in ["src=\"", "href=\""] {
            for (at, _) in html.match_indices(attr) {
                let url = &html[at + attr.len()..];
                let url = &url[..url.find('"').unwrap_or(url.len())];
                let asset = SCRIPTS
                    .iter()
                    .chain(std::iter::once(&STYLESHEET))
                    .find(|a| a.url == url)
                    .unwrap_or_else(|| panic!("{url} is not a pinned asset"));
                let tag_end = html[at..].find('>').map_or(html.len(), |e| at + e);
                let tag = &html[html[..at].rfind('<').unwrap_or(0)..tag_end];
                assert!(tag.contains(&format!("integrity=\"{}\"", asset.integrity)), "{tag}");
                assert!(tag.contains("crossorigin=\"anonymous\""), "{tag}");
                loaded += 1;
            }
        }
        assert_eq!(loaded, SCRIPTS.len() + 1, "every asset is on the page once");
        for asset in SCRIPTS.iter().chain(std::iter::once(&STYLESHEET)) {
            let path = asset.url.strip_prefix(ASSET_ORIGIN).unwrap_or_default();
            let (package, _) = path.trim_start_matches('/').split_once('/').unwrap_or_default();
            let (_, version) = package.rsplit_once('@').unwrap_or_default();
            let parts: Vec<&str> = version.split('.').collect();
            assert!(
                parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())),
                "{} is not an exact version",
                asset.url
            );
            assert!(asset.integrity.starts_with("sha384-") && BASE64.decode(&asset.integrity[7..]).map(|d| d.len()) == Ok(48));
        }
    }

    #[test]
    fn graphiql_policy_allows_only_the_pinned_scripts_and_the_pages_own() {
        let Page { html, csp } = page();
        let directive = |name: &str| -> Vec<String> {
            csp.split(';')
                .map(str::trim)
                .find_map(|d| d.strip_prefix(name).map(|rest| rest.split_whitespace().map(str::to_owned).collect()))
                .unwrap_or_default()
        };
        let start = html.find("<script>").map(|i| i + "<script>".len()).unwrap_or_default();
        let end = html[start..].find("</script>").map_or(html.len(), |e| start + e);
        let inline_hash = format!("'sha256-{}'", BASE64.encode(Sha256::digest(&html.as_bytes()[start..end])));
        let mut expected: Vec<String> = SCRIPTS.iter().map(|a| a.url.to_owned()).collect();
        expected.push(inline_hash);
        expected.sort();
        let mut scripts = directive("script-src ");
        scripts.sort();
        assert_eq!(scripts, expected, "script-src");
        assert_eq!(directive("default-src "), ["'none'"]);
        assert_eq!(directive("connect-src "), ["'self'"]);
        assert_eq!(directive("frame-ancestors "), ["'none'"]);
        assert_eq!(html.matches("<script>").count(), 1, "one inline script, the hashed one");
    }
}
