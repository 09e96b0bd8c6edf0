//! The devnet's Bitcoin Core JSON-RPC server: the subset Agora's Bitcoin source
//! and tools call, with Core's answers, error codes and HTTP statuses.
//!
//! Like Core: POST `/` only; HTTP Basic auth when configured (401 otherwise);
//! JSON-RPC 1.0-style requests get errors with HTTP 500 (404 for an unknown
//! method, 400 for a malformed request), `"jsonrpc": "2.0"` requests always get
//! HTTP 200 (Core 28); batches are arrays; parameters by position or by name.
//!
//! Methods: `getblockchaininfo`, `getblockcount`, `getbestblockhash`,
//! `getblockhash`, `getblock`, `getblockheader`, `getrawtransaction`,
//! `getrawmempool`, `sendrawtransaction`, `estimatesmartfee`,
//! `generatetoaddress`, and the devnet's own `agora_faucet [address, sats]` →
//! txid and `agora_reorg [nblocks, drop?]` → the new block hashes.

use std::str::FromStr;

use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, BlockHash, Network, Transaction, Txid};
use serde_json::{json, Map, Value};

use super::chain::{Chain, StoredBlock, TxPlace};
use super::validate::{ScriptKind, DEFAULT_MAX_FEE_RATE_SAT_PER_KVB};
use super::{BitcoinDevnet, DevnetError};

// Core's error codes (`src/rpc/protocol.h`).
const MISC_ERROR: i64 = -1;
const TYPE_ERROR: i64 = -3;
const INVALID_ADDRESS_OR_KEY: i64 = -5;
const WALLET_INSUFFICIENT_FUNDS: i64 = -6;
const INVALID_PARAMETER: i64 = -8;
const DESERIALIZATION_ERROR: i64 = -22;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const PARSE_ERROR: i64 = -32700;

/// Largest `generatetoaddress`/`agora_reorg` request served in one call, so one
/// request cannot hold the chain's lock for minutes.
const MAX_BLOCKS_PER_CALL: u64 = 10_000;

pub(super) struct RpcState {
    devnet: BitcoinDevnet,
    auth: Option<(String, String)>,
}

impl RpcState {
    pub(super) fn new(devnet: BitcoinDevnet, auth: Option<(String, String)>) -> Self {
        Self { devnet, auth }
    }

    fn authorized(&self, request: &HttpRequest) -> bool {
        let Some((user, password)) = &self.auth else {
            return true;
        };
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            });
        let expected = format!("{user}:{password}");
        presented.is_some_and(|p| constant_time_eq(&p, expected.as_bytes()))
    }
}

/// Compares without returning early, so timing does not reveal how much of a
/// guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::post().to(handle))
            .default_service(web::to(only_post)),
    );
}

async fn only_post() -> HttpResponse {
    HttpResponse::MethodNotAllowed().body("JSONRPC server handles only POST requests")
}

async fn handle(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<RpcState>,
) -> HttpResponse {
    if !state.authorized(&request) {
        return HttpResponse::Unauthorized()
            .insert_header((WWW_AUTHENTICATE, "Basic realm=\"jsonrpc\""))
            .finish();
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        let (body, status) = reply(
            Protocol::Legacy,
            &Value::Null,
            Err(RpcError::new(PARSE_ERROR, "Parse error")),
        );
        return HttpResponse::build(status).json(body);
    };
    match parsed {
        Value::Array(batch) => {
            let replies: Vec<Value> = batch
                .iter()
                .filter_map(|r| state.answer(r))
                .map(|(body, _)| body)
                .collect();
            HttpResponse::Ok().json(replies)
        }
        single => match state.answer(&single) {
            Some((body, status)) => HttpResponse::build(status).json(body),
            None => HttpResponse::NoContent().finish(),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Legacy,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn type_error(value: &Value, expected: &str) -> Self {
        Self::new(
            TYPE_ERROR,
            format!(
                "JSON value of type {} is not of expected type {expected}",
                type_name(value)
            ),
        )
    }
}

impl From<DevnetError> for RpcError {
    fn from(e: DevnetError) -> Self {
        let code = match &e {
            DevnetError::Rejected(r) => return RpcError::new(r.code.rpc_code(), r.reason.clone()),
            DevnetError::InsufficientFunds { .. } => WALLET_INSUFFICIENT_FUNDS,
            DevnetError::WrongNetwork(_) => INVALID_ADDRESS_OR_KEY,
            DevnetError::Wallet(_) => MISC_ERROR,
            DevnetError::Dust { .. }
            | DevnetError::EmptyReorg
            | DevnetError::ReorgTooDeep { .. }
            | DevnetError::NotReorgable { .. } => INVALID_PARAMETER,
        };
        RpcError::new(code, e.to_string())
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn reply(protocol: Protocol, id: &Value, result: Result<Value, RpcError>) -> (Value, StatusCode) {
    match (protocol, result) {
        (Protocol::Legacy, Ok(result)) => (
            json!({"result": result, "error": null, "id": id}),
            StatusCode::OK,
        ),
        (Protocol::Legacy, Err(e)) => {
            let status = match e.code {
                INVALID_REQUEST => StatusCode::BAD_REQUEST,
                METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (
                json!({"result": null, "error": {"code": e.code, "message": e.message}, "id": id}),
                status,
            )
        }
        (Protocol::V2, Ok(result)) => (
            json!({"jsonrpc": "2.0", "result": result, "id": id}),
            StatusCode::OK,
        ),
        (Protocol::V2, Err(e)) => (
            json!({"jsonrpc": "2.0", "error": {"code": e.code, "message": e.message}, "id": id}),
            StatusCode::OK,
        ),
    }
}

impl RpcState {
    /// The reply to one request, `None` for a JSON-RPC 2.0 notification.
    fn answer(&self, request: &Value) -> Option<(Value, StatusCode)> {
        let Some(object) = request.as_object() else {
            return Some(reply(
                Protocol::Legacy,
                &Value::Null,
                Err(RpcError::new(INVALID_REQUEST, "Invalid Request object")),
            ));
        };
        let id = object.get("id").cloned().unwrap_or(Value::Null);
        let protocol = match object.get("jsonrpc") {
            None => Protocol::Legacy,
            Some(Value::String(v)) if v == "1.0" => Protocol::Legacy,
            Some(Value::String(v)) if v == "2.0" => Protocol::V2,
            Some(_) => {
                return Some(reply(
                    Protocol::Legacy,
                    &id,
                    Err(RpcError::new(
                        INVALID_REQUEST,
                        "JSON-RPC version not supported",
                    )),
                ))
            }
        };
        let result = object
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::new(INVALID_REQUEST, "Method must be a string"))
            .and_then(|method| {
                let params = Params::parse(method, object.get("params"))?;
                self.dispatch(method, &params)
            });
        if protocol == Protocol::V2 && !object.contains_key("id") {
            return None;
        }
        Some(reply(protocol, &id, result))
    }

    fn dispatch(&self, method: &str, params: &Params) -> Result<Value, RpcError> {
        let devnet = &self.devnet;
        match method {
            "getblockchaininfo" => Ok(blockchain_info(&devnet.chain())),
            "getblockcount" => Ok(json!(devnet.chain().height())),
            "getbestblockhash" => Ok(json!(devnet.chain().tip_hash().to_string())),
            "getblockhash" => {
                let value = params.required(0)?;
                let height = value
                    .as_i64()
                    .ok_or_else(|| RpcError::type_error(value, "number"))?;
                u64::try_from(height)
                    .ok()
                    .and_then(|h| devnet.chain().hash_at(h))
                    .map(|h| json!(h.to_string()))
                    .ok_or_else(|| RpcError::new(INVALID_PARAMETER, "Block height out of range"))
            }
            "getblock" => {
                let hash: BlockHash = parse_hash(params.required(0)?, "blockhash")?;
                let verbosity = params.verbosity(1, 1)?;
                let chain = devnet.chain();
                let stored = chain
                    .block(&hash)
                    .ok_or_else(|| RpcError::new(INVALID_ADDRESS_OR_KEY, "Block not found"))?;
                Ok(match verbosity {
                    0 => json!(serialize_hex(&stored.block)),
                    1 => block_json(&chain, stored, false),
                    _ => block_json(&chain, stored, true),
                })
            }
            "getblockheader" => {
                let hash: BlockHash = parse_hash(params.required(0)?, "blockhash")?;
                let verbose = params.boolean(1)?.unwrap_or(true);
                let chain = devnet.chain();
                let stored = chain
                    .block(&hash)
                    .ok_or_else(|| RpcError::new(INVALID_ADDRESS_OR_KEY, "Block not found"))?;
                Ok(if verbose {
                    Value::Object(header_json(&chain, stored))
                } else {
                    json!(serialize_hex(&stored.block.header))
                })
            }
            "getrawtransaction" => get_raw_transaction(&devnet.chain(), params),
            "getrawmempool" => {
                if params.verbosity(0, 0)? != 0 {
                    return Err(RpcError::new(
                        INVALID_PARAMETER,
                        "the devnet answers getrawmempool with txids only",
                    ));
                }
                let txids: Vec<String> = devnet
                    .chain()
                    .mempool_txids()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                Ok(json!(txids))
            }
            "sendrawtransaction" => {
                let hex = params.string(0)?;
                let tx: Transaction = deserialize_hex(hex).map_err(|_| {
                    RpcError::new(
                        DESERIALIZATION_ERROR,
                        "TX decode failed. Make sure the tx has at least one input.",
                    )
                })?;
                let max_fee_rate = match params.get(1) {
                    None => Some(DEFAULT_MAX_FEE_RATE_SAT_PER_KVB),
                    Some(value) => {
                        let btc_per_kvb = value
                            .as_f64()
                            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                            .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                            .ok_or_else(|| RpcError::type_error(value, "number"))?;
                        // 0 means no limit, as in Core.
                        Some((btc_per_kvb * 1e8).round() as u64).filter(|r| *r > 0)
                    }
                };
                let txid = devnet
                    .chain()
                    .accept(&tx, max_fee_rate)
                    .map_err(|r| RpcError::new(r.code.rpc_code(), r.reason))?;
                Ok(json!(txid.to_string()))
            }
            "estimatesmartfee" => {
                let target = params.unsigned(0)?;
                if !(1..=1008).contains(&target) {
                    return Err(RpcError::new(
                        INVALID_PARAMETER,
                        "Invalid conf_target, must be between 1 and 1008",
                    ));
                }
                if let Some(mode) = params.get(1) {
                    let known = mode.as_str().is_some_and(|m| {
                        ["unset", "economical", "conservative"]
                            .contains(&m.to_ascii_lowercase().as_str())
                    });
                    if !known {
                        return Err(RpcError::new(
                            INVALID_PARAMETER,
                            "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\"",
                        ));
                    }
                }
                let sat_per_kvb = devnet.chain().fee_rate_sat_vb().saturating_mul(1000);
                // Core never answers a target below 2 blocks.
                Ok(json!({"feerate": sat_per_kvb as f64 / 1e8, "blocks": target.max(2)}))
            }
            "generatetoaddress" => {
                let n = params.block_count(0)?;
                let address = parse_address(params.string(1)?)?;
                let hashes = devnet.mine_to(&address, n)?;
                Ok(json!(hashes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()))
            }
            "agora_faucet" => {
                let address = parse_address(params.string(0)?)?;
                let sats = params.unsigned(1)?;
                Ok(json!(devnet.faucet(&address, sats)?.to_string()))
            }
            "agora_reorg" => {
                let n = params.block_count(0)?;
                let drop = match params.get(1) {
                    None => Vec::new(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|t| parse_hash::<Txid>(t, "txid"))
                        .collect::<Result<_, _>>()?,
                    Some(other) => return Err(RpcError::type_error(other, "array")),
                };
                let hashes = devnet.reorg(n, &drop)?;
                Ok(json!(hashes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()))
            }
            _ => Err(RpcError::new(METHOD_NOT_FOUND, "Method not found")),
        }
    }
}

/// Positional parameters, named ones already put in their positions.
struct Params {
    method: String,
    names: &'static [&'static str],
    values: Vec<Value>,
}

fn param_names(method: &str) -> &'static [&'static str] {
    match method {
        "getblockhash" => &["height"],
        "getblock" => &["blockhash", "verbosity"],
        "getblockheader" => &["blockhash", "verbose"],
        "getrawtransaction" => &["txid", "verbose", "blockhash"],
        "getrawmempool" => &["verbose", "mempool_sequence"],
        "sendrawtransaction" => &["hexstring", "maxfeerate", "maxburnamount"],
        "estimatesmartfee" => &["conf_target", "estimate_mode"],
        "generatetoaddress" => &["nblocks", "address", "maxtries"],
        "agora_faucet" => &["address", "sats"],
        "agora_reorg" => &["nblocks", "drop"],
        _ => &[],
    }
}

impl Params {
    fn parse(method: &str, raw: Option<&Value>) -> Result<Self, RpcError> {
        let names = param_names(method);
        let values = match raw {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(values)) => values.clone(),
            Some(Value::Object(named)) => {
                let mut values = vec![Value::Null; names.len()];
                for (key, value) in named {
                    let slot = names
                        .iter()
                        .position(|n| n == key)
                        .and_then(|i| values.get_mut(i))
                        .ok_or_else(|| {
                            RpcError::new(
                                INVALID_PARAMETER,
                                format!("Unknown named parameter {key}"),
                            )
                        })?;
                    *slot = value.clone();
                }
                values
            }
            Some(_) => {
                return Err(RpcError::new(
                    INVALID_REQUEST,
                    "Params must be an array or object",
                ))
            }
        };
        if values.len() > names.len() && !values[names.len()..].iter().all(Value::is_null) {
            return Err(RpcError::new(
                MISC_ERROR,
                format!("{method}: too many parameters (at most {})", names.len()),
            ));
        }
        Ok(Self {
            method: method.to_owned(),
            names,
            values,
        })
    }

    /// Parameter `i`, `None` when absent or null (Core's "use the default").
    fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i).filter(|v| !v.is_null())
    }

    fn required(&self, i: usize) -> Result<&Value, RpcError> {
        self.get(i).ok_or_else(|| {
            let name = self.names.get(i).copied().unwrap_or("argument");
            RpcError::new(
                MISC_ERROR,
                format!("{}: missing required parameter '{name}'", self.method),
            )
        })
    }

    fn string(&self, i: usize) -> Result<&str, RpcError> {
        let value = self.required(i)?;
        value
            .as_str()
            .ok_or_else(|| RpcError::type_error(value, "string"))
    }

    fn unsigned(&self, i: usize) -> Result<u64, RpcError> {
        let value = self.required(i)?;
        value.as_u64().ok_or_else(|| match value.as_i64() {
            Some(_) => RpcError::new(
                INVALID_PARAMETER,
                format!("{} must not be negative", self.name(i)),
            ),
            None => RpcError::type_error(value, "number"),
        })
    }

    fn block_count(&self, i: usize) -> Result<u32, RpcError> {
        let n = self.unsigned(i)?;
        if n > MAX_BLOCKS_PER_CALL {
            return Err(RpcError::new(
                INVALID_PARAMETER,
                format!("the devnet mines at most {MAX_BLOCKS_PER_CALL} blocks per call"),
            ));
        }
        u32::try_from(n).map_err(|_| RpcError::new(INVALID_PARAMETER, "too many blocks"))
    }

    fn boolean(&self, i: usize) -> Result<Option<bool>, RpcError> {
        self.get(i)
            .map(|v| v.as_bool().ok_or_else(|| RpcError::type_error(v, "bool")))
            .transpose()
    }

    /// A verbosity given as a number or, as Core still accepts, a boolean.
    fn verbosity(&self, i: usize, default: u64) -> Result<u64, RpcError> {
        match self.get(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(u64::from(*b)),
            Some(v) => v.as_u64().ok_or_else(|| RpcError::type_error(v, "number")),
        }
    }

    fn name(&self, i: usize) -> &'static str {
        self.names.get(i).copied().unwrap_or("argument")
    }
}

/// A 64-hex-digit hash, with Core's messages for the wrong length or alphabet.
fn parse_hash<T: FromStr>(value: &Value, name: &str) -> Result<T, RpcError> {
    let text = value
        .as_str()
        .ok_or_else(|| RpcError::type_error(value, "string"))?;
    if text.len() != 64 {
        return Err(RpcError::new(
            INVALID_PARAMETER,
            format!(
                "{name} must be of length 64 (not {}, for '{text}')",
                text.len()
            ),
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RpcError::new(
            INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{text}')"),
        ));
    }
    T::from_str(text).map_err(|_| RpcError::new(INVALID_PARAMETER, format!("invalid {name}")))
}

fn parse_address(text: &str) -> Result<Address, RpcError> {
    Address::from_str(text)
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .ok_or_else(|| RpcError::new(INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))
}

fn get_raw_transaction(chain: &Chain, params: &Params) -> Result<Value, RpcError> {
    let txid: Txid = parse_hash(params.required(0)?, "txid")?;
    let verbosity = params.verbosity(1, 0)?;
    let (tx, block, in_block_param) = match params.get(2) {
        Some(value) => {
            let hash: BlockHash = parse_hash(value, "blockhash")?;
            let stored = chain
                .block(&hash)
                .ok_or_else(|| RpcError::new(INVALID_ADDRESS_OR_KEY, "Block hash not found"))?;
            let tx = stored
                .block
                .txdata
                .iter()
                .find(|t| t.compute_txid() == txid)
                .ok_or_else(|| {
                    RpcError::new(
                        INVALID_ADDRESS_OR_KEY,
                        "No such transaction found in the provided block. Use gettransaction for wallet transactions.",
                    )
                })?;
            (tx, Some(stored), true)
        }
        None => match chain.find_tx(&txid) {
            Some(TxPlace::Block { tx, block }) => (tx, Some(block), false),
            Some(TxPlace::Mempool(entry)) => (&entry.tx, None, false),
            None => {
                return Err(RpcError::new(
                    INVALID_ADDRESS_OR_KEY,
                    "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
                ))
            }
        },
    };
    if verbosity == 0 {
        return Ok(json!(serialize_hex(tx)));
    }
    let mut value = tx_json(tx);
    if let (Some(object), Some(stored)) = (value.as_object_mut(), block) {
        if in_block_param {
            object.insert("in_active_chain".into(), json!(chain.is_active(stored)));
        }
        object.insert(
            "blockhash".into(),
            json!(stored.block.block_hash().to_string()),
        );
        // As Core: a stale block's transaction has 0 confirmations and no times.
        let confirmations = chain.confirmations(stored).max(0);
        object.insert("confirmations".into(), json!(confirmations));
        if confirmations > 0 {
            object.insert("time".into(), json!(stored.block.header.time));
            object.insert("blocktime".into(), json!(stored.block.header.time));
        }
    }
    Ok(value)
}

/// Total work of the active chain up to `height`: every devnet block has
/// regtest's work of 2 (target 2^255).
fn chainwork(height: u32) -> String {
    format!("{:064x}", 2 * (u128::from(height) + 1))
}

fn blockchain_info(chain: &Chain) -> Value {
    let tip = chain.tip_hash();
    let height = chain.height();
    let (time, difficulty) = chain
        .block(&tip)
        .map(|s| (s.block.header.time, s.block.header.difficulty_float()))
        .unwrap_or_default();
    json!({
        "chain": "regtest",
        "blocks": height,
        "headers": height,
        "bestblockhash": tip.to_string(),
        "difficulty": difficulty,
        "time": time,
        "mediantime": chain.median_time_past(&tip),
        "verificationprogress": 1,
        "initialblockdownload": false,
        "chainwork": chainwork(height),
        "size_on_disk": 0,
        "pruned": false,
        "warnings": "",
    })
}

fn header_json(chain: &Chain, stored: &StoredBlock) -> Map<String, Value> {
    let header = &stored.block.header;
    let hash = header.block_hash();
    let mut object = Map::new();
    let mut put = |key: &str, value: Value| {
        object.insert(key.to_owned(), value);
    };
    put("hash", json!(hash.to_string()));
    put("confirmations", json!(chain.confirmations(stored)));
    put("height", json!(stored.height));
    put("version", json!(header.version.to_consensus()));
    put(
        "versionHex",
        json!(format!("{:08x}", header.version.to_consensus())),
    );
    put("merkleroot", json!(header.merkle_root.to_string()));
    put("time", json!(header.time));
    put("mediantime", json!(chain.median_time_past(&hash)));
    put("nonce", json!(header.nonce));
    put("bits", json!(format!("{:08x}", header.bits.to_consensus())));
    put("difficulty", json!(header.difficulty_float()));
    put("chainwork", json!(chainwork(stored.height)));
    put("nTx", json!(stored.block.txdata.len()));
    if stored.height > 0 {
        put(
            "previousblockhash",
            json!(header.prev_blockhash.to_string()),
        );
    }
    if let Some(next) = chain.next_active(stored) {
        put("nextblockhash", json!(next.to_string()));
    }
    object
}

fn block_json(chain: &Chain, stored: &StoredBlock, full_transactions: bool) -> Value {
    let mut object = header_json(chain, stored);
    let block = &stored.block;
    let base_size = block
        .txdata
        .iter()
        .map(Transaction::base_size)
        .sum::<usize>()
        + 80;
    object.insert("strippedsize".into(), json!(base_size));
    object.insert("size".into(), json!(block.total_size()));
    object.insert("weight".into(), json!(block.weight().to_wu()));
    let txs: Vec<Value> = block
        .txdata
        .iter()
        .map(|tx| {
            if full_transactions {
                tx_json(tx)
            } else {
                json!(tx.compute_txid().to_string())
            }
        })
        .collect();
    object.insert("tx".into(), json!(txs));
    Value::Object(object)
}

/// A transaction as Core's `decoderawtransaction` shows it, plus `hex`.
fn tx_json(tx: &Transaction) -> Value {
    let coinbase = tx.is_coinbase();
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let mut entry = if coinbase {
                json!({"coinbase": hex::encode(input.script_sig.as_bytes())})
            } else {
                json!({
                    "txid": input.previous_output.txid.to_string(),
                    "vout": input.previous_output.vout,
                    "scriptSig": {
                        "asm": input.script_sig.to_asm_string(),
                        "hex": hex::encode(input.script_sig.as_bytes()),
                    },
                })
            };
            if let Some(object) = entry.as_object_mut() {
                if !input.witness.is_empty() {
                    let items: Vec<String> = input.witness.iter().map(hex::encode).collect();
                    object.insert("txinwitness".into(), json!(items));
                }
                object.insert("sequence".into(), json!(input.sequence.0));
            }
            entry
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, output)| {
            let script = &output.script_pubkey;
            let mut script_json = json!({
                "asm": script.to_asm_string(),
                "hex": hex::encode(script.as_bytes()),
                "type": ScriptKind::of(script).core_name(),
            });
            if let (Some(object), Ok(address)) = (
                script_json.as_object_mut(),
                Address::from_script(script, Network::Regtest),
            ) {
                object.insert("address".into(), json!(address.to_string()));
            }
            json!({"value": output.value.to_btc(), "n": n, "scriptPubKey": script_json})
        })
        .collect();
    json!({
        "txid": tx.compute_txid().to_string(),
        "hash": tx.compute_wtxid().to_string(),
        "version": tx.version.0,
        "size": tx.total_size(),
        "vsize": tx.vsize(),
        "weight": tx.weight().to_wu(),
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": vout,
        "hex": serialize_hex(tx),
    })
}
