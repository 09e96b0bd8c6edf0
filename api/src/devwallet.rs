//! `agora wallet`: a minimal wallet for development and the devnet
//! walkthrough, so a newcomer can take an order to settlement with nothing but
//! this binary. Keys are printed to the terminal: never use it with real funds.

use std::str::FromStr;

use agora_escrow::source::rippled::RippledSource;
use agora_escrow::source::XrplSource;
use agora_escrow::xrpl::transfer::{sign_xrp_payment, XrpPayment};
use agora_escrow::xrpl::wallet::{encode_family_seed, multisign_blob};
use agora_escrow::xrpl::{SigningKey, XrplAddress};
use anyhow::{anyhow, Context};
use bitcoin::base64::engine::general_purpose::STANDARD as BASE64;
use bitcoin::base64::Engine;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::hashes::Hash;
use bitcoin::{CompressedPublicKey, Network, PublicKey};
use clap::Subcommand;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum WalletAction {
    /// Print a new Bitcoin key (secret, public key, regtest address) and a new
    /// XRPL account (family seed, public key, classic address).
    NewKey,
    /// Sign every escrow input of a PSBT (base64) with a Bitcoin secret key (hex).
    SignPsbt {
        #[arg(long)]
        secret: String,
        psbt: String,
    },
    /// Multisign an unsigned XRPL payout transaction (hex) as the account of a seed.
    SignXrpl {
        #[arg(long)]
        seed: String,
        unsigned_blob: String,
    },
    /// Sign a payment-channel claim (`nextClaim.channel`) with the key of a
    /// seed; prints the signature (hex) for `submitClaim`.
    SignClaim {
        #[arg(long)]
        seed: String,
        /// The channel id (64 hex digits).
        #[arg(long)]
        channel: String,
        /// The claim's amount in drops (cumulative).
        #[arg(long)]
        drops: u64,
    },
    /// Pay XRP from the account of a seed (e.g. a deposit into an escrow account).
    PayXrp {
        #[arg(long)]
        seed: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        drops: u64,
        /// The node's WebSocket URL. Default: `watchers.xrpl_ws_url`, else the
        /// local chain at `devnet.xrpl_ws_bind`, as `serve` reads them.
        #[arg(long)]
        ws: Option<String>,
        /// The node's JSON-RPC URL. Default: `watchers.xrpl_rpc_url`, else the
        /// local chain at `devnet.xrpl_rpc_bind`.
        #[arg(long)]
        rpc: Option<String>,
    },
}

/// The XRPL node `serve` would follow with `settings`, unless a flag names one.
pub fn xrpl_endpoints(settings: &Settings, ws: Option<String>, rpc: Option<String>) -> (String, String) {
    let ws = ws
        .or_else(|| settings.watchers.xrpl_ws_url.clone())
        .unwrap_or_else(|| format!("ws://{}", settings.devnet.xrpl_ws_bind));
    let rpc = rpc
        .or_else(|| settings.watchers.xrpl_rpc_url.clone())
        .unwrap_or_else(|| format!("http://{}", settings.devnet.xrpl_rpc_bind));
    (ws, rpc)
}

/// Signs (SIGHASH_ALL, BIP143) every P2WSH input whose witness script contains
/// the key; returns how many inputs were signed. Like a hardware wallet, it
/// signs against the witness UTXO the PSBT carries.
fn sign_p2wsh_inputs(psbt: &mut Psbt, secret: &SecretKey) -> anyhow::Result<usize> {
    use bitcoin::sighash::{EcdsaSighashType, SighashCache};
    let secp = Secp256k1::new();
    let public = PublicKey::new(secret.public_key(&secp));
    let key_bytes = public.to_bytes();
    let tx = psbt.unsigned_tx.clone();
    let mut cache = SighashCache::new(&tx);
    let mut signed = 0;
    for (index, input) in psbt.inputs.iter_mut().enumerate() {
        let (Some(script), Some(utxo)) = (input.witness_script.clone(), input.witness_utxo.clone()) else {
            continue;
        };
        let mentions_key = script
            .instructions()
            .flatten()
            .any(|i| i.push_bytes().is_some_and(|b| b.as_bytes() == key_bytes.as_slice()));
        if !mentions_key {
            continue;
        }
        let sighash = cache.p2wsh_signature_hash(index, &script, utxo.value, EcdsaSighashType::All)?;
        let message = bitcoin::secp256k1::Message::from_digest(sighash.to_byte_array());
        let signature = bitcoin::ecdsa::Signature::sighash_all(secp.sign_ecdsa(&message, secret));
        input.partial_sigs.insert(public, signature);
        signed += 1;
    }
    Ok(signed)
}

/// Runs a wallet command; chain endpoints come from `settings` (see [`xrpl_endpoints`]).
pub async fn run(action: WalletAction, settings: &Settings) -> anyhow::Result<()> {
    match action {
        WalletAction::NewKey => {
            let secp = Secp256k1::new();
            let secret = SecretKey::new(&mut rand::thread_rng());
            let public = PublicKey::new(secret.public_key(&secp));
            let address = bitcoin::Address::p2wpkh(&CompressedPublicKey::try_from(public)?, Network::Regtest);
            println!("bitcoin secret      {}", hex::encode(secret.secret_bytes()));
            println!("bitcoin public key  {public}");
            println!("bitcoin address     {address} (regtest)");
            let mut entropy = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut entropy);
            let seed = encode_family_seed(entropy)?;
            let key = SigningKey::from_seed(&seed)?;
            println!("xrpl seed           {seed}");
            println!("xrpl public key     {}", key.public_key().to_hex());
            println!("xrpl address        {}", key.address());
        }
        WalletAction::SignPsbt { secret, psbt } => {
            let secret = SecretKey::from_str(secret.trim()).context("--secret is 32 bytes of hex")?;
            let bytes = BASE64.decode(psbt.trim()).context("the PSBT is not base64")?;
            let mut psbt = Psbt::deserialize(&bytes).context("not a PSBT")?;
            let signed = sign_p2wsh_inputs(&mut psbt, &secret)?;
            if signed == 0 {
                anyhow::bail!("this key signs none of the PSBT's inputs");
            }
            println!("{}", BASE64.encode(psbt.serialize()));
        }
        WalletAction::SignXrpl { seed, unsigned_blob } => {
            let key = SigningKey::from_seed(seed.trim())?;
            println!("{}", multisign_blob(&unsigned_blob, &key)?);
        }
        WalletAction::SignClaim { seed, channel, drops } => {
            let key = SigningKey::from_seed(seed.trim())?;
            let channel = agora_escrow::xrpl::ChannelId::parse(&channel)?;
            let signature = agora_escrow::xrpl::sign_claim(&key, &channel, drops)?;
            println!("{}", hex::encode_upper(signature));
        }
        WalletAction::PayXrp { seed, to, drops, ws, rpc } => {
            let key = SigningKey::from_seed(seed.trim())?;
            let (ws, rpc) = xrpl_endpoints(settings, ws, rpc);
            let source = RippledSource::connect(&ws, &rpc)
                .await
                .with_context(|| format!("cannot reach the XRPL node at {ws} / {rpc}"))?;
            let info = source
                .account_info(key.address().as_str())
                .await?
                .ok_or_else(|| anyhow!("{} does not exist on the ledger; fund it first", key.address()))?;
            let signed = sign_xrp_payment(
                &key,
                &XrpPayment {
                    destination: XrplAddress::parse(to.trim())?,
                    destination_tag: None,
                    amount_drops: drops,
                    fee_drops: 12,
                    sequence: info.sequence,
                    last_ledger_sequence: None,
                },
            )?;
            let outcome = source.submit(&signed.blob).await?;
            println!("{} {}", outcome.engine_result, outcome.hash);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn the_wallet_follows_the_configured_chain_endpoints() {
        let mut settings = Settings::default();
        assert_eq!(
            xrpl_endpoints(&settings, None, None),
            ("ws://127.0.0.1:6006".to_owned(), "http://127.0.0.1:5005".to_owned())
        );
        settings.devnet.xrpl_ws_bind = "127.0.0.1:6016".into();
        settings.devnet.xrpl_rpc_bind = "127.0.0.1:5015".into();
        assert_eq!(
            xrpl_endpoints(&settings, None, None),
            ("ws://127.0.0.1:6016".to_owned(), "http://127.0.0.1:5015".to_owned())
        );
        settings.watchers.xrpl_ws_url = Some("wss://xrpl.example:443".into());
        assert_eq!(xrpl_endpoints(&settings, None, None).0, "wss://xrpl.example:443");
        assert_eq!(
            xrpl_endpoints(&settings, Some("ws://flag:1".into()), Some("http://flag:2".into())),
            ("ws://flag:1".to_owned(), "http://flag:2".to_owned())
        );
    }

    #[test]
    fn the_wallet_reads_the_same_file_as_serve() {
        let dir = std::env::temp_dir().join(format!("agora-wallet-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agora.toml");
        std::fs::write(&file, "[devnet]\nxrpl_ws_bind = \"127.0.0.1:7006\"\nxrpl_rpc_bind = \"127.0.0.1:7005\"\n").unwrap();
        let settings = Settings::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(
            xrpl_endpoints(&settings, None, None),
            ("ws://127.0.0.1:7006".to_owned(), "http://127.0.0.1:7005".to_owned())
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
