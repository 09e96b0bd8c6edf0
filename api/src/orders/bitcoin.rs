//! The Bitcoin side of an order: its escrow record (keys, descriptor, address,
//! funding UTXOs, payout PSBT) and the operations on it. The record is stored as
//! JSON beside the domain state; PSBTs are stored base64 and the expected
//! payout is rebuilt from them, never taken from a client.

use std::str::FromStr;

use agora_domain::escrow::payout::PayoutBreakdown;
use agora_domain::escrow::PayoutPlan as DomainPlan;
use agora_escrow::btc::{
    build_payout_with, finalize_payout, import_signed_psbt, EscrowDescriptor, EscrowKeys, EscrowParty,
    ExpectedPayout, FundingUtxo, MarketplaceKeyStore, PayoutAddresses, PsbtImportError,
};
use bitcoin::base64::engine::general_purpose::STANDARD as BASE64;
use bitcoin::base64::Engine;
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount, Network, OutPoint, PublicKey, Txid};
use serde::{Deserialize, Serialize};

use crate::graphql::errors::ApiError;

/// Everything Agora keeps about one Bitcoin escrow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BtcEscrow {
    pub network: Network,
    /// The compiled descriptor, kept because compiler output may change between
    /// miniscript versions; reloaded with `EscrowDescriptor::from_stored`.
    pub descriptor: String,
    pub address: String,
    pub buyer_key: String,
    pub buyer_refund_key: String,
    pub provider_key: String,
    pub arbitrator_key: String,
    pub key_index: u32,
    pub timelock_blocks: u16,
    pub payout_to: BtcPayoutAddresses,
    /// The escrow's funding outputs: while it awaits funding, what the chain
    /// shows; frozen once the funding is accepted, so nothing sent later can
    /// change what the payouts spend.
    #[serde(default)]
    pub funding: Vec<StoredUtxo>,
    /// Outputs that reached the escrow address outside the accepted funding
    /// (after it was frozen, or after settlement), each refunded to the buyer.
    #[serde(default)]
    pub strays: Vec<StrayDeposit>,
    /// The fee rate of this escrow's payouts, frozen when the funding is
    /// accepted (so a claim the buyer signed and the payout built from it are
    /// the same transaction); a fee bump replaces it.
    #[serde(default)]
    pub fee_rate_sat_vb: Option<u64>,
    /// A spend of the accepted funding Agora did not prepare, as the chain
    /// showed it: the transaction and what it paid to whom.
    #[serde(default)]
    pub other_spend: Option<OtherSpend>,
    /// Payouts replaced by one at a higher fee rate because they stayed
    /// unconfirmed while fees rose (the replacement spends the same inputs).
    #[serde(default)]
    pub fee_bumps: Vec<FeeBump>,
    #[serde(default)]
    pub confirmations: u32,
    #[serde(default)]
    pub funding_height: u64,
    #[serde(default)]
    pub payout: Option<BtcPayout>,
    /// Set once the timelock-margin alert was raised.
    #[serde(default)]
    pub timelock_alerted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BtcPayoutAddresses {
    pub provider: String,
    pub buyer: String,
    pub marketplace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUtxo {
    pub txid: Txid,
    pub vout: u32,
    pub value: u64,
    /// The block that holds it.
    #[serde(default)]
    pub height: Option<u64>,
}

/// An output sent to the escrow outside its accepted funding, and its refund.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StrayDeposit {
    pub utxo: StoredUtxo,
    /// The refund to the buyer, once the output is confirmed (`None` while it
    /// is not, or when it is too small to be worth spending).
    #[serde(default)]
    pub refund: Option<BtcPayout>,
    /// The output cannot pay its own refund fee: it is left where it is.
    #[serde(default)]
    pub dust: bool,
    /// The transaction that spent it, once mined.
    #[serde(default)]
    pub spent_by: Option<Txid>,
}

/// One fee bump of a stuck payout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeeBump {
    pub replaced_txid: Txid,
    pub from_sat_vb: u64,
    pub to_sat_vb: u64,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A transaction that spent the accepted funding without being the prepared payout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtherSpend {
    pub txid: Txid,
    /// (role, sats) paid to the escrow's payout addresses; `other` for anything else.
    pub paid: Vec<(String, u64)>,
    pub mined_at: u64,
}

/// A prepared payout and the signatures collected for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BtcPayout {
    /// The PSBT with every signature accepted so far (base64).
    pub psbt: String,
    pub txid: Txid,
    pub fee_rate_sat_vb: u64,
    pub fee: u64,
    pub breakdown: PayoutBreakdown,
    /// (role, sats) of each output, in output order.
    pub outputs: Vec<(String, u64)>,
    /// Shares below the dust limit, folded into the fee.
    pub dropped_dust: Vec<(String, u64)>,
    /// Parties whose signatures are on every input.
    pub signed_by: Vec<EscrowParty>,
    /// The finalized transaction, once two parties signed every input and every
    /// input passed `bitcoinconsensus`.
    pub final_tx: Option<String>,
    /// The block the payout was mined in, as the watcher last saw it.
    #[serde(default)]
    pub mined_at: Option<u64>,
    /// When the watcher last sent it to the node.
    #[serde(default)]
    pub broadcast_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The node's last reason for refusing it, reported once.
    #[serde(default)]
    pub last_rejection: Option<String>,
}

/// The marketplace's Bitcoin configuration, loaded at start-up.
pub struct BitcoinContext {
    pub network: Network,
    /// The only holder of the marketplace key (see `orders::signing`).
    pub gate: super::signing::SigningGate,
    pub marketplace_address: Address,
    pub fees: FeeRates,
    /// Confirmation target of the fee estimates.
    pub fee_target_blocks: u16,
    /// The chain's average block interval, for sizing timelocks.
    pub block_interval: std::time::Duration,
}

/// The fee rate new payouts use: the chain's estimate, clamped to the
/// configured bounds, or the configured default until an estimate arrives.
pub struct FeeRates {
    current: std::sync::atomic::AtomicU64,
    min: u64,
    max: u64,
}

impl FeeRates {
    pub fn new(default: u64, min: u64, max: u64) -> Self {
        Self {
            current: std::sync::atomic::AtomicU64::new(default.clamp(min, max)),
            min,
            max,
        }
    }

    pub fn current(&self) -> u64 {
        self.current.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes a new estimate from the chain source; returns the rate now used.
    pub fn update(&self, estimate_sat_vb: u64) -> u64 {
        let rate = estimate_sat_vb.clamp(self.min, self.max);
        self.current.store(rate, std::sync::atomic::Ordering::Relaxed);
        rate
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

pub fn parse_network(name: &str) -> Option<Network> {
    match name.trim().to_lowercase().as_str() {
        "bitcoin" | "mainnet" => Some(Network::Bitcoin),
        "testnet" => Some(Network::Testnet),
        "signet" => Some(Network::Signet),
        "regtest" => Some(Network::Regtest),
        _ => None,
    }
}

/// A pay-to-witness-public-key-hash address of a party's key: where its share
/// goes unless it named another address.
pub fn p2wpkh(key: &PublicKey, network: Network) -> Result<Address, ApiError> {
    let compressed = bitcoin::CompressedPublicKey::try_from(*key)
        .map_err(|_| ApiError::internal("escrow key is not compressed"))?;
    Ok(Address::p2wpkh(&compressed, network))
}

/// Parses a user's address and checks it is for `network`.
pub fn parse_address(field: &str, input: &str, network: Network) -> Result<Address, ApiError> {
    Address::from_str(input.trim())
        .ok()
        .and_then(|a| a.require_network(network).ok())
        .ok_or_else(|| {
            ApiError::bad_input(
                field,
                "INVALID_ADDRESS",
                format!("{field}: not a valid {network} address"),
            )
        })
}

fn key(hex: &str) -> Result<PublicKey, ApiError> {
    PublicKey::from_str(hex).map_err(|_| ApiError::internal("stored escrow key does not parse"))
}

impl BtcEscrow {
    pub fn escrow_keys(&self) -> Result<EscrowKeys, ApiError> {
        EscrowKeys::new(
            key(&self.buyer_key)?,
            key(&self.buyer_refund_key)?,
            key(&self.provider_key)?,
            key(&self.arbitrator_key)?,
            self.timelock_blocks,
        )
        .map_err(ApiError::internal)
    }

    pub fn descriptor(&self) -> Result<EscrowDescriptor, ApiError> {
        EscrowDescriptor::from_stored(self.escrow_keys()?, &self.descriptor).map_err(ApiError::internal)
    }

    /// Where each share of a payout goes (provider, buyer, marketplace).
    pub fn payout_addresses(&self) -> Result<PayoutAddresses, ApiError> {
        self.addresses()
    }

    fn addresses(&self) -> Result<PayoutAddresses, ApiError> {
        let parse = |a: &str| {
            Address::from_str(a)
                .ok()
                .and_then(|a| a.require_network(self.network).ok())
                .ok_or_else(|| ApiError::internal("stored payout address does not parse"))
        };
        Ok(PayoutAddresses {
            provider: parse(&self.payout_to.provider)?,
            buyer: parse(&self.payout_to.buyer)?,
            marketplace: parse(&self.payout_to.marketplace)?,
        })
    }

    pub fn funding_utxos(&self) -> Vec<FundingUtxo> {
        self.funding
            .iter()
            .map(|u| FundingUtxo {
                outpoint: OutPoint::new(u.txid, u.vout),
                value: Amount::from_sat(u.value),
            })
            .collect()
    }

    /// The fee rate of this escrow's payouts: frozen at funding, or the
    /// current one for an escrow funded before rates were frozen.
    pub fn payout_fee_rate(&self, fees: &FeeRates) -> u64 {
        self.fee_rate_sat_vb.unwrap_or_else(|| fees.current())
    }

    /// Builds the payout PSBT for `plan` from the accepted funding.
    pub fn prepare_payout(&mut self, plan: &DomainPlan, fee_rate_sat_vb: u64) -> Result<(), ApiError> {
        let utxos = self.funding_utxos();
        let funded = plan.funded().minor();
        let payout = self.build(&utxos, fee_rate_sat_vb, |total, fee| {
            if total != funded {
                // The domain accepted a different amount than the UTXOs hold.
                return Err(agora_domain::escrow::payout::PayoutError::FeeExceedsFunds { funded: total, fee });
            }
            plan.breakdown(fee)
        })?;
        self.payout = Some(payout);
        Ok(())
    }

    fn build(
        &self,
        utxos: &[FundingUtxo],
        fee_rate_sat_vb: u64,
        divide: impl Fn(u64, u64) -> Result<PayoutBreakdown, agora_domain::escrow::payout::PayoutError>,
    ) -> Result<BtcPayout, ApiError> {
        let escrow = self.descriptor()?;
        let built = build_payout_with(&escrow, utxos, &self.addresses()?, fee_rate_sat_vb, divide)
            .map_err(|e| ApiError::Conflict(format!("the payout cannot be built: {e}")))?;
        Ok(BtcPayout {
            psbt: BASE64.encode(built.psbt.serialize()),
            txid: built.expected.unsigned_tx().compute_txid(),
            fee_rate_sat_vb,
            fee: built.fee.to_sat(),
            breakdown: built.breakdown,
            outputs: built.paid.iter().map(|(r, a)| (format!("{r:?}").to_lowercase(), a.to_sat())).collect(),
            dropped_dust: built
                .dropped_dust
                .iter()
                .map(|(r, a)| (format!("{r:?}").to_lowercase(), a.to_sat()))
                .collect(),
            signed_by: Vec::new(),
            final_tx: None,
            mined_at: None,
            broadcast_at: None,
            last_rejection: None,
        })
    }

    /// Builds the refund of stray output `index` to the buyer, whole but for
    /// the network fee; marks it dust when it cannot pay that fee.
    pub fn prepare_stray_refund(&mut self, index: usize, fee_rate_sat_vb: u64) -> Result<(), ApiError> {
        let stray = self.strays.get(index).ok_or_else(|| ApiError::internal("no such stray output"))?;
        let utxo = FundingUtxo {
            outpoint: OutPoint::new(stray.utxo.txid, stray.utxo.vout),
            value: Amount::from_sat(stray.utxo.value),
        };
        let built = self.build(&[utxo], fee_rate_sat_vb, |total, fee| {
            if fee >= total {
                return Err(agora_domain::escrow::payout::PayoutError::FeeExceedsFunds { funded: total, fee });
            }
            Ok(PayoutBreakdown {
                provider: 0,
                buyer: total - fee,
                commission: 0,
                arbitration_fee: 0,
                network_fee: fee,
            })
        });
        let stray = self.strays.get_mut(index).ok_or_else(|| ApiError::internal("no such stray output"))?;
        match built {
            // Only the buyer is paid; a share below the dust limit would be folded
            // into the fee, which the policy refuses to sign anyway.
            Ok(refund) if refund.outputs.len() == 1 && refund.outputs[0].0 == "buyer" => stray.refund = Some(refund),
            _ => stray.dust = true,
        }
        Ok(())
    }

    /// What the stray refund `index` spends and pays, for the signing policy.
    pub fn stray_refund_facts(&self, index: usize) -> Result<agora_domain::escrow::policy::StrayRefund, ApiError> {
        let stray = self.strays.get(index).ok_or_else(|| ApiError::internal("no such stray output"))?;
        let refund = stray.refund.as_ref().ok_or_else(|| ApiError::internal("no stray refund prepared"))?;
        let bytes = BASE64.decode(&refund.psbt).map_err(ApiError::internal)?;
        let psbt = Psbt::deserialize(&bytes).map_err(ApiError::internal)?;
        let accepted: Vec<OutPoint> = self.funding.iter().map(|u| OutPoint::new(u.txid, u.vout)).collect();
        let strays: Vec<OutPoint> = self.strays.iter().map(|u| OutPoint::new(u.utxo.txid, u.utxo.vout)).collect();
        let tx = &psbt.unsigned_tx;
        let spends_accepted = tx.input.iter().any(|i| accepted.contains(&i.previous_output));
        let spends_unknown = tx.input.iter().any(|i| !strays.contains(&i.previous_output));
        let total: u64 = tx
            .input
            .iter()
            .filter_map(|i| self.strays.iter().find(|s| OutPoint::new(s.utxo.txid, s.utxo.vout) == i.previous_output))
            .map(|s| s.utxo.value)
            .sum();
        let buyer = self.addresses()?.buyer.script_pubkey();
        let to_buyer: u64 = tx.output.iter().filter(|o| o.script_pubkey == buyer).map(|o| o.value.to_sat()).sum();
        let pays_others = tx.output.iter().any(|o| o.script_pubkey != buyer);
        Ok(agora_domain::escrow::policy::StrayRefund::new(total, to_buyer, spends_accepted || spends_unknown, pays_others))
    }

    /// Signs stray refund `index` with the marketplace key (the gate checked
    /// the policy). Returns the txid signed.
    pub(super) fn sign_stray_refund(&mut self, index: usize, keystore: &MarketplaceKeyStore) -> Result<Txid, ApiError> {
        let escrow = self.descriptor()?;
        let stray = self.strays.get_mut(index).ok_or_else(|| ApiError::internal("no such stray output"))?;
        let refund = stray.refund.as_mut().ok_or_else(|| ApiError::internal("no stray refund prepared"))?;
        let bytes = BASE64.decode(&refund.psbt).map_err(ApiError::internal)?;
        let mut psbt = Psbt::deserialize(&bytes).map_err(ApiError::internal)?;
        let expected = ExpectedPayout::from_psbt(&escrow, &psbt).map_err(ApiError::internal)?;
        keystore
            .sign_payout(self.key_index, &escrow, &expected, &mut psbt)
            .map_err(ApiError::internal)?;
        refund.signed_by = vec![EscrowParty::Arbitrator];
        refund.psbt = BASE64.encode(psbt.serialize());
        Ok(refund.txid)
    }

    /// Imports the buyer's (or provider's) signature on stray refund `index`.
    pub fn import_stray_signatures(&mut self, index: usize, submitted_base64: &str) -> Result<(), ApiError> {
        let escrow = self.descriptor()?;
        let keys = *escrow.keys();
        let stray = self.strays.get_mut(index).ok_or_else(|| ApiError::NotFound("no such stray deposit".into()))?;
        let refund = stray
            .refund
            .as_mut()
            .ok_or_else(|| ApiError::conflict("NO_REFUND", "this deposit's refund is not prepared (unconfirmed, or too small)"))?;
        if refund.final_tx.is_some() {
            return Err(ApiError::conflict("ALREADY_COMPLETE", "the refund is already fully signed"));
        }
        let bytes = BASE64.decode(&refund.psbt).map_err(ApiError::internal)?;
        let stored = Psbt::deserialize(&bytes).map_err(ApiError::internal)?;
        let expected = ExpectedPayout::from_psbt(&escrow, &stored).map_err(ApiError::internal)?;
        let outcome = import_signed_psbt(&escrow, &expected, &stored, submitted_base64).map_err(import_error)?;
        let count = |p: &Psbt| p.inputs.iter().map(|i| i.partial_sigs.len()).sum::<usize>();
        if count(&outcome.psbt) <= count(&stored) {
            return Err(ApiError::bad_input(
                "input.psbt",
                "NO_NEW_SIGNATURES",
                "psbt: it carries only signatures the refund already has",
            ));
        }
        refund.signed_by = EscrowParty::ALL
            .into_iter()
            .filter(|party| {
                let key = keys.key_of(*party);
                !outcome.psbt.inputs.is_empty() && outcome.psbt.inputs.iter().all(|i| i.partial_sigs.contains_key(&key))
            })
            .collect();
        refund.psbt = BASE64.encode(outcome.psbt.serialize());
        if let Some(tx) = outcome.final_tx {
            refund.final_tx = Some(bitcoin::consensus::encode::serialize_hex(&tx));
        }
        Ok(())
    }

    fn stored_payout(&self) -> Result<(&BtcPayout, Psbt, ExpectedPayout, EscrowDescriptor), ApiError> {
        let payout = self
            .payout
            .as_ref()
            .ok_or_else(|| ApiError::conflict("NO_PAYOUT", "no payout has been prepared for this order"))?;
        let escrow = self.descriptor()?;
        let bytes = BASE64.decode(&payout.psbt).map_err(ApiError::internal)?;
        let psbt = Psbt::deserialize(&bytes).map_err(ApiError::internal)?;
        let expected = ExpectedPayout::from_psbt(&escrow, &psbt).map_err(ApiError::internal)?;
        Ok((payout, psbt, expected, escrow))
    }

    /// Signs the payout with the marketplace key of this escrow. The caller has
    /// checked the signing policy. Returns the txid signed.
    pub(super) fn sign_as_arbitrator(&mut self, keystore: &MarketplaceKeyStore) -> Result<Txid, ApiError> {
        let (payout, mut psbt, expected, escrow) = self.stored_payout()?;
        let txid = payout.txid;
        keystore
            .sign_payout(self.key_index, &escrow, &expected, &mut psbt)
            .map_err(ApiError::internal)?;
        let final_tx = finalize_payout(&escrow, &expected, &psbt).ok();
        self.store_signatures(psbt, final_tx)?;
        Ok(txid)
    }

    /// Imports a party's signed PSBT: only valid signatures from this escrow's
    /// keys over exactly the expected transaction are taken.
    pub fn import_signatures(&mut self, submitted_base64: &str) -> Result<(), ApiError> {
        let (_, stored, expected, escrow) = self.stored_payout()?;
        if self.payout.as_ref().is_some_and(|p| p.final_tx.is_some()) {
            return Err(ApiError::conflict("ALREADY_COMPLETE", "the payout is already fully signed"));
        }
        let outcome = import_signed_psbt(&escrow, &expected, &stored, submitted_base64).map_err(import_error)?;
        let count = |p: &Psbt| p.inputs.iter().map(|i| i.partial_sigs.len()).sum::<usize>();
        if count(&outcome.psbt) <= count(&stored) {
            return Err(ApiError::bad_input(
                "input.psbt",
                "NO_NEW_SIGNATURES",
                "psbt: it carries only signatures the payout already has",
            ));
        }
        self.store_signatures(outcome.psbt, outcome.final_tx)
    }

    fn store_signatures(&mut self, psbt: Psbt, final_tx: Option<bitcoin::Transaction>) -> Result<(), ApiError> {
        let escrow = self.descriptor()?;
        let keys = *escrow.keys();
        let signed_by: Vec<EscrowParty> = EscrowParty::ALL
            .into_iter()
            .filter(|party| {
                let key = keys.key_of(*party);
                !psbt.inputs.is_empty() && psbt.inputs.iter().all(|i| i.partial_sigs.contains_key(&key))
            })
            .collect();
        let payout = self
            .payout
            .as_mut()
            .ok_or_else(|| ApiError::internal("payout vanished"))?;
        payout.psbt = BASE64.encode(psbt.serialize());
        payout.signed_by = signed_by;
        if let Some(tx) = final_tx {
            payout.final_tx = Some(bitcoin::consensus::encode::serialize_hex(&tx));
        }
        Ok(())
    }
}

fn import_error(e: PsbtImportError) -> ApiError {
    let (reason, message) = match &e {
        PsbtImportError::MalformedBase64 => ("MALFORMED_BASE64", "psbt: not valid base64".to_owned()),
        PsbtImportError::MalformedPsbt(detail) => ("MALFORMED_PSBT", format!("psbt: not a valid PSBT ({detail})")),
        PsbtImportError::TransactionMismatch { .. } => (
            "PSBT_MISMATCH",
            format!("psbt: the transaction is not the expected payout ({e})"),
        ),
        PsbtImportError::UnexpectedSigner { .. } => (
            "UNEXPECTED_SIGNER",
            format!("psbt: a signature is from a key that is not a signer of this escrow ({e})"),
        ),
        PsbtImportError::InvalidSignature { .. } => ("INVALID_SIGNATURE", format!("psbt: {e}")),
        PsbtImportError::UnsupportedSighash { .. } => ("UNSUPPORTED_SIGHASH", format!("psbt: {e}")),
        PsbtImportError::NoSignatures => ("NO_SIGNATURES", "psbt: it carries no new signature".to_owned()),
        PsbtImportError::AlreadyFinalized { .. } => (
            "ALREADY_FINALIZED",
            "psbt: submit the signed, unfinalized PSBT (partial signatures), not a finalized one".to_owned(),
        ),
        _ => return ApiError::internal(e),
    };
    ApiError::bad_input("input.psbt", reason, message)
}
