//! Relay global object identification: `ID`s are base64 of `Type:uuid`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use super::errors::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    User,
    Provider,
    Listing,
    Order,
    Dispute,
    /// Not fetchable through `node` (a key is shown only to its owner, on `me`).
    EscrowKey,
}

impl NodeType {
    const ALL: [NodeType; 6] = [
        NodeType::User,
        NodeType::Provider,
        NodeType::Listing,
        NodeType::Order,
        NodeType::Dispute,
        NodeType::EscrowKey,
    ];

    fn name(self) -> &'static str {
        match self {
            NodeType::User => "User",
            NodeType::Provider => "Provider",
            NodeType::Listing => "Listing",
            NodeType::Order => "Order",
            NodeType::Dispute => "Dispute",
            NodeType::EscrowKey => "EscrowKey",
        }
    }
}

pub fn global_id(kind: NodeType, id: Uuid) -> async_graphql::ID {
    async_graphql::ID(URL_SAFE_NO_PAD.encode(format!("{}:{id}", kind.name())))
}

/// Decodes any global id.
pub fn decode(id: &str) -> Option<(NodeType, Uuid)> {
    let raw = URL_SAFE_NO_PAD.decode(id.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (kind, uuid) = raw.split_once(':')?;
    let kind = NodeType::ALL.into_iter().find(|k| k.name() == kind)?;
    Some((kind, Uuid::parse_str(uuid).ok()?))
}

/// Decodes a global id that must be of `kind`; `field` names the input for errors.
pub fn expect(kind: NodeType, id: &str, field: &str) -> Result<Uuid, ApiError> {
    match decode(id) {
        Some((k, uuid)) if k == kind => Ok(uuid),
        Some(_) => Err(ApiError::bad_input(
            field,
            "WRONG_TYPE",
            format!("{field}: expected the id of a {}", kind.name()),
        )),
        None => Err(ApiError::bad_input(
            field,
            "INVALID_FORMAT",
            format!("{field}: not a valid id"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escrow_key_ids_are_global_ids_and_raw_uuids_are_refused() {
        let uuid = Uuid::new_v4();
        let id = global_id(NodeType::EscrowKey, uuid);
        assert_eq!(URL_SAFE_NO_PAD.decode(id.as_str()).unwrap(), format!("EscrowKey:{uuid}").into_bytes());
        assert_eq!(expect(NodeType::EscrowKey, &id, "input.buyerKeyId").unwrap(), uuid);
        assert!(expect(NodeType::EscrowKey, &uuid.to_string(), "input.buyerKeyId").is_err());
        assert!(expect(NodeType::EscrowKey, &global_id(NodeType::User, uuid), "input.buyerKeyId").is_err());
    }

    #[test]
    fn ids_round_trip_and_check_their_type() {
        let uuid = Uuid::new_v4();
        let id = global_id(NodeType::Listing, uuid);
        assert_eq!(decode(&id), Some((NodeType::Listing, uuid)));
        assert_eq!(expect(NodeType::Listing, &id, "id").unwrap(), uuid);
        assert!(expect(NodeType::User, &id, "id").is_err());
        assert!(decode("not base64!").is_none());
        assert!(decode(&URL_SAFE_NO_PAD.encode("Listing:nope")).is_none());
    }
}
