//! The GraphiQL page on `GET /graphql`, opened with the repository's operation
//! documents (`client/operations/*.graphql`, the README's tour) as tabs, so a
//! newcomer can run the tour without copying anything.

use async_graphql::http::GraphiQLSource;

/// The tabs GraphiQL opens with: a title and the operations of one file.
const TOUR: [(&str, &str); 3] = [
    ("account", include_str!("../../../client/operations/account.graphql")),
    ("listings", include_str!("../../../client/operations/listings.graphql")),
    ("orders", include_str!("../../../client/operations/orders.graphql")),
];

/// Where the page's React props are, in async-graphql's GraphiQL template.
const PROPS_ANCHOR: &str = "defaultEditorToolsVisibility: true,";

/// The page's HTML.
pub fn page() -> String {
    let html = GraphiQLSource::build()
        .endpoint("/graphql")
        .subscription_endpoint("/graphql/ws")
        .title("Agora GraphiQL")
        .finish();
    let tabs: Vec<serde_json::Value> = TOUR
        .iter()
        .map(|(_, query)| serde_json::json!({ "query": query }))
        .collect();
    // JSON is valid JavaScript; `<` is escaped so no document can close the script.
    let tabs = serde_json::Value::from(tabs).to_string().replace('<', "\\u003c");
    if html.contains(PROPS_ANCHOR) {
        html.replacen(PROPS_ANCHOR, &format!("{PROPS_ANCHOR}\n          defaultTabs: {tabs},"), 1)
    } else {
        tracing::warn!("the GraphiQL template changed; the page opens without the tour");
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphiql_opens_with_every_operation_of_the_tour() {
        let html = page();
        assert!(html.contains("defaultTabs: ["), "the template anchor moved");
        for name in ["mutation Register(", "query SearchListings(", "mutation PlaceOrder(", "subscription OrderUpdated("] {
            assert!(html.contains(name), "{name} missing");
        }
    }
}
