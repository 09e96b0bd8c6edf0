//! The devnet's Esplora HTTP server: the subset of Blockstream's Esplora API
//! (electrs) Agora reads, answered the way electrs answers: hashes, heights and
//! hex as text, objects as electrs's JSON, 404 `Block not found` /
//! `Transaction not found`, `/tx/:txid/status` of an unknown transaction as
//! unconfirmed, and a refused broadcast as 400 with the node's RPC error
//! (`sendrawtransaction RPC error: {"code":-26,"message":"…"}`).
//!
//! Paths: `GET /blocks/tip/height`, `/blocks/tip/hash`, `/block-height/:height`,
//! `/block/:hash`, `/block/:hash/raw`, `/block/:hash/header`,
//! `/block/:hash/status`, `/block/:hash/txids`, `/tx/:txid`, `/tx/:txid/hex`,
//! `/tx/:txid/raw`, `/tx/:txid/status`, `/fee-estimates`,
//! `/address/:address/utxo`, `/mempool/txids`; `POST /tx`.

use std::str::FromStr;

use actix_web::{web, HttpResponse};
use bitcoin::consensus::encode::{deserialize_hex, serialize, serialize_hex};
use bitcoin::{Address, Amount, BlockHash, Network, Transaction, TxOut, Txid};
use serde_json::{json, Value};

use super::chain::{Chain, StoredBlock, TxPlace};
use super::validate::{ScriptKind, DEFAULT_MAX_FEE_RATE_SAT_PER_KVB};
use super::BitcoinDevnet;

/// The confirmation targets electrs answers in `/fee-estimates`.
const FEE_TARGETS: [u16; 28] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 144,
    504, 1008,
];

type Devnet = web::Data<BitcoinDevnet>;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/blocks/tip/height", web::get().to(tip_height))
        .route("/blocks/tip/hash", web::get().to(tip_hash))
        .route("/block-height/{height}", web::get().to(block_at_height))
        .route("/block/{hash}", web::get().to(block))
        .route("/block/{hash}/raw", web::get().to(block_raw))
        .route("/block/{hash}/header", web::get().to(block_header))
        .route("/block/{hash}/status", web::get().to(block_status))
        .route("/block/{hash}/txids", web::get().to(block_txids))
        .route("/tx", web::post().to(broadcast))
        .route("/tx/{txid}", web::get().to(tx))
        .route("/tx/{txid}/hex", web::get().to(tx_hex))
        .route("/tx/{txid}/raw", web::get().to(tx_raw))
        .route("/tx/{txid}/status", web::get().to(tx_status))
        .route("/fee-estimates", web::get().to(fee_estimates))
        .route("/address/{address}/utxo", web::get().to(address_utxo))
        .route("/mempool/txids", web::get().to(mempool_txids));
}

fn text(body: String) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body(body)
}

fn not_found(what: &str) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body(format!("{what} not found"))
}

fn bad_request(reason: String) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain")
        .body(reason)
}

fn parse<T: FromStr>(text: &str) -> Result<T, HttpResponse>
where
    T::Err: std::fmt::Display,
{
    T::from_str(text).map_err(|e| bad_request(format!("Invalid hex string: {e}")))
}

async fn tip_height(devnet: Devnet) -> HttpResponse {
    text(devnet.chain().height().to_string())
}

async fn tip_hash(devnet: Devnet) -> HttpResponse {
    text(devnet.chain().tip_hash().to_string())
}

async fn block_at_height(devnet: Devnet, height: web::Path<String>) -> HttpResponse {
    let Ok(height) = height.parse::<u64>() else {
        return bad_request(format!("Invalid height: {height}"));
    };
    match devnet.chain().hash_at(height) {
        Some(hash) => text(hash.to_string()),
        None => not_found("Block"),
    }
}

/// Runs `answer` on the stored block `hash` names, or answers 400/404.
fn with_block(
    devnet: &Devnet,
    hash: &str,
    answer: impl FnOnce(&Chain, &StoredBlock) -> HttpResponse,
) -> HttpResponse {
    let hash: BlockHash = match parse(hash) {
        Ok(hash) => hash,
        Err(response) => return response,
    };
    let chain = devnet.chain();
    match chain.block(&hash) {
        Some(stored) => answer(&chain, stored),
        None => not_found("Block"),
    }
}

async fn block(devnet: Devnet, hash: web::Path<String>) -> HttpResponse {
    with_block(&devnet, &hash, |chain, stored| {
        let header = &stored.block.header;
        let hash = header.block_hash();
        let previous = (stored.height > 0).then(|| header.prev_blockhash.to_string());
        HttpResponse::Ok().json(json!({
            "id": hash.to_string(),
            "height": stored.height,
            "version": header.version.to_consensus(),
            "timestamp": header.time,
            "tx_count": stored.block.txdata.len(),
            "size": stored.block.total_size(),
            "weight": stored.block.weight().to_wu(),
            "merkle_root": header.merkle_root.to_string(),
            "previousblockhash": previous,
            "mediantime": chain.median_time_past(&hash),
            "nonce": header.nonce,
            "bits": header.bits.to_consensus(),
            "difficulty": header.difficulty_float(),
        }))
    })
}

async fn block_raw(devnet: Devnet, hash: web::Path<String>) -> HttpResponse {
    with_block(&devnet, &hash, |_, stored| {
        HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(serialize(&stored.block))
    })
}

async fn block_header(devnet: Devnet, hash: web::Path<String>) -> HttpResponse {
    with_block(&devnet, &hash, |_, stored| {
        text(serialize_hex(&stored.block.header))
    })
}

async fn block_txids(devnet: Devnet, hash: web::Path<String>) -> HttpResponse {
    with_block(&devnet, &hash, |_, stored| {
        let txids: Vec<String> = stored
            .block
            .txdata
            .iter()
            .map(|t| t.compute_txid().to_string())
            .collect();
        HttpResponse::Ok().json(txids)
    })
}

async fn block_status(devnet: Devnet, hash: web::Path<String>) -> HttpResponse {
    let hash: BlockHash = match parse(&hash) {
        Ok(hash) => hash,
        Err(response) => return response,
    };
    let chain = devnet.chain();
    // electrs answers an unknown block like a stale one.
    let status = match chain.block(&hash) {
        Some(stored) if chain.is_active(stored) => json!({
            "in_best_chain": true,
            "height": stored.height,
            "next_best": chain.next_active(stored).map(|h| h.to_string()),
        }),
        _ => json!({"in_best_chain": false, "height": null, "next_best": null}),
    };
    HttpResponse::Ok().json(status)
}

/// Runs `answer` on the transaction `txid` names, or answers 400/404.
fn with_tx(
    devnet: &Devnet,
    txid: &str,
    answer: impl FnOnce(&Chain, &TxPlace<'_>) -> HttpResponse,
) -> HttpResponse {
    let txid: Txid = match parse(txid) {
        Ok(txid) => txid,
        Err(response) => return response,
    };
    let chain = devnet.chain();
    match chain.find_tx(&txid) {
        Some(place) => answer(&chain, &place),
        None => not_found("Transaction"),
    }
}

fn status_json(place: &TxPlace<'_>) -> Value {
    match place {
        TxPlace::Block { block, .. } => json!({
            "confirmed": true,
            "block_height": block.height,
            "block_hash": block.block.block_hash().to_string(),
            "block_time": block.block.header.time,
        }),
        TxPlace::Mempool(_) => json!({"confirmed": false}),
    }
}

fn txout_json(output: &TxOut) -> Value {
    let script = &output.script_pubkey;
    let mut value = json!({
        "scriptpubkey": hex::encode(script.as_bytes()),
        "scriptpubkey_asm": script.to_asm_string(),
        "scriptpubkey_type": ScriptKind::of(script).esplora_name(),
        "value": output.value.to_sat(),
    });
    if let (Some(object), Ok(address)) = (
        value.as_object_mut(),
        Address::from_script(script, Network::Regtest),
    ) {
        object.insert("scriptpubkey_address".into(), json!(address.to_string()));
    }
    value
}

fn tx_json(chain: &Chain, place: &TxPlace<'_>) -> Value {
    let tx: &Transaction = place.tx();
    let coinbase = tx.is_coinbase();
    let mut value_in = Some(Amount::ZERO);
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let prevout = if coinbase {
                None
            } else {
                chain.output(&input.previous_output)
            };
            value_in = match (&prevout, value_in) {
                (Some(o), Some(sum)) => sum.checked_add(o.value),
                _ => None,
            };
            let mut entry = json!({
                "txid": input.previous_output.txid.to_string(),
                "vout": input.previous_output.vout,
                "prevout": prevout.as_ref().map(txout_json),
                "scriptsig": hex::encode(input.script_sig.as_bytes()),
                "scriptsig_asm": input.script_sig.to_asm_string(),
                "is_coinbase": coinbase,
                "sequence": input.sequence.0,
            });
            if let Some(object) = entry.as_object_mut() {
                if !input.witness.is_empty() {
                    let items: Vec<String> = input.witness.iter().map(hex::encode).collect();
                    object.insert("witness".into(), json!(items));
                }
            }
            entry
        })
        .collect();
    let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
    let fee = if coinbase {
        Some(0)
    } else {
        value_in
            .and_then(|v| v.checked_sub(value_out))
            .map(Amount::to_sat)
    };
    json!({
        "txid": tx.compute_txid().to_string(),
        "version": tx.version.0,
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": tx.output.iter().map(txout_json).collect::<Vec<_>>(),
        "size": tx.total_size(),
        "weight": tx.weight().to_wu(),
        "fee": fee,
        "status": status_json(place),
    })
}

async fn tx(devnet: Devnet, txid: web::Path<String>) -> HttpResponse {
    with_tx(&devnet, &txid, |chain, place| {
        HttpResponse::Ok().json(tx_json(chain, place))
    })
}

async fn tx_hex(devnet: Devnet, txid: web::Path<String>) -> HttpResponse {
    with_tx(&devnet, &txid, |_, place| text(serialize_hex(place.tx())))
}

async fn tx_raw(devnet: Devnet, txid: web::Path<String>) -> HttpResponse {
    with_tx(&devnet, &txid, |_, place| {
        HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(serialize(place.tx()))
    })
}

async fn tx_status(devnet: Devnet, txid: web::Path<String>) -> HttpResponse {
    let txid: Txid = match parse(&txid) {
        Ok(txid) => txid,
        Err(response) => return response,
    };
    let chain = devnet.chain();
    // electrs cannot tell an unknown transaction from an unconfirmed one here.
    let status = chain
        .find_tx(&txid)
        .map_or_else(|| json!({"confirmed": false}), |place| status_json(&place));
    HttpResponse::Ok().json(status)
}

fn rpc_error(code: i64, message: &str) -> HttpResponse {
    bad_request(format!(
        "sendrawtransaction RPC error: {}",
        json!({"code": code, "message": message})
    ))
}

async fn broadcast(devnet: Devnet, body: web::Bytes) -> HttpResponse {
    let decoded = std::str::from_utf8(&body)
        .ok()
        .and_then(|hex| deserialize_hex::<Transaction>(hex.trim()).ok());
    let Some(tx) = decoded else {
        return rpc_error(
            -22,
            "TX decode failed. Make sure the tx has at least one input.",
        );
    };
    let accepted = devnet
        .chain()
        .accept(&tx, Some(DEFAULT_MAX_FEE_RATE_SAT_PER_KVB));
    match accepted {
        Ok(txid) => text(txid.to_string()),
        Err(rejection) => rpc_error(rejection.code.rpc_code(), &rejection.reason),
    }
}

async fn fee_estimates(devnet: Devnet) -> HttpResponse {
    let rate = devnet.chain().fee_rate_sat_vb() as f64;
    let estimates: serde_json::Map<String, Value> = FEE_TARGETS
        .iter()
        .map(|t| (t.to_string(), json!(rate)))
        .collect();
    HttpResponse::Ok().json(estimates)
}

async fn address_utxo(devnet: Devnet, address: web::Path<String>) -> HttpResponse {
    let Ok(unchecked) = Address::from_str(&address) else {
        return bad_request("Invalid Bitcoin address".to_owned());
    };
    let Ok(address) = unchecked.require_network(Network::Regtest) else {
        return bad_request("Address on invalid network".to_owned());
    };
    let utxos: Vec<Value> = devnet
        .chain()
        .utxos_of(&address.script_pubkey())
        .into_iter()
        .map(|u| {
            let status = match u.block {
                Some((hash, height, time)) => json!({
                    "confirmed": true,
                    "block_height": height,
                    "block_hash": hash.to_string(),
                    "block_time": time,
                }),
                None => json!({"confirmed": false}),
            };
            json!({
                "txid": u.outpoint.txid.to_string(),
                "vout": u.outpoint.vout,
                "status": status,
                "value": u.value.to_sat(),
            })
        })
        .collect();
    HttpResponse::Ok().json(utxos)
}

async fn mempool_txids(devnet: Devnet) -> HttpResponse {
    let txids: Vec<String> = devnet
        .chain()
        .mempool_txids()
        .iter()
        .map(ToString::to_string)
        .collect();
    HttpResponse::Ok().json(txids)
}
