//! Conservation of what reaches an escrow address: which outputs are the
//! accepted funding and which are stray deposits.
//!
//! While an escrow awaits funding (or has expired unfunded), every output at
//! its address counts towards the funding. Once the funding is accepted the
//! set of funding outputs is frozen: payouts spend exactly those, so nothing
//! sent later — by the buyer, the provider or a stranger — can change or
//! block them. Every later output is a stray deposit and goes back to the
//! buyer on its own refund ([`super::policy::may_sign_stray_refund`]).
//! Together the two sets always hold every output the address received.

use serde::{Deserialize, Serialize};

use super::state::EscrowState;

/// An output at an escrow address: an opaque id (txid:vout) and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Deposit {
    pub id: String,
    pub value: u64,
}

/// What the outputs seen at an escrow address are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classified {
    /// The funding the escrow accepts (or may still accept).
    pub funding: Vec<Deposit>,
    /// Outputs outside the accepted funding that were not known before.
    pub new_strays: Vec<Deposit>,
}

/// Whether the funding of an escrow in `state` is frozen.
pub const fn funding_frozen(state: &EscrowState) -> bool {
    state.funding().is_some() || state.is_settled()
}

/// Splits the outputs `seen` at the address of an escrow in `state`, whose
/// funding so far is `funding` and known strays `strays`.
pub fn classify(state: &EscrowState, funding: &[Deposit], strays: &[Deposit], seen: &[Deposit]) -> Classified {
    let known = |d: &Deposit| funding.iter().chain(strays).any(|k| k.id == d.id);
    if funding_frozen(state) {
        let mut new_strays: Vec<Deposit> = Vec::new();
        for d in seen.iter().filter(|d| !known(d)) {
            if !new_strays.iter().any(|s| s.id == d.id) {
                new_strays.push(d.clone());
            }
        }
        return Classified {
            funding: funding.to_vec(),
            new_strays,
        };
    }
    let mut all: Vec<Deposit> = funding.to_vec();
    for d in seen {
        if !all.iter().any(|k| k.id == d.id) {
            all.push(d.clone());
        }
    }
    Classified {
        funding: all,
        new_strays: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::tests::{funded, sats};

    fn d(id: &str, value: u64) -> Deposit {
        Deposit { id: id.into(), value }
    }

    #[test]
    fn before_funding_is_accepted_every_output_counts() {
        let c = classify(&EscrowState::new(), &[d("a", 10)], &[], &[d("a", 10), d("b", 5)]);
        assert_eq!(c.funding, vec![d("a", 10), d("b", 5)]);
        assert!(c.new_strays.is_empty());
    }

    #[test]
    fn after_funding_is_accepted_later_outputs_are_strays_and_the_funding_is_unchanged() {
        let _ = sats(1);
        let c = classify(&funded(), &[d("a", 10)], &[d("s", 1)], &[d("a", 10), d("s", 1), d("b", 5), d("b", 5)]);
        assert_eq!(c.funding, vec![d("a", 10)]);
        assert_eq!(c.new_strays, vec![d("b", 5)], "new, once, and known strays are not new");
    }
}
