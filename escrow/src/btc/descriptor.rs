//! The escrow's keys and its locking script: the policy
//! `or(9@thresh(2,pk(B),pk(P),pk(A)),1@and(pk(B_refund),older(T)))` compiled by
//! miniscript into a P2WSH descriptor.
//!
//! The 9:1 weights tell the compiler that the 2-of-3 branch is the one normally
//! used, so it gets the cheaper witness. `B_refund` must differ from `B`: miniscript
//! rejects a script that repeats a key, and a separate key lets the buyer keep the
//! refund key cold.
//!
//! The policy compiler is not promised to give the same script across miniscript
//! versions, so the descriptor string of every escrow must be stored when it is
//! created and reloaded with [`EscrowDescriptor::from_stored`], which accepts it
//! only when it means exactly this policy over these keys.

use std::fmt;
use std::str::FromStr;

use bitcoin::{Address, Network, PublicKey, ScriptBuf};
use miniscript::descriptor::{DefiniteDescriptorKey, DescriptorPublicKey};
use miniscript::plan::Assets;
use miniscript::policy::{Concrete, Liftable};
use miniscript::{Descriptor, Segwitv0};

/// The three keys of the 2-of-3 payout branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum EscrowParty {
    Buyer,
    Provider,
    Arbitrator,
}

impl EscrowParty {
    pub const ALL: [EscrowParty; 3] = [
        EscrowParty::Buyer,
        EscrowParty::Provider,
        EscrowParty::Arbitrator,
    ];
}

impl fmt::Display for EscrowParty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EscrowParty::Buyer => "buyer",
            EscrowParty::Provider => "provider",
            EscrowParty::Arbitrator => "arbitrator",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowKeysError {
    #[error("the {role} key must be compressed (segwit accepts only compressed keys)")]
    UncompressedKey { role: &'static str },
    #[error("the {first} key and the {second} key are the same key; all four must differ")]
    DuplicateKey {
        first: &'static str,
        second: &'static str,
    },
    #[error("the refund timelock must be between 1 and 65535 blocks, got {0}")]
    InvalidTimelock(u16),
}

/// The four public keys and the refund timelock of one escrow.
///
/// Build it with [`EscrowKeys::new`], which validates; the fields are read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EscrowKeys {
    buyer: PublicKey,
    buyer_refund: PublicKey,
    provider: PublicKey,
    arbitrator: PublicKey,
    timelock_blocks: u16,
}

impl EscrowKeys {
    /// Validates: every key compressed, all four distinct, `1 <= timelock_blocks`
    /// (the `u16` already caps it at 65535, the largest height BIP68 can express).
    pub fn new(
        buyer: PublicKey,
        buyer_refund: PublicKey,
        provider: PublicKey,
        arbitrator: PublicKey,
        timelock_blocks: u16,
    ) -> Result<Self, EscrowKeysError> {
        let named = [
            ("buyer", buyer),
            ("buyer refund", buyer_refund),
            ("provider", provider),
            ("arbitrator", arbitrator),
        ];
        for (role, key) in named {
            if !key.compressed {
                return Err(EscrowKeysError::UncompressedKey { role });
            }
        }
        for (i, (first, a)) in named.iter().enumerate() {
            for (second, b) in &named[i + 1..] {
                // Compare the curve points: the same point is the same signer.
                if a.inner == b.inner {
                    return Err(EscrowKeysError::DuplicateKey { first, second });
                }
            }
        }
        if timelock_blocks == 0 {
            return Err(EscrowKeysError::InvalidTimelock(timelock_blocks));
        }
        Ok(Self {
            buyer,
            buyer_refund,
            provider,
            arbitrator,
            timelock_blocks,
        })
    }

    pub fn buyer(&self) -> PublicKey {
        self.buyer
    }

    pub fn buyer_refund(&self) -> PublicKey {
        self.buyer_refund
    }

    pub fn provider(&self) -> PublicKey {
        self.provider
    }

    pub fn arbitrator(&self) -> PublicKey {
        self.arbitrator
    }

    pub fn timelock_blocks(&self) -> u16 {
        self.timelock_blocks
    }

    /// The key of `party` in the 2-of-3 branch.
    pub fn key_of(&self, party: EscrowParty) -> PublicKey {
        match party {
            EscrowParty::Buyer => self.buyer,
            EscrowParty::Provider => self.provider,
            EscrowParty::Arbitrator => self.arbitrator,
        }
    }

    /// Which party of the 2-of-3 branch `key` belongs to. `None` for the refund key
    /// and for any key foreign to the escrow.
    pub fn party_of(&self, key: &PublicKey) -> Option<EscrowParty> {
        EscrowParty::ALL
            .into_iter()
            .find(|party| self.key_of(*party) == *key)
    }

    /// The spending policy, in miniscript's policy language.
    pub fn policy_string(&self) -> String {
        format!(
            "or(9@thresh(2,pk({}),pk({}),pk({})),1@and(pk({}),older({})))",
            self.buyer, self.provider, self.arbitrator, self.buyer_refund, self.timelock_blocks
        )
    }

    fn policy(&self) -> Result<Concrete<PublicKey>, DescriptorError> {
        Concrete::<PublicKey>::from_str(&self.policy_string())
            .map_err(|e| DescriptorError::Compile(e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("the escrow policy did not compile: {0}")]
    Compile(String),
    #[error("the stored descriptor does not parse: {0}")]
    Parse(String),
    #[error("the stored descriptor is not a P2WSH miniscript descriptor")]
    NotWsh,
    #[error("the stored descriptor does not express the escrow policy for these keys")]
    PolicyMismatch,
    #[error("the descriptor cannot be satisfied by the {0} path")]
    Unsatisfiable(&'static str),
}

/// The compiled P2WSH descriptor of one escrow, with the keys it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowDescriptor {
    keys: EscrowKeys,
    descriptor: Descriptor<PublicKey>,
    witness_script: ScriptBuf,
}

impl EscrowDescriptor {
    /// Compiles the escrow policy for `keys`. Use this once, when the escrow is
    /// created, then store [`EscrowDescriptor::to_string`].
    pub fn new(keys: EscrowKeys) -> Result<Self, DescriptorError> {
        let descriptor = keys
            .policy()?
            .compile_to_descriptor::<Segwitv0>(miniscript::policy::concrete::DescriptorCtx::Wsh)
            .map_err(|e| DescriptorError::Compile(e.to_string()))?;
        Self::assemble(keys, descriptor)
    }

    fn assemble(
        keys: EscrowKeys,
        descriptor: Descriptor<PublicKey>,
    ) -> Result<Self, DescriptorError> {
        let Descriptor::Wsh(wsh) = &descriptor else {
            return Err(DescriptorError::NotWsh);
        };
        let witness_script = wsh.inner_script();
        Ok(Self {
            keys,
            descriptor,
            witness_script,
        })
    }

    /// Reloads a descriptor stored at creation. It is accepted only if it is a sane
    /// P2WSH miniscript whose meaning is exactly the escrow policy over `keys`, so a
    /// tampered row or a different compiler version cannot swap in another script.
    pub fn from_stored(keys: EscrowKeys, stored: &str) -> Result<Self, DescriptorError> {
        let descriptor = Descriptor::<PublicKey>::from_str(stored.trim())
            .map_err(|e| DescriptorError::Parse(e.to_string()))?;
        if !matches!(descriptor, Descriptor::Wsh(_)) {
            return Err(DescriptorError::NotWsh);
        }
        descriptor
            .sanity_check()
            .map_err(|e| DescriptorError::Parse(e.to_string()))?;
        let expected = keys
            .policy()?
            .lift()
            .map_err(|e| DescriptorError::Compile(e.to_string()))?
            .normalized()
            .sorted();
        let actual = descriptor
            .lift()
            .map_err(|e| DescriptorError::Parse(e.to_string()))?
            .normalized()
            .sorted();
        if expected != actual {
            return Err(DescriptorError::PolicyMismatch);
        }
        Self::assemble(keys, descriptor)
    }

    pub fn keys(&self) -> &EscrowKeys {
        &self.keys
    }

    pub fn descriptor(&self) -> &Descriptor<PublicKey> {
        &self.descriptor
    }

    /// The script committed to by the P2WSH output, revealed in the witness.
    pub fn witness_script(&self) -> &ScriptBuf {
        &self.witness_script
    }

    pub fn script_pubkey(&self) -> ScriptBuf {
        self.descriptor.script_pubkey()
    }

    /// The escrow's address: `bc1q…` on Bitcoin, `tb1q…` on Testnet, Testnet4 and
    /// Signet, `bcrt1q…` on Regtest.
    pub fn address(&self, network: Network) -> Address {
        Address::p2wsh(&self.witness_script, network)
    }

    /// The same descriptor over definite keys, the form miniscript's planner takes.
    pub(crate) fn definite(&self) -> Result<Descriptor<DefiniteDescriptorKey>, DescriptorError> {
        Descriptor::<DefiniteDescriptorKey>::from_str(&self.descriptor.to_string())
            .map_err(|e| DescriptorError::Parse(e.to_string()))
    }

    /// Upper bound, in weight units, of the witness (stack count, items and
    /// witness script) that satisfies the 2-of-3 branch with any allowed pair.
    ///
    /// miniscript's planner gives each signature 73 bytes (push + 71-byte DER +
    /// sighash byte), which holds for low-R signatures only; wallets that do not
    /// grind R make 72-byte DER half of the time, so one byte per signature is
    /// added to never pay less than the requested fee rate. The planner's
    /// template leaves out the witness script (which P2WSH pushes last), so it is
    /// added here.
    pub fn multisig_witness_weight(&self) -> Result<u64, DescriptorError> {
        let pairs = [
            [EscrowParty::Buyer, EscrowParty::Provider],
            [EscrowParty::Buyer, EscrowParty::Arbitrator],
            [EscrowParty::Provider, EscrowParty::Arbitrator],
        ];
        let mut worst = 0;
        for pair in pairs {
            let keys = pair.map(|p| self.keys.key_of(p));
            worst = worst.max(self.planned_witness_weight(&keys, None, "2-of-3")?);
        }
        Ok(worst)
    }

    /// Upper bound, in weight units, of the witness that spends through
    /// `and(pk(B_refund),older(T))`; see [`Self::multisig_witness_weight`].
    pub fn refund_witness_weight(&self) -> Result<u64, DescriptorError> {
        let lock = bitcoin::relative::LockTime::from_height(self.keys.timelock_blocks);
        self.planned_witness_weight(&[self.keys.buyer_refund], Some(lock), "refund")
    }

    fn planned_witness_weight(
        &self,
        signers: &[PublicKey],
        older: Option<bitcoin::relative::LockTime>,
        path: &'static str,
    ) -> Result<u64, DescriptorError> {
        let mut assets = Assets::new();
        for key in signers {
            let key = DescriptorPublicKey::from_str(&key.to_string())
                .map_err(|e| DescriptorError::Parse(e.to_string()))?;
            assets = assets.add(key);
        }
        if let Some(lock) = older {
            assets = assets.older(lock);
        }
        let plan = self
            .definite()?
            .plan(&assets)
            .map_err(|_| DescriptorError::Unsatisfiable(path))?;
        let signatures = plan
            .witness_template()
            .iter()
            .filter(|p| {
                matches!(
                    p,
                    miniscript::miniscript::satisfy::Placeholder::EcdsaSigPk(_)
                )
            })
            .count();
        let items = plan.witness_template().len();
        let script_len = self.witness_script.len();
        // `witness_size` counts the items plus a varint of their number; swap that
        // varint for one that also counts the witness script, then add the script.
        let weight = plan.witness_size() - varint_len(items)
            + varint_len(items + 1)
            + varint_len(script_len)
            + script_len
            + signatures;
        Ok(weight as u64)
    }
}

impl fmt::Display for EscrowDescriptor {
    /// The descriptor with its checksum, e.g. `wsh(or_d(...))#abcd1234`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.descriptor, f)
    }
}

pub(crate) fn varint_len(n: usize) -> usize {
    bitcoin::VarInt(n as u64).size()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btc::test_keys::{escrow_keys, key, TIMELOCK};

    #[test]
    fn keys_must_be_distinct() {
        let err = EscrowKeys::new(key(1), key(1), key(2), key(3), TIMELOCK).unwrap_err();
        assert_eq!(
            err,
            EscrowKeysError::DuplicateKey {
                first: "buyer",
                second: "buyer refund"
            }
        );
        assert!(EscrowKeys::new(key(1), key(2), key(3), key(2), TIMELOCK).is_err());
        assert!(EscrowKeys::new(key(1), key(2), key(1), key(4), TIMELOCK).is_err());
    }

    #[test]
    fn an_uncompressed_key_is_rejected_even_when_it_is_otherwise_distinct() {
        let mut uncompressed = key(1);
        uncompressed.compressed = false;
        let err = EscrowKeys::new(key(2), key(3), uncompressed, key(4), TIMELOCK).unwrap_err();
        assert_eq!(err, EscrowKeysError::UncompressedKey { role: "provider" });
        // The same point in both encodings is still one signer.
        let err = EscrowKeys::new(key(1), uncompressed, key(2), key(3), TIMELOCK).unwrap_err();
        assert!(matches!(err, EscrowKeysError::UncompressedKey { .. }));
    }

    #[test]
    fn timelock_must_be_at_least_one_block() {
        assert_eq!(
            EscrowKeys::new(key(1), key(2), key(3), key(4), 0),
            Err(EscrowKeysError::InvalidTimelock(0))
        );
        assert!(EscrowKeys::new(key(1), key(2), key(3), key(4), 1).is_ok());
        assert!(EscrowKeys::new(key(1), key(2), key(3), key(4), u16::MAX).is_ok());
        let d = EscrowDescriptor::new(
            EscrowKeys::new(key(1), key(2), key(3), key(4), u16::MAX).unwrap(),
        );
        assert!(d.unwrap().to_string().contains("older(65535)"));
    }

    #[test]
    fn descriptor_is_p2wsh_and_round_trips_through_its_string() {
        let d = EscrowDescriptor::new(escrow_keys()).unwrap();
        let s = d.to_string();
        assert!(s.starts_with("wsh("), "{s}");
        assert!(s.contains('#'), "descriptor string carries a checksum: {s}");
        let parsed = Descriptor::<PublicKey>::from_str(&s).unwrap();
        assert_eq!(&parsed, d.descriptor());
        let reloaded = EscrowDescriptor::from_stored(escrow_keys(), &s).unwrap();
        assert_eq!(reloaded, d);
        assert_eq!(d.witness_script().to_p2wsh(), d.script_pubkey());
        assert!(d.script_pubkey().is_p2wsh());
    }

    #[test]
    fn the_compiled_script_is_pinned_so_a_compiler_change_is_noticed() {
        // Regression vector produced by miniscript 12.3.8 for the test keys. If an
        // upgrade changes it, new escrows get new scripts: keep old ones loading
        // through `from_stored` and update this vector on purpose.
        let d = EscrowDescriptor::new(escrow_keys()).unwrap();
        assert_eq!(d.to_string(), crate::btc::test_keys::GOLDEN_DESCRIPTOR);
    }

    #[test]
    fn a_stored_descriptor_compiled_differently_but_meaning_the_same_is_accepted() {
        // What another compiler version might produce: pk instead of pkh.
        let k = escrow_keys();
        let other = format!(
            "wsh(or_d(multi(2,{},{},{}),and_v(v:pk({}),older({}))))",
            k.buyer(),
            k.provider(),
            k.arbitrator(),
            k.buyer_refund(),
            k.timelock_blocks()
        );
        let d = EscrowDescriptor::from_stored(k, &other).unwrap();
        assert_ne!(d, EscrowDescriptor::new(k).unwrap());
        assert_eq!(d.keys(), &k);
        // Swapping the refund key into the multisig is a different policy.
        let swapped = format!(
            "wsh(or_d(multi(2,{},{},{}),and_v(v:pk({}),older({}))))",
            k.buyer_refund(),
            k.provider(),
            k.arbitrator(),
            k.buyer(),
            k.timelock_blocks()
        );
        assert_eq!(
            EscrowDescriptor::from_stored(k, &swapped),
            Err(DescriptorError::PolicyMismatch)
        );
    }

    #[test]
    fn a_stored_descriptor_for_other_keys_or_policy_is_refused() {
        let d = EscrowDescriptor::new(escrow_keys()).unwrap();
        let other = EscrowKeys::new(key(1), key(2), key(3), key(9), TIMELOCK).unwrap();
        assert_eq!(
            EscrowDescriptor::from_stored(other, &d.to_string()),
            Err(DescriptorError::PolicyMismatch)
        );
        let k = escrow_keys();
        let plain_multi = format!(
            "wsh(multi(2,{},{},{}))",
            k.buyer(),
            k.provider(),
            k.arbitrator()
        );
        assert_eq!(
            EscrowDescriptor::from_stored(k, &plain_multi),
            Err(DescriptorError::PolicyMismatch)
        );
        let shorter = EscrowKeys::new(
            k.buyer(),
            k.buyer_refund(),
            k.provider(),
            k.arbitrator(),
            10,
        )
        .unwrap();
        assert_eq!(
            EscrowDescriptor::from_stored(shorter, &d.to_string()),
            Err(DescriptorError::PolicyMismatch)
        );
        let sh = format!("sh({})", &d.to_string()[..d.to_string().find('#').unwrap()]);
        assert!(EscrowDescriptor::from_stored(k, &sh).is_err());
        assert!(matches!(
            EscrowDescriptor::from_stored(k, "wsh(nonsense"),
            Err(DescriptorError::Parse(_))
        ));
    }

    #[test]
    fn address_prefix_follows_the_network() {
        let d = EscrowDescriptor::new(escrow_keys()).unwrap();
        let cases = [
            (Network::Bitcoin, "bc1q"),
            (Network::Testnet, "tb1q"),
            (Network::Signet, "tb1q"),
            (Network::Regtest, "bcrt1q"),
        ];
        for (network, prefix) in cases {
            let address = d.address(network);
            let text = address.to_string();
            assert!(text.starts_with(prefix), "{network}: {text}");
            // P2WSH addresses carry a 32-byte program: 62 chars on main/test.
            assert_eq!(text.len(), prefix.len() - 1 + 59, "{network}: {text}");
            assert_eq!(address.script_pubkey(), d.script_pubkey());
            let parsed = Address::from_str(&text)
                .unwrap()
                .require_network(network)
                .unwrap();
            assert_eq!(parsed, address);
        }
        assert_eq!(
            d.address(Network::Bitcoin).to_string(),
            d.descriptor()
                .address(Network::Bitcoin)
                .unwrap()
                .to_string()
        );
    }

    #[test]
    fn multisig_estimate_is_the_planned_branch_and_below_the_overall_maximum() {
        let d = EscrowDescriptor::new(escrow_keys()).unwrap();
        let multisig = d.multisig_witness_weight().unwrap();
        let refund = d.refund_witness_weight().unwrap();
        let max = d.descriptor().max_weight_to_satisfy().unwrap().to_wu();
        // max_weight_to_satisfy excludes the stack-count byte an unsatisfied input
        // already has; ours includes it and the high-R margin (2 signatures).
        assert!(multisig <= max + 1 + 2, "multisig {multisig} vs max {max}");
        assert!(multisig >= 2 * 73 + d.witness_script().len() as u64);
        assert!(refund < multisig);
    }

    #[test]
    fn party_of_knows_only_the_three_payout_keys() {
        let k = escrow_keys();
        assert_eq!(k.party_of(&k.buyer()), Some(EscrowParty::Buyer));
        assert_eq!(k.party_of(&k.provider()), Some(EscrowParty::Provider));
        assert_eq!(k.party_of(&k.arbitrator()), Some(EscrowParty::Arbitrator));
        assert_eq!(k.party_of(&k.buyer_refund()), None);
        assert_eq!(k.party_of(&key(42)), None);
    }
}
