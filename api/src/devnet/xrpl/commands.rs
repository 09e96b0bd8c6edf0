//! The rippled API methods the devnet answers, shared by the WebSocket and
//! JSON-RPC servers: `server_info`, `ping`, `fee`, `ledger`, `ledger_closed`,
//! `ledger_current`, `account_info`, `account_objects`, `submit`, `tx`, the
//! stand-alone admin command `ledger_accept`, and the devnet's own `agora_faucet`.
//! Results and errors have rippled's shape (API version 1 by default; `ledger`
//! and `tx` also answer in version 2's shape when asked).

use serde_json::{json, Map, Value as Json};

use super::apply::ter;
use super::ledger::{
    self, account_data_json, account_flags_json, signer_list_json, LedgerRecord, TxRecord,
};
use super::{Inner, XrplDevnet, BASE_FEE_DROPS, BASE_RESERVE_DROPS, OWNER_RESERVE_DROPS};
use agora_escrow::xrpl::XrplAddress;

/// A rippled error: `error`, `error_code`, `error_message` (and, for
/// `invalidTransaction`, `error_exception`).
#[derive(Debug, Clone)]
pub(crate) struct RpcError {
    pub error: &'static str,
    pub code: i32,
    pub message: String,
    pub exception: Option<String>,
}

impl RpcError {
    fn new(error: &'static str, code: i32, message: impl Into<String>) -> Self {
        Self {
            error,
            code,
            message: message.into(),
            exception: None,
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new("invalidParams", 31, message)
    }

    pub fn unknown_command() -> Self {
        Self::new("unknownCmd", 32, "Unknown method.")
    }

    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new("notSupported", 75, message)
    }

    fn ledger_not_found() -> Self {
        Self::new("lgrNotFound", 21, "ledgerNotFound")
    }

    /// The error fields, to merge into a response.
    pub fn fields(&self) -> Map<String, Json> {
        let mut m = Map::new();
        m.insert("error".into(), self.error.into());
        m.insert("error_code".into(), self.code.into());
        m.insert("error_message".into(), self.message.clone().into());
        if let Some(exception) = &self.exception {
            m.insert("error_exception".into(), exception.clone().into());
        }
        m
    }
}

/// Runs one API method. `subscribe`/`unsubscribe` belong to the WebSocket layer.
pub(crate) fn dispatch(devnet: &XrplDevnet, method: &str, params: &Json) -> Result<Json, RpcError> {
    match method {
        "ping" => Ok(json!({})),
        "server_info" | "server_state" => Ok(server_info(&devnet.inner())),
        "fee" => Ok(fee(&devnet.inner())),
        "ledger" => ledger_command(&devnet.inner(), params),
        "ledger_closed" => {
            let inner = devnet.inner();
            let last = inner.last();
            Ok(json!({"ledger_hash": last.hash, "ledger_index": last.index}))
        }
        "ledger_current" => Ok(json!({"ledger_current_index": devnet.inner().open_index()})),
        "account_info" => account_info(&devnet.inner(), params),
        "account_objects" => account_objects(&devnet.inner(), params),
        "ledger_entry" => ledger_entry(&devnet.inner(), params),
        "submit" => submit(devnet, params),
        "tx" => tx(&devnet.inner(), params),
        "ledger_accept" => {
            devnet.close_ledger();
            Ok(json!({"ledger_current_index": devnet.inner().open_index()}))
        }
        "agora_faucet" => faucet(devnet, params),
        "subscribe" | "unsubscribe" => Err(RpcError::not_supported(
            "Subscriptions need a WebSocket connection.",
        )),
        _ => Err(RpcError::unknown_command()),
    }
}

fn server_info(inner: &Inner) -> Json {
    let last = inner.last();
    json!({"info": {
        "build_version": concat!("agora-devnet-", env!("CARGO_PKG_VERSION")),
        "complete_ledgers": ledger::ledger_range(inner.first_index(), last.index),
        "hostid": "agora-devnet",
        "load_factor": 1,
        "network_id": 0,
        "peers": 0,
        "server_state": "full",
        "standalone": true,
        "validated_ledger": {
            "age": ledger::ripple_now().saturating_sub(last.close_time),
            "base_fee_xrp": BASE_FEE_DROPS as f64 / 1e6,
            "hash": last.hash,
            "reserve_base_xrp": BASE_RESERVE_DROPS as f64 / 1e6,
            "reserve_inc_xrp": OWNER_RESERVE_DROPS as f64 / 1e6,
            "seq": last.index,
        },
        "validation_quorum": 0,
    }})
}

fn fee(inner: &Inner) -> Json {
    let base = BASE_FEE_DROPS.to_string();
    json!({
        "current_ledger_size": inner.open_txs.len().to_string(),
        "current_queue_size": "0",
        "drops": {
            "base_fee": base,
            "median_fee": "5000",
            "minimum_fee": base,
            "open_ledger_fee": base,
        },
        "expected_ledger_size": "1000",
        "ledger_current_index": inner.open_index(),
        "levels": {
            "median_level": "128000",
            "minimum_level": "256",
            "open_ledger_level": "256",
            "reference_level": "256",
        },
        "max_queue_size": "2000",
    })
}

/// Which ledger a request names.
enum Which<'a> {
    Validated(&'a LedgerRecord),
    Current,
}

fn select_ledger<'a>(inner: &'a Inner, params: &Json) -> Result<Which<'a>, RpcError> {
    if let Some(hash) = params.get("ledger_hash").and_then(Json::as_str) {
        return inner
            .ledgers
            .iter()
            .find(|l| l.hash.eq_ignore_ascii_case(hash))
            .map(Which::Validated)
            .ok_or_else(RpcError::ledger_not_found);
    }
    let index = match params.get("ledger_index") {
        None | Some(Json::Null) => return Ok(Which::Current),
        Some(Json::String(s)) => match s.as_str() {
            "validated" | "closed" => return Ok(Which::Validated(inner.last())),
            "current" => return Ok(Which::Current),
            other => other
                .parse::<u32>()
                .map_err(|_| RpcError::new("invalidParams", 31, "ledgerIndexMalformed"))?,
        },
        Some(Json::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| RpcError::new("invalidParams", 31, "ledgerIndexMalformed"))?,
        Some(_) => return Err(RpcError::new("invalidParams", 31, "ledgerIndexMalformed")),
    };
    if index == inner.open_index() {
        return Ok(Which::Current);
    }
    inner
        .ledger(index)
        .map(Which::Validated)
        .ok_or_else(RpcError::ledger_not_found)
}

fn api_version(params: &Json) -> u64 {
    params
        .get("api_version")
        .and_then(Json::as_u64)
        .unwrap_or(1)
}

/// One transaction of a ledger, expanded, in the requested API version's shape.
fn expanded_tx(tx: &TxRecord, ledger: Option<&LedgerRecord>, version: u64) -> Json {
    if version >= 2 {
        let mut m = Map::new();
        m.insert("hash".into(), tx.hash.clone().into());
        m.insert("tx_json".into(), tx.tx.clone());
        m.insert("meta".into(), tx.meta.clone());
        if let Some(l) = ledger {
            m.insert("ledger_index".into(), l.index.into());
            m.insert("ledger_hash".into(), l.hash.clone().into());
        }
        m.insert("validated".into(), ledger.is_some().into());
        Json::Object(m)
    } else {
        let mut m = tx.tx.as_object().cloned().unwrap_or_default();
        m.insert("hash".into(), tx.hash.clone().into());
        m.insert("metaData".into(), tx.meta.clone());
        Json::Object(m)
    }
}

fn ledger_command(inner: &Inner, params: &Json) -> Result<Json, RpcError> {
    let with_txs = params
        .get("transactions")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let expand = params
        .get("expand")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let version = api_version(params);
    let txs_json = |txs: &[TxRecord], record: Option<&LedgerRecord>| -> Json {
        txs.iter()
            .map(|t| {
                if expand {
                    expanded_tx(t, record, version)
                } else {
                    Json::from(t.hash.clone())
                }
            })
            .collect()
    };
    match select_ledger(inner, params)? {
        Which::Validated(record) => {
            let mut header = record.header_json(true);
            if version >= 2 {
                header["ledger_index"] = record.index.into();
            }
            if with_txs {
                header["transactions"] = txs_json(&record.txs, Some(record));
            }
            Ok(json!({
                "ledger": header,
                "ledger_hash": record.hash,
                "ledger_index": record.index,
                "validated": true,
            }))
        }
        Which::Current => {
            let index = inner.open_index();
            let mut header = json!({
                "closed": false,
                "ledger_index": if version >= 2 { Json::from(index) } else { Json::from(index.to_string()) },
                "parent_hash": inner.last().hash,
                "total_coins": inner.open.total_drops.to_string(),
            });
            if with_txs {
                header["transactions"] = txs_json(&inner.open_txs, None);
            }
            Ok(json!({
                "ledger": header,
                "ledger_current_index": index,
                "validated": false,
            }))
        }
    }
}

fn account_param(params: &Json) -> Result<XrplAddress, RpcError> {
    let Some(text) = params.get("account").and_then(Json::as_str) else {
        return Err(RpcError::invalid_params("Missing field 'account'."));
    };
    XrplAddress::parse(text).map_err(|_| RpcError::new("actMalformed", 35, "Account malformed."))
}

/// The state a request names, and how to label it in the answer.
fn select_state<'a>(
    inner: &'a Inner,
    params: &Json,
) -> Result<(&'a ledger::State, Map<String, Json>), RpcError> {
    let mut label = Map::new();
    match select_ledger(inner, params)? {
        Which::Current => {
            label.insert("ledger_current_index".into(), inner.open_index().into());
            label.insert("validated".into(), false.into());
            Ok((&inner.open, label))
        }
        Which::Validated(record) if record.index == inner.last().index => {
            label.insert("ledger_hash".into(), record.hash.clone().into());
            label.insert("ledger_index".into(), record.index.into());
            label.insert("validated".into(), true.into());
            Ok((&inner.closed, label))
        }
        // Only the latest validated state is kept.
        Which::Validated(_) => Err(RpcError::ledger_not_found()),
    }
}

fn account_info(inner: &Inner, params: &Json) -> Result<Json, RpcError> {
    let address = account_param(params)?;
    let (state, mut result) = select_state(inner, params)?;
    let id = address.account_id();
    let Some(account) = state.accounts.get(id) else {
        return Err(RpcError::new("actNotFound", 19, "Account not found."));
    };
    let mut data = account_data_json(id, account);
    let lists: Vec<Json> = account
        .signer_list
        .iter()
        .map(|l| signer_list_json(id, l))
        .collect();
    let with_lists = params
        .get("signer_lists")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if with_lists {
        if api_version(params) >= 2 {
            result.insert("signer_lists".into(), lists.into());
        } else {
            data["signer_lists"] = lists.into();
        }
    }
    result.insert("account_data".into(), data);
    result.insert("account_flags".into(), account_flags_json(account));
    Ok(Json::Object(result))
}

fn account_objects(inner: &Inner, params: &Json) -> Result<Json, RpcError> {
    let address = account_param(params)?;
    let (state, mut result) = select_state(inner, params)?;
    let id = address.account_id();
    let Some(account) = state.accounts.get(id) else {
        return Err(RpcError::new("actNotFound", 19, "Account not found."));
    };
    let wanted = params.get("type").and_then(Json::as_str);
    let objects: Vec<Json> = match wanted {
        None | Some("signer_list") => account
            .signer_list
            .iter()
            .map(|l| signer_list_json(id, l))
            .collect(),
        Some(_) => Vec::new(),
    };
    result.insert("account".into(), address.as_str().into());
    result.insert("account_objects".into(), objects.into());
    Ok(Json::Object(result))
}

/// `ledger_entry` by `payment_channel` id (the one entry type the watcher
/// reads this way); `entryNotFound` once the channel is closed.
fn ledger_entry(inner: &Inner, params: &Json) -> Result<Json, RpcError> {
    let Some(text) = params.get("payment_channel").and_then(Json::as_str) else {
        return Err(RpcError::not_supported("The devnet's ledger_entry reads payment_channel entries only."));
    };
    let id = agora_escrow::xrpl::ChannelId::parse(text)
        .map_err(|_| RpcError::new("malformedRequest", 31, "Malformed request."))?;
    let (state, mut result) = select_state(inner, params)?;
    let Some(channel) = state.channels.get(id.as_bytes()) else {
        return Err(RpcError::new("entryNotFound", 21, "Entry not found."));
    };
    let mut node = super::ledger::channel_fields(channel);
    node.insert("LedgerEntryType".into(), "PayChannel".into());
    node.insert("index".into(), id.to_hex().into());
    result.insert("index".into(), id.to_hex().into());
    result.insert("node".into(), Json::Object(node));
    Ok(Json::Object(result))
}

fn submit(devnet: &XrplDevnet, params: &Json) -> Result<Json, RpcError> {
    let Some(blob) = params.get("tx_blob").and_then(Json::as_str) else {
        if params.get("tx_json").is_some() {
            return Err(RpcError::not_supported(
                "The devnet does not sign: submit a signed tx_blob.",
            ));
        }
        return Err(RpcError::invalid_params("Missing field 'tx_blob'."));
    };
    let submitted = devnet.submit_detailed(blob).map_err(|e| RpcError {
        error: "invalidTransaction",
        code: -1,
        message: format!("fails local checks: {}", e.reason),
        exception: Some(format!("fails local checks: {}", e.reason)),
    })?;
    let result = ter(submitted.result);
    let mut tx_json = submitted.tx_json;
    tx_json["hash"] = submitted.hash.clone().into();
    let inner = devnet.inner();
    Ok(json!({
        "accepted": submitted.applied || submitted.held,
        "applied": submitted.applied,
        "broadcast": submitted.applied,
        "engine_result": result.name,
        "engine_result_code": result.code,
        "engine_result_message": result.message,
        "kept": submitted.applied || submitted.held,
        "queued": false,
        "open_ledger_cost": BASE_FEE_DROPS.to_string(),
        "tx_blob": blob.trim().to_uppercase(),
        "tx_json": tx_json,
        "validated_ledger_index": inner.last().index,
    }))
}

fn tx(inner: &Inner, params: &Json) -> Result<Json, RpcError> {
    let Some(hash) = params.get("transaction").and_then(Json::as_str) else {
        return Err(RpcError::invalid_params("Missing field 'transaction'."));
    };
    let hash = hash.to_uppercase();
    let version = api_version(params);
    let not_found = || RpcError::new("txnNotFound", 29, "Transaction not found.");
    if let Some(index) = inner.tx_locations.get(&hash) {
        let record = inner.ledger(*index).ok_or_else(not_found)?;
        let tx = record
            .txs
            .iter()
            .find(|t| t.hash == hash)
            .ok_or_else(not_found)?;
        let mut out = expanded_tx(tx, Some(record), version);
        if version < 2 {
            // API v1's `tx` calls the metadata `meta`.
            if let Some(m) = out.as_object_mut() {
                if let Some(meta) = m.remove("metaData") {
                    m.insert("meta".into(), meta);
                }
                m.insert("ledger_index".into(), record.index.into());
                m.insert("validated".into(), true.into());
            }
        }
        return Ok(out);
    }
    if let Some(tx) = inner.open_txs.iter().find(|t| t.hash == hash) {
        let mut out = tx.tx.as_object().cloned().unwrap_or_default();
        out.insert("hash".into(), hash.into());
        out.insert("validated".into(), false.into());
        return Ok(Json::Object(out));
    }
    Err(not_found())
}

fn faucet(devnet: &XrplDevnet, params: &Json) -> Result<Json, RpcError> {
    let Some(destination) = params.get("destination").and_then(Json::as_str) else {
        return Err(RpcError::invalid_params("Missing field 'destination'."));
    };
    let amount = match params.get("amount") {
        Some(Json::String(s)) => s.parse::<u64>().ok(),
        Some(Json::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| RpcError::invalid_params("'amount' must be a number of drops."))?;
    let hash = devnet
        .faucet(destination, amount)
        .map_err(|e| RpcError::invalid_params(e.to_string()))?;
    Ok(json!({"hash": hash, "engine_result": "tesSUCCESS", "amount": amount.to_string()}))
}
