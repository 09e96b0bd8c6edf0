//! What the devnet's mempool accepts: the consensus rules and the standardness
//! policy Bitcoin Core applies to `sendrawtransaction`, as pure functions over a
//! transaction and the coins it spends. The reasons are Core's own reject strings,
//! so a client sees the same message from the devnet as from a real node.
//!
//! Scripts are run by Bitcoin Core's interpreter (`bitcoinconsensus`, through
//! the `bitcoin` crate). That library predates Taproot, so spends of Taproot
//! outputs are refused rather than accepted unchecked.

use std::collections::HashSet;

use bitcoin::consensus::encode;
use bitcoin::script::Instruction;
use bitcoin::transaction::Version;
use bitcoin::{Amount, Script, Transaction, WitnessVersion};

use super::chain::Coin;

/// A coinbase output is spendable this many blocks after its own.
pub(crate) const COINBASE_MATURITY: u32 = 100;
/// Consensus limit on a block's weight (and so on a transaction's base size).
pub(crate) const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
const MAX_STANDARD_SCRIPTSIG_SIZE: usize = 1_650;
/// `-datacarriersize` before Core 30: a standard OP_RETURN output script is at most this long.
const MAX_OP_RETURN_RELAY: usize = 83;
const MAX_STANDARD_P2WSH_SCRIPT_SIZE: usize = 3_600;
const MAX_STANDARD_P2WSH_STACK_ITEMS: usize = 100;
const MAX_STANDARD_P2WSH_STACK_ITEM_SIZE: usize = 80;
/// Core's `-minrelaytxfee` default, in sat/kvB.
const MIN_RELAY_FEE_SAT_PER_KVB: u64 = 1_000;
/// `sendrawtransaction`'s default `maxfeerate` (0.10 BTC/kvB), in sat/kvB.
pub(crate) const DEFAULT_MAX_FEE_RATE_SAT_PER_KVB: u64 = 10_000_000;
/// Core's default ancestor and descendant count limits of the mempool.
pub(crate) const MEMPOOL_PACKAGE_LIMIT: usize = 25;

const LOCKTIME_THRESHOLD: u32 = 500_000_000;
const SEQUENCE_FINAL: u32 = 0xffff_ffff;
const SEQUENCE_LOCKTIME_DISABLE_FLAG: u32 = 1 << 31;
const SEQUENCE_LOCKTIME_TYPE_FLAG: u32 = 1 << 22;
const SEQUENCE_LOCKTIME_MASK: u32 = 0x0000_ffff;
const SEQUENCE_LOCKTIME_GRANULARITY: u32 = 9;

// libbitcoinconsensus flags (`bitcoinconsensus::VERIFY_*`, not re-exported by `bitcoin`).
const VERIFY_P2SH: u32 = 1 << 0;
const VERIFY_DERSIG: u32 = 1 << 2;
const VERIFY_NULLDUMMY: u32 = 1 << 4;
const VERIFY_CHECKLOCKTIMEVERIFY: u32 = 1 << 9;
const VERIFY_CHECKSEQUENCEVERIFY: u32 = 1 << 10;
const VERIFY_WITNESS: u32 = 1 << 11;
/// Every flag libbitcoinconsensus knows: the soft forks active on regtest from genesis.
pub(crate) const SCRIPT_FLAGS: u32 = VERIFY_P2SH
    | VERIFY_DERSIG
    | VERIFY_NULLDUMMY
    | VERIFY_CHECKLOCKTIMEVERIFY
    | VERIFY_CHECKSEQUENCEVERIFY
    | VERIFY_WITNESS;

/// The JSON-RPC error code Core gives a refused transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// `RPC_VERIFY_ERROR` (-25): missing or spent inputs, fee above `maxfeerate`.
    Verify,
    /// `RPC_VERIFY_REJECTED` (-26): the transaction breaks a consensus or policy rule.
    Rejected,
    /// `RPC_VERIFY_ALREADY_IN_CHAIN` (-27): its outputs are already in the UTXO set.
    AlreadyInChain,
}

impl RejectCode {
    pub fn rpc_code(self) -> i64 {
        match self {
            RejectCode::Verify => -25,
            RejectCode::Rejected => -26,
            RejectCode::AlreadyInChain => -27,
        }
    }
}

/// Why the devnet refused a transaction, as Core would say it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub code: RejectCode,
    pub reason: String,
}

impl Rejection {
    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        Self {
            code: RejectCode::Rejected,
            reason: reason.into(),
        }
    }

    pub(crate) fn verify(reason: impl Into<String>) -> Self {
        Self {
            code: RejectCode::Verify,
            reason: reason.into(),
        }
    }

    pub(crate) fn already_in_chain() -> Self {
        Self {
            code: RejectCode::AlreadyInChain,
            reason: "Transaction outputs already in utxo set".to_owned(),
        }
    }
}

/// Output script templates, named as Core (`type`) and Esplora (`scriptpubkey_type`) name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptKind {
    P2pkh,
    P2sh,
    P2wpkh,
    P2wsh,
    P2tr,
    WitnessUnknown,
    Nulldata,
    NonStandard,
}

impl ScriptKind {
    pub(crate) fn of(script: &Script) -> Self {
        if script.is_p2pkh() {
            ScriptKind::P2pkh
        } else if script.is_p2sh() {
            ScriptKind::P2sh
        } else if script.is_p2wpkh() {
            ScriptKind::P2wpkh
        } else if script.is_p2wsh() {
            ScriptKind::P2wsh
        } else if script.is_p2tr() {
            ScriptKind::P2tr
        } else if script
            .witness_version()
            .is_some_and(|v| v != WitnessVersion::V0)
        {
            ScriptKind::WitnessUnknown
        } else if is_nulldata(script) {
            ScriptKind::Nulldata
        } else {
            ScriptKind::NonStandard
        }
    }

    pub(crate) fn core_name(self) -> &'static str {
        match self {
            ScriptKind::P2pkh => "pubkeyhash",
            ScriptKind::P2sh => "scripthash",
            ScriptKind::P2wpkh => "witness_v0_keyhash",
            ScriptKind::P2wsh => "witness_v0_scripthash",
            ScriptKind::P2tr => "witness_v1_taproot",
            ScriptKind::WitnessUnknown => "witness_unknown",
            ScriptKind::Nulldata => "nulldata",
            ScriptKind::NonStandard => "nonstandard",
        }
    }

    pub(crate) fn esplora_name(self) -> &'static str {
        match self {
            ScriptKind::P2pkh => "p2pkh",
            ScriptKind::P2sh => "p2sh",
            ScriptKind::P2wpkh => "v0_p2wpkh",
            ScriptKind::P2wsh => "v0_p2wsh",
            ScriptKind::P2tr => "v1_p2tr",
            ScriptKind::WitnessUnknown => "unknown",
            ScriptKind::Nulldata => "op_return",
            ScriptKind::NonStandard => "unknown",
        }
    }
}

/// OP_RETURN followed only by pushes, within the relay size limit.
fn is_nulldata(script: &Script) -> bool {
    let bytes = script.as_bytes();
    script.is_op_return()
        && bytes.len() <= MAX_OP_RETURN_RELAY
        && Script::from_bytes(&bytes[1..]).is_push_only()
}

/// Core's context-free `CheckTransaction`, plus the mempool's refusal of coinbases.
pub(crate) fn check_transaction(tx: &Transaction) -> Result<(), Rejection> {
    if tx.input.is_empty() {
        return Err(Rejection::rejected("bad-txns-vin-empty"));
    }
    if tx.output.is_empty() {
        return Err(Rejection::rejected("bad-txns-vout-empty"));
    }
    if (tx.base_size() as u64).saturating_mul(4) > MAX_BLOCK_WEIGHT {
        return Err(Rejection::rejected("bad-txns-oversize"));
    }
    let mut total = Amount::ZERO;
    for output in &tx.output {
        if output.value > Amount::MAX_MONEY {
            return Err(Rejection::rejected("bad-txns-vout-toolarge"));
        }
        total = total
            .checked_add(output.value)
            .filter(|t| *t <= Amount::MAX_MONEY)
            .ok_or_else(|| Rejection::rejected("bad-txns-txouttotal-toolarge"))?;
    }
    let mut seen = HashSet::with_capacity(tx.input.len());
    if !tx.input.iter().all(|i| seen.insert(i.previous_output)) {
        return Err(Rejection::rejected("bad-txns-inputs-duplicate"));
    }
    if tx.is_coinbase() {
        return Err(Rejection::rejected("coinbase"));
    }
    if tx.input.iter().any(|i| i.previous_output.is_null()) {
        return Err(Rejection::rejected("bad-txns-prevout-null"));
    }
    Ok(())
}

/// Core's `IsStandardTx` and the minimum size: what a default node relays.
/// Stricter than Core in one way: bare multisig and P2PK outputs are refused.
pub(crate) fn check_standard(tx: &Transaction) -> Result<(), Rejection> {
    if !matches!(tx.version, Version::ONE | Version::TWO) {
        return Err(Rejection::rejected("version"));
    }
    if tx.weight().to_wu() > MAX_STANDARD_TX_WEIGHT {
        return Err(Rejection::rejected("tx-size"));
    }
    for input in &tx.input {
        if input.script_sig.len() > MAX_STANDARD_SCRIPTSIG_SIZE {
            return Err(Rejection::rejected("scriptsig-size"));
        }
        if !input.script_sig.is_push_only() {
            return Err(Rejection::rejected("scriptsig-not-pushonly"));
        }
    }
    let mut op_returns = 0;
    for output in &tx.output {
        match ScriptKind::of(&output.script_pubkey) {
            ScriptKind::NonStandard => return Err(Rejection::rejected("scriptpubkey")),
            ScriptKind::Nulldata => op_returns += 1,
            _ => {}
        }
    }
    if op_returns > 1 {
        return Err(Rejection::rejected("multi-op-return"));
    }
    if tx
        .output
        .iter()
        .any(|o| o.value < o.script_pubkey.minimal_non_dust())
    {
        return Err(Rejection::rejected("dust"));
    }
    if tx.base_size() < MIN_STANDARD_TX_NONWITNESS_SIZE {
        return Err(Rejection::rejected("tx-size-small"));
    }
    Ok(())
}

/// Core's `IsFinalTx`: nLockTime against the height of the block that would
/// include `tx` and the median time past of its parent.
pub(crate) fn is_final(tx: &Transaction, block_height: u32, parent_mtp: u32) -> bool {
    let lock = tx.lock_time.to_consensus_u32();
    if lock == 0 {
        return true;
    }
    let limit = if lock < LOCKTIME_THRESHOLD {
        block_height
    } else {
        parent_mtp
    };
    lock < limit || tx.input.iter().all(|i| i.sequence.0 == SEQUENCE_FINAL)
}

/// BIP68 relative lock-times (Core's `CalculateSequenceLocks` +
/// `EvaluateSequenceLocks`) for inclusion in a block at `block_height` whose
/// parent has median time past `parent_mtp`. `coin_heights[i]` is the height of
/// the block holding the output input `i` spends (a mempool parent counts as
/// `block_height`); `mtp_at(h)` is the median time past of the active block at `h`.
pub(crate) fn sequence_locks_satisfied(
    tx: &Transaction,
    coin_heights: &[u32],
    block_height: u32,
    parent_mtp: u32,
    mtp_at: impl Fn(u32) -> u32,
) -> bool {
    // Core compares the version as unsigned: negative versions enforce BIP68 too.
    if (tx.version.0 as u32) < 2 {
        return true;
    }
    let mut min_height: i64 = -1;
    let mut min_time: i64 = -1;
    for (input, &coin_height) in tx.input.iter().zip(coin_heights) {
        let sequence = input.sequence.0;
        if sequence & SEQUENCE_LOCKTIME_DISABLE_FLAG != 0 {
            continue;
        }
        let value = i64::from(sequence & SEQUENCE_LOCKTIME_MASK);
        if sequence & SEQUENCE_LOCKTIME_TYPE_FLAG != 0 {
            let coin_time = i64::from(mtp_at(coin_height.saturating_sub(1)));
            min_time = min_time.max(coin_time + (value << SEQUENCE_LOCKTIME_GRANULARITY) - 1);
        } else {
            min_height = min_height.max(i64::from(coin_height) + value - 1);
        }
    }
    min_height < i64::from(block_height) && min_time < i64::from(parent_mtp)
}

/// Core's `Consensus::CheckTxInputs`: coinbase maturity and amounts. Returns the fee.
pub(crate) fn check_inputs(
    tx: &Transaction,
    coins: &[Coin],
    spend_height: u32,
) -> Result<Amount, Rejection> {
    let mut value_in = Amount::ZERO;
    for coin in coins {
        let depth = spend_height.saturating_sub(coin.height);
        if coin.coinbase && depth < COINBASE_MATURITY {
            return Err(Rejection::rejected(format!(
                "bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth {depth}"
            )));
        }
        value_in = value_in
            .checked_add(coin.output.value)
            .filter(|v| *v <= Amount::MAX_MONEY)
            .ok_or_else(|| Rejection::rejected("bad-txns-inputvalues-outofrange"))?;
    }
    // `check_transaction` bounded the sum of the outputs by MAX_MONEY.
    let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
    value_in.checked_sub(value_out).ok_or_else(|| {
        Rejection::rejected(format!(
            "bad-txns-in-belowout, value in ({}) < value out ({})",
            value_in.to_btc(),
            value_out.to_btc()
        ))
    })
}

/// Core's `AreInputsStandard` and `IsWitnessStandard`, for the script types this
/// devnet can verify.
pub(crate) fn check_inputs_standard(tx: &Transaction, coins: &[Coin]) -> Result<(), Rejection> {
    for (input, coin) in tx.input.iter().zip(coins) {
        let spent = &coin.output.script_pubkey;
        if spent.is_p2tr() {
            return Err(Rejection::rejected(
                "devnet-cannot-verify-taproot (libbitcoinconsensus has no Taproot support, \
                 so this devnet refuses Taproot spends instead of accepting them unchecked)",
            ));
        }
        if spent
            .witness_version()
            .is_some_and(|v| v != WitnessVersion::V0)
        {
            return Err(Rejection::rejected("bad-txns-nonstandard-inputs"));
        }
        if input.witness.is_empty() {
            continue;
        }
        // The witness program: the output script itself, or the redeem script of P2SH-wrapped segwit.
        let program = if spent.is_p2sh() {
            match input.script_sig.instructions().last() {
                Some(Ok(Instruction::PushBytes(bytes))) => Script::from_bytes(bytes.as_bytes()),
                _ => return Err(Rejection::rejected("bad-witness-nonstandard")),
            }
        } else {
            spent.as_script()
        };
        if !program.is_witness_program() {
            return Err(Rejection::rejected("bad-witness-nonstandard"));
        }
        if program.is_p2wsh() {
            let items: Vec<&[u8]> = input.witness.iter().collect();
            let Some((script, stack)) = items.split_last() else {
                return Err(Rejection::rejected("bad-witness-nonstandard"));
            };
            if script.len() > MAX_STANDARD_P2WSH_SCRIPT_SIZE
                || stack.len() > MAX_STANDARD_P2WSH_STACK_ITEMS
                || stack
                    .iter()
                    .any(|item| item.len() > MAX_STANDARD_P2WSH_STACK_ITEM_SIZE)
            {
                return Err(Rejection::rejected("bad-witness-nonstandard"));
            }
        }
    }
    Ok(())
}

/// The relay floor: 1 sat/vB.
pub(crate) fn check_min_relay_fee(tx: &Transaction, fee: Amount) -> Result<(), Rejection> {
    let vsize = tx.vsize() as u64;
    let min = MIN_RELAY_FEE_SAT_PER_KVB.saturating_mul(vsize) / 1000;
    if fee.to_sat() < min {
        return Err(Rejection::rejected(format!(
            "min relay fee not met, {} < {min}",
            fee.to_sat()
        )));
    }
    Ok(())
}

/// `sendrawtransaction`'s guard against fat-fingered fees.
pub(crate) fn check_max_fee(
    tx: &Transaction,
    fee: Amount,
    max_sat_per_kvb: u64,
) -> Result<(), Rejection> {
    let max = u128::from(max_sat_per_kvb) * tx.vsize() as u128 / 1000;
    if u128::from(fee.to_sat()) > max {
        return Err(Rejection::verify(
            "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)",
        ));
    }
    Ok(())
}

/// Every input through Bitcoin Core's script interpreter with [`SCRIPT_FLAGS`].
pub(crate) fn verify_scripts(tx: &Transaction, coins: &[Coin]) -> Result<(), Rejection> {
    let serialized = encode::serialize(tx);
    for (index, coin) in coins.iter().enumerate() {
        coin.output
            .script_pubkey
            .verify_with_flags(index, coin.output.value, &serialized, SCRIPT_FLAGS)
            .map_err(|e| {
                Rejection::rejected(format!(
                    "mandatory-script-verify-flag-failed (input {index}: {e:?})"
                ))
            })?;
    }
    Ok(())
}
