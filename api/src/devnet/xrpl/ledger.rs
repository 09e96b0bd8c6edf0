//! The devnet's ledger state (account roots and signer lists), its closed ledgers,
//! and how both are written in rippled's JSON.
//!
//! Ledger and state hashes are SHA-512-half digests over the header fields and the
//! account entries, chained through the parent hash. They are not rippled's
//! SHAMap hashes: nothing outside the devnet recomputes them, and what the
//! watcher relies on (each ledger names its parent's hash, a changed ledger has a
//! different hash) holds.

use std::collections::BTreeMap;

use agora_escrow::xrpl::XrplAddress;
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha512};

pub(crate) type AccountId = [u8; 20];

/// `lsfDisableMaster`: the master key may not sign.
pub(crate) const LSF_DISABLE_MASTER: u32 = 0x0010_0000;
/// `lsfRequireDestTag`: incoming Payments need a DestinationTag.
pub(crate) const LSF_REQUIRE_DEST_TAG: u32 = 0x0002_0000;

/// Seconds between the Unix epoch and the XRPL ("Ripple") epoch, 2000-01-01.
const RIPPLE_EPOCH_OFFSET: u64 = 946_684_800;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SignerList {
    pub quorum: u32,
    /// Sorted by AccountID, unique.
    pub entries: Vec<(AccountId, u16)>,
    pub previous_txn_id: String,
    pub previous_txn_lgr_seq: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccountRoot {
    pub balance: u64,
    /// The next Sequence a transaction must use.
    pub sequence: u32,
    pub flags: u32,
    pub owner_count: u32,
    pub regular_key: Option<AccountId>,
    pub signer_list: Option<SignerList>,
    pub previous_txn_id: String,
    pub previous_txn_lgr_seq: u32,
}

impl AccountRoot {
    pub fn master_disabled(&self) -> bool {
        self.flags & LSF_DISABLE_MASTER != 0
    }
}

/// A PayChannel ledger object (see `channel.rs` for the rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PayChannel {
    pub owner: AccountId,
    pub destination: AccountId,
    /// XRP put into the channel so far.
    pub amount: u64,
    /// XRP already paid out to the destination; never above `amount`.
    pub balance: u64,
    /// The claim key (33 bytes).
    pub public_key: Vec<u8>,
    pub settle_delay: u32,
    pub expiration: Option<u32>,
    pub cancel_after: Option<u32>,
    pub destination_tag: Option<u32>,
    pub previous_txn_id: String,
    pub previous_txn_lgr_seq: u32,
}

/// All accounts and channels, and the XRP in existence (fees are destroyed).
#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    pub accounts: BTreeMap<AccountId, AccountRoot>,
    pub channels: BTreeMap<[u8; 32], PayChannel>,
    pub total_drops: u64,
    /// The close time of the last closed ledger: what the open ledger's
    /// transactions see as the "parent close time" (expirations compare to it).
    pub parent_close_time: u32,
}

impl State {
    /// A digest of every entry, standing in for rippled's state tree hash.
    pub fn hash(&self) -> String {
        let mut h = Sha512::new();
        h.update(b"MLN\0");
        for (id, a) in &self.accounts {
            h.update(id);
            h.update(a.balance.to_be_bytes());
            h.update(a.sequence.to_be_bytes());
            h.update(a.flags.to_be_bytes());
            h.update(a.owner_count.to_be_bytes());
            h.update(a.regular_key.unwrap_or_default());
            if let Some(list) = &a.signer_list {
                h.update(list.quorum.to_be_bytes());
                for (signer, weight) in &list.entries {
                    h.update(signer);
                    h.update(weight.to_be_bytes());
                }
            }
        }
        for (id, c) in &self.channels {
            h.update(id);
            h.update(c.amount.to_be_bytes());
            h.update(c.balance.to_be_bytes());
            h.update(c.expiration.unwrap_or_default().to_be_bytes());
        }
        half(h)
    }
}

/// A PayChannel in rippled's JSON (`ledger_entry`, metadata fields).
pub(crate) fn channel_fields(c: &PayChannel) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("Account".into(), address(&c.owner).into());
    m.insert("Amount".into(), c.amount.to_string().into());
    m.insert("Balance".into(), c.balance.to_string().into());
    m.insert("Destination".into(), address(&c.destination).into());
    m.insert("DestinationNode".into(), "0".into());
    m.insert("Flags".into(), 0.into());
    m.insert("OwnerNode".into(), "0".into());
    m.insert("PublicKey".into(), hex::encode_upper(&c.public_key).into());
    m.insert("SettleDelay".into(), c.settle_delay.into());
    if let Some(e) = c.expiration {
        m.insert("Expiration".into(), e.into());
    }
    if let Some(e) = c.cancel_after {
        m.insert("CancelAfter".into(), e.into());
    }
    if let Some(t) = c.destination_tag {
        m.insert("DestinationTag".into(), t.into());
    }
    m
}

/// One transaction as a closed ledger holds it.
#[derive(Clone, Debug)]
pub(crate) struct TxRecord {
    pub hash: String,
    /// rippled's JSON of the transaction, without `hash`.
    pub tx: Json,
    pub meta: Json,
    pub result: &'static str,
}

/// A closed (and, on the devnet, at once validated) ledger.
#[derive(Clone, Debug)]
pub(crate) struct LedgerRecord {
    pub index: u32,
    pub hash: String,
    pub parent_hash: String,
    pub close_time: u32,
    pub parent_close_time: u32,
    pub total_drops: u64,
    pub account_hash: String,
    pub transaction_hash: String,
    pub txs: Vec<TxRecord>,
}

impl LedgerRecord {
    /// Seals a ledger: its transaction and header hashes.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        index: u32,
        parent_hash: String,
        parent_close_time: u32,
        close_time: u32,
        total_drops: u64,
        account_hash: String,
        txs: Vec<TxRecord>,
    ) -> Self {
        let transaction_hash = if txs.is_empty() {
            "0".repeat(64)
        } else {
            let mut h = Sha512::new();
            h.update(b"SND\0");
            for tx in &txs {
                h.update(tx.hash.as_bytes());
                h.update(tx.result.as_bytes());
            }
            half(h)
        };
        let mut h = Sha512::new();
        h.update(b"LWR\0");
        h.update(index.to_be_bytes());
        h.update(total_drops.to_be_bytes());
        h.update(parent_hash.as_bytes());
        h.update(transaction_hash.as_bytes());
        h.update(account_hash.as_bytes());
        h.update(parent_close_time.to_be_bytes());
        h.update(close_time.to_be_bytes());
        Self {
            index,
            hash: half(h),
            parent_hash,
            close_time,
            parent_close_time,
            total_drops,
            account_hash,
            transaction_hash,
            txs,
        }
    }

    /// The ledger header in rippled's JSON (API v1 writes the index as a string).
    pub fn header_json(&self, validated: bool) -> Json {
        json!({
            "account_hash": self.account_hash,
            "close_flags": 0,
            "close_time": self.close_time,
            "close_time_human": close_time_human(self.close_time),
            "close_time_iso": close_time_iso(self.close_time),
            "close_time_resolution": 10,
            "closed": true,
            "ledger_hash": self.hash,
            "ledger_index": self.index.to_string(),
            "parent_close_time": self.parent_close_time,
            "parent_hash": self.parent_hash,
            "total_coins": self.total_drops.to_string(),
            "transaction_hash": self.transaction_hash,
            "validated": validated,
        })
    }
}

fn half(h: Sha512) -> String {
    hex::encode_upper(&h.finalize()[..32])
}

/// The ledger object id of `id`'s AccountRoot (`keylet::account`).
pub(crate) fn account_keylet(id: &AccountId) -> String {
    let mut h = Sha512::new();
    h.update([0x00, 0x61]);
    h.update(id);
    half(h)
}

/// The ledger object id of `id`'s SignerList (`keylet::signers`).
pub(crate) fn signer_list_keylet(id: &AccountId) -> String {
    let mut h = Sha512::new();
    h.update([0x00, 0x53]);
    h.update(id);
    h.update(0u32.to_be_bytes());
    half(h)
}

pub(crate) fn address(id: &AccountId) -> String {
    XrplAddress::from_account_id(*id).to_string()
}

/// Now, in seconds since the XRPL epoch.
pub(crate) fn ripple_now() -> u32 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(RIPPLE_EPOCH_OFFSET);
    u32::try_from(unix.saturating_sub(RIPPLE_EPOCH_OFFSET)).unwrap_or(u32::MAX)
}

fn close_time_unix(close_time: u32) -> i64 {
    i64::from(close_time) + RIPPLE_EPOCH_OFFSET as i64
}

fn close_time_iso(close_time: u32) -> String {
    chrono::DateTime::from_timestamp(close_time_unix(close_time), 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn close_time_human(close_time: u32) -> String {
    chrono::DateTime::from_timestamp(close_time_unix(close_time), 0)
        .map(|t| t.format("%Y-%b-%d %H:%M:%S%.9f UTC").to_string())
        .unwrap_or_default()
}

/// The AccountRoot fields that transactions change, for metadata and `account_data`.
pub(crate) fn account_fields(id: &AccountId, a: &AccountRoot) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("Account".into(), address(id).into());
    m.insert("Balance".into(), a.balance.to_string().into());
    m.insert("Flags".into(), a.flags.into());
    m.insert("OwnerCount".into(), a.owner_count.into());
    m.insert("Sequence".into(), a.sequence.into());
    if let Some(key) = &a.regular_key {
        m.insert("RegularKey".into(), address(key).into());
    }
    m
}

/// `account_data` as `account_info` returns it.
pub(crate) fn account_data_json(id: &AccountId, a: &AccountRoot) -> Json {
    let mut m = account_fields(id, a);
    m.insert("LedgerEntryType".into(), "AccountRoot".into());
    m.insert("PreviousTxnID".into(), a.previous_txn_id.clone().into());
    m.insert("PreviousTxnLgrSeq".into(), a.previous_txn_lgr_seq.into());
    m.insert("index".into(), account_keylet(id).into());
    Json::Object(m)
}

/// `account_flags` as rippled's `account_info` returns them.
pub(crate) fn account_flags_json(a: &AccountRoot) -> Json {
    json!({
        "defaultRipple": false,
        "depositAuth": false,
        "disableMasterKey": a.master_disabled(),
        "disallowIncomingXRP": false,
        "globalFreeze": false,
        "noFreeze": false,
        "passwordSpent": false,
        "requireAuthorization": false,
        "requireDestinationTag": a.flags & LSF_REQUIRE_DEST_TAG != 0,
    })
}

pub(crate) fn signer_entries_json(list: &SignerList) -> Json {
    list.entries
        .iter()
        .map(|(account, weight)| {
            json!({"SignerEntry": {"Account": address(account), "SignerWeight": weight}})
        })
        .collect()
}

/// The SignerList ledger object.
pub(crate) fn signer_list_json(owner: &AccountId, list: &SignerList) -> Json {
    json!({
        "Flags": 0,
        "LedgerEntryType": "SignerList",
        "OwnerNode": "0",
        "PreviousTxnID": list.previous_txn_id,
        "PreviousTxnLgrSeq": list.previous_txn_lgr_seq,
        "SignerEntries": signer_entries_json(list),
        "SignerListID": 0,
        "SignerQuorum": list.quorum,
        "index": signer_list_keylet(owner),
    })
}

/// `validated_ledgers` / `complete_ledgers`: the range of ledgers kept.
pub(crate) fn ledger_range(first: u32, last: u32) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keylets_match_rippled_for_the_genesis_account() {
        // The genesis account's AccountRoot id on every rippled network.
        let genesis = XrplAddress::parse("rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh").unwrap();
        assert_eq!(
            account_keylet(genesis.account_id()),
            "2B6AC232AA4C4BE41BF49D2459FA4A0347E1B543A4C92FCEE0821C0201E2E9A8"
        );
    }

    #[test]
    fn a_ledger_hash_depends_on_its_parent_and_contents() {
        let a = LedgerRecord::seal(3, "00".repeat(32), 0, 10, 5, "AB".into(), vec![]);
        let b = LedgerRecord::seal(3, "01".repeat(32), 0, 10, 5, "AB".into(), vec![]);
        let c = LedgerRecord::seal(3, "00".repeat(32), 0, 10, 5, "AC".into(), vec![]);
        assert_ne!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_eq!(a.hash.len(), 64);
        assert_eq!(a.header_json(true)["ledger_index"], "3");
        assert_eq!(ledger_range(2, 2), "2");
        assert_eq!(ledger_range(2, 9), "2-9");
    }
}
