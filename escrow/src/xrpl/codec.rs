//! A strict reader and writer for the XRPL binary format, limited to what the escrow
//! transactions contain, plus the hash prefixes and the base58 address alphabet.
//!
//! Transactions are *built* with xrpl-rust's binary codec and *checked* with this
//! module: every blob Agora produces is encoded by both and must come out
//! byte-identical, and every blob a signer hands back is parsed here rather than by
//! xrpl-rust's decoder, because that decoder indexes past the end of truncated input
//! (it panics instead of failing) and silently drops fields it does not know.
//! This reader rejects anything non-canonical: fields out of order or repeated,
//! unknown types, bad lengths, trailing bytes.

use std::borrow::Cow;
use std::fmt;

use bitcoin::hashes::{sha256d, sha512, Hash};
use serde_json::Value as Json;

/// Prefix of the data a single signer signs (`STX\0`).
pub(crate) const PREFIX_SINGLE_SIGN: [u8; 4] = *b"STX\0";
/// Prefix of the data each multisigner signs (`SMT\0`).
pub(crate) const PREFIX_MULTI_SIGN: [u8; 4] = *b"SMT\0";
/// The exact bytes multisigner `signer` signs: `SMT\0`, the transaction's
/// signing fields (`unsigned`, serialized), then the signer's AccountID.
pub(crate) fn multisig_signing_data(unsigned: &[u8], signer: &super::account::XrplAddress) -> Vec<u8> {
    let mut data = Vec::with_capacity(PREFIX_MULTI_SIGN.len() + unsigned.len() + 20);
    data.extend_from_slice(&PREFIX_MULTI_SIGN);
    data.extend_from_slice(unsigned);
    data.extend_from_slice(signer.account_id());
    data
}

/// Prefix hashed with a signed transaction to give its id (`TXN\0`).
const PREFIX_TRANSACTION_ID: [u8; 4] = *b"TXN\0";

/// Largest blob accepted from outside, in bytes; escrow transactions are well under
/// 1 KiB, rippled's own limit is 1 MB.
pub(crate) const MAX_BLOB_BYTES: usize = 16 * 1024;
/// Objects in escrow transactions nest two deep (Signers → Signer); leave room, but
/// refuse pathological nesting.
const MAX_DEPTH: usize = 4;

/// The first 32 bytes of SHA-512, XRPL's general-purpose hash.
pub(crate) fn sha512_half(data: &[u8]) -> [u8; 32] {
    let full = sha512::Hash::hash(data).to_byte_array();
    let mut half = [0u8; 32];
    half.copy_from_slice(&full[..32]);
    half
}

/// The transaction id (hash) of a signed transaction blob, as uppercase hex.
pub(crate) fn transaction_id(blob: &[u8]) -> String {
    let mut data = Vec::with_capacity(4 + blob.len());
    data.extend_from_slice(&PREFIX_TRANSACTION_ID);
    data.extend_from_slice(blob);
    hex::encode_upper(sha512_half(&data))
}

/// A field's identity: its type code and its index (`nth`) within the type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) struct FieldId {
    pub type_code: u8,
    pub nth: u8,
}

impl FieldId {
    const fn new(type_code: u8, nth: u8) -> Self {
        Self { type_code, nth }
    }
}

/// The fields escrow transactions use, with the codes from the protocol definitions.
pub(crate) mod fields {
    use super::FieldId;

    pub const TRANSACTION_TYPE: FieldId = FieldId::new(1, 2);
    pub const SIGNER_WEIGHT: FieldId = FieldId::new(1, 3);
    pub const FLAGS: FieldId = FieldId::new(2, 2);
    pub const SEQUENCE: FieldId = FieldId::new(2, 4);
    pub const EXPIRATION: FieldId = FieldId::new(2, 10);
    pub const DESTINATION_TAG: FieldId = FieldId::new(2, 14);
    pub const LAST_LEDGER_SEQUENCE: FieldId = FieldId::new(2, 27);
    pub const SET_FLAG: FieldId = FieldId::new(2, 33);
    pub const SIGNER_QUORUM: FieldId = FieldId::new(2, 35);
    pub const CANCEL_AFTER: FieldId = FieldId::new(2, 36);
    pub const SETTLE_DELAY: FieldId = FieldId::new(2, 39);
    pub const CHANNEL: FieldId = FieldId::new(5, 22);
    pub const AMOUNT: FieldId = FieldId::new(6, 1);
    pub const BALANCE: FieldId = FieldId::new(6, 2);
    pub const FEE: FieldId = FieldId::new(6, 8);
    pub const PUBLIC_KEY: FieldId = FieldId::new(7, 1);
    pub const SIGNING_PUB_KEY: FieldId = FieldId::new(7, 3);
    pub const TXN_SIGNATURE: FieldId = FieldId::new(7, 4);
    pub const SIGNATURE: FieldId = FieldId::new(7, 6);
    pub const ACCOUNT: FieldId = FieldId::new(8, 1);
    pub const DESTINATION: FieldId = FieldId::new(8, 3);
    pub const OBJECT_END: FieldId = FieldId::new(14, 1);
    pub const SIGNER_ENTRY: FieldId = FieldId::new(14, 11);
    pub const SIGNER: FieldId = FieldId::new(14, 16);
    pub const ARRAY_END: FieldId = FieldId::new(15, 1);
    pub const SIGNERS: FieldId = FieldId::new(15, 3);
    pub const SIGNER_ENTRIES: FieldId = FieldId::new(15, 4);
}

/// Transaction type codes.
pub(crate) mod tx_type {
    pub const PAYMENT: u16 = 0;
    pub const ACCOUNT_SET: u16 = 3;
    pub const SIGNER_LIST_SET: u16 = 12;
    pub const PAYMENT_CHANNEL_CREATE: u16 = 13;
    pub const PAYMENT_CHANNEL_FUND: u16 = 14;
    pub const PAYMENT_CHANNEL_CLAIM: u16 = 15;
}

/// A human name for a field, for error messages.
pub(crate) fn field_name(id: FieldId) -> Cow<'static, str> {
    use fields::*;
    let known = [
        (TRANSACTION_TYPE, "TransactionType"),
        (SIGNER_WEIGHT, "SignerWeight"),
        (FieldId::new(2, 1), "NetworkID"),
        (FLAGS, "Flags"),
        (FieldId::new(2, 3), "SourceTag"),
        (SEQUENCE, "Sequence"),
        (EXPIRATION, "Expiration"),
        (DESTINATION_TAG, "DestinationTag"),
        (FieldId::new(2, 11), "InvoiceID"),
        (LAST_LEDGER_SEQUENCE, "LastLedgerSequence"),
        (SET_FLAG, "SetFlag"),
        (FieldId::new(2, 34), "ClearFlag"),
        (SIGNER_QUORUM, "SignerQuorum"),
        (CANCEL_AFTER, "CancelAfter"),
        (SETTLE_DELAY, "SettleDelay"),
        (CHANNEL, "Channel"),
        (BALANCE, "Balance"),
        (PUBLIC_KEY, "PublicKey"),
        (SIGNATURE, "Signature"),
        (FieldId::new(2, 41), "TicketSequence"),
        (FieldId::new(5, 9), "AccountTxnID"),
        (AMOUNT, "Amount"),
        (FieldId::new(6, 9), "SendMax"),
        (FieldId::new(6, 10), "DeliverMin"),
        (FEE, "Fee"),
        (SIGNING_PUB_KEY, "SigningPubKey"),
        (TXN_SIGNATURE, "TxnSignature"),
        (ACCOUNT, "Account"),
        (DESTINATION, "Destination"),
        (SIGNER_ENTRY, "SignerEntry"),
        (FieldId::new(14, 10), "Memo"),
        (SIGNER, "Signer"),
        (SIGNERS, "Signers"),
        (SIGNER_ENTRIES, "SignerEntries"),
        (FieldId::new(15, 9), "Memos"),
    ];
    known
        .iter()
        .find(|(k, _)| *k == id)
        .map(|(_, name)| Cow::Borrowed(*name))
        .unwrap_or_else(|| Cow::Owned(format!("field(type {}, nth {})", id.type_code, id.nth)))
}

/// A field's value: raw bytes for scalar types (without any length prefix), or
/// nested fields for objects and arrays.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Value {
    Leaf(Vec<u8>),
    Object(Vec<Field>),
    /// Each element is a field whose value is an object (e.g. `Signer`).
    Array(Vec<Field>),
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Field {
    pub id: FieldId,
    pub value: Value,
}

impl Field {
    pub fn u16(id: FieldId, v: u16) -> Self {
        Self::leaf(id, v.to_be_bytes().to_vec())
    }
    pub fn u32(id: FieldId, v: u32) -> Self {
        Self::leaf(id, v.to_be_bytes().to_vec())
    }
    /// An XRP amount: the "not IOU" bit clear, the "positive" bit set, then drops.
    pub fn xrp(id: FieldId, drops: u64) -> Self {
        Self::leaf(id, (drops | 0x4000_0000_0000_0000).to_be_bytes().to_vec())
    }
    pub fn blob(id: FieldId, bytes: &[u8]) -> Self {
        Self::leaf(id, bytes.to_vec())
    }
    /// A fixed-width field (a Hash256, ...), written as is.
    pub fn leaf_bytes(id: FieldId, bytes: &[u8]) -> Self {
        Self::leaf(id, bytes.to_vec())
    }
    pub fn account(id: FieldId, account_id: &[u8; 20]) -> Self {
        Self::leaf(id, account_id.to_vec())
    }
    pub fn object(id: FieldId, mut inner: Vec<Field>) -> Self {
        inner.sort_by_key(|f| f.id);
        Self {
            id,
            value: Value::Object(inner),
        }
    }
    pub fn array(id: FieldId, elements: Vec<Field>) -> Self {
        Self {
            id,
            value: Value::Array(elements),
        }
    }
    fn leaf(id: FieldId, bytes: Vec<u8>) -> Self {
        Self {
            id,
            value: Value::Leaf(bytes),
        }
    }

    pub fn as_leaf(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Leaf(b) => Some(b),
            _ => None,
        }
    }
}

/// A parsed or to-be-written top-level object (a transaction), fields in canonical order.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct StObject {
    fields: Vec<Field>,
}

/// Why a blob could not be read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

impl StObject {
    /// An object from fields in any order; they are put in canonical order.
    pub fn new(mut fields: Vec<Field>) -> Self {
        fields.sort_by_key(|f| f.id);
        Self { fields }
    }

    /// The fields, in canonical order.
    pub fn to_fields(&self) -> Vec<Field> {
        self.fields.clone()
    }

    pub fn get(&self, id: FieldId) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// A copy without the given fields.
    pub fn without(&self, ids: &[FieldId]) -> Self {
        Self {
            fields: self
                .fields
                .iter()
                .filter(|f| !ids.contains(&f.id))
                .cloned()
                .collect(),
        }
    }

    /// A copy with `field` added or replaced.
    pub fn with(&self, field: Field) -> Self {
        let mut fields: Vec<Field> = self
            .fields
            .iter()
            .filter(|f| f.id != field.id)
            .cloned()
            .collect();
        fields.push(field);
        Self::new(fields)
    }

    /// Reads a whole top-level object, strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_BLOB_BYTES {
            return err(format!(
                "blob is {} bytes, the limit is {MAX_BLOB_BYTES}",
                bytes.len()
            ));
        }
        let mut reader = Reader { buf: bytes, pos: 0 };
        let fields = reader.object_body(0, false)?;
        Ok(Self { fields })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_fields(&mut out, &self.fields);
        out
    }

    /// The first field, in canonical order, that is missing from one side or differs.
    pub fn first_difference(&self, other: &StObject) -> Option<FieldId> {
        let (mut a, mut b) = (
            self.fields.iter().peekable(),
            other.fields.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => return None,
                (Some(x), None) => return Some(x.id),
                (None, Some(y)) => return Some(y.id),
                (Some(x), Some(y)) => {
                    if x.id != y.id {
                        return Some(x.id.min(y.id));
                    }
                    if x.value != y.value {
                        return Some(x.id);
                    }
                    a.next();
                    b.next();
                }
            }
        }
    }
}

/// How a type's values are laid out.
enum Layout {
    Fixed(usize),
    Amount,
    VariableLength,
    AccountId,
    Object,
    Array,
}

fn layout(type_code: u8) -> Option<Layout> {
    Some(match type_code {
        1 => Layout::Fixed(2),  // UInt16
        2 => Layout::Fixed(4),  // UInt32
        3 => Layout::Fixed(8),  // UInt64
        4 => Layout::Fixed(16), // Hash128
        5 => Layout::Fixed(32), // Hash256
        6 => Layout::Amount,
        7 => Layout::VariableLength, // Blob
        8 => Layout::AccountId,
        14 => Layout::Object,
        15 => Layout::Array,
        16 => Layout::Fixed(1),       // UInt8
        17 => Layout::Fixed(20),      // Hash160
        19 => Layout::VariableLength, // Vector256
        21 => Layout::Fixed(24),      // Hash192
        _ => return None,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| DecodeError(format!("truncated at byte {}", self.pos)))?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn header(&mut self) -> Result<FieldId, DecodeError> {
        let first = self.byte()?;
        let mut type_code = first >> 4;
        let mut nth = first & 0x0F;
        // Codes below 16 must use the short form, so every field has one encoding.
        if type_code == 0 {
            type_code = self.byte()?;
            if type_code < 16 {
                return err(format!("non-canonical field header at byte {}", self.pos));
            }
        }
        if nth == 0 {
            nth = self.byte()?;
            if nth < 16 {
                return err(format!("non-canonical field header at byte {}", self.pos));
            }
        }
        Ok(FieldId::new(type_code, nth))
    }

    fn length_prefix(&mut self) -> Result<usize, DecodeError> {
        let b1 = usize::from(self.byte()?);
        Ok(match b1 {
            0..=192 => b1,
            193..=240 => {
                let b2 = usize::from(self.byte()?);
                193 + (b1 - 193) * 256 + b2
            }
            241..=254 => {
                let b2 = usize::from(self.byte()?);
                let b3 = usize::from(self.byte()?);
                12_481 + (b1 - 241) * 65_536 + b2 * 256 + b3
            }
            _ => return err("invalid length prefix"),
        })
    }

    /// Fields of an object up to its end marker (`terminated`) or the end of input.
    fn object_body(&mut self, depth: usize, terminated: bool) -> Result<Vec<Field>, DecodeError> {
        if depth > MAX_DEPTH {
            return err("objects nested too deep");
        }
        let mut out: Vec<Field> = Vec::new();
        loop {
            if !terminated && self.at_end() {
                return Ok(out);
            }
            let id = self.header()?;
            if id == fields::OBJECT_END {
                if terminated {
                    return Ok(out);
                }
                return err("object end marker outside an object");
            }
            if id == fields::ARRAY_END {
                return err("array end marker outside an array");
            }
            if let Some(prev) = out.last() {
                // Strictly increasing also rules out a repeated field.
                if id <= prev.id {
                    return err(format!(
                        "field {} out of canonical order or repeated",
                        field_name(id)
                    ));
                }
            }
            let value = self.value(id, depth)?;
            out.push(Field { id, value });
        }
    }

    fn value(&mut self, id: FieldId, depth: usize) -> Result<Value, DecodeError> {
        let Some(layout) = layout(id.type_code) else {
            return err(format!(
                "unsupported field type {} ({})",
                id.type_code,
                field_name(id)
            ));
        };
        Ok(match layout {
            Layout::Fixed(n) => Value::Leaf(self.take(n)?.to_vec()),
            Layout::Amount => {
                let first = *self
                    .buf
                    .get(self.pos)
                    .ok_or_else(|| DecodeError("truncated amount".into()))?;
                let len = if first & 0x80 != 0 {
                    48 // issued currency: value, currency, issuer
                } else if first & 0x20 != 0 {
                    33 // MPT amount
                } else {
                    8 // XRP drops
                };
                Value::Leaf(self.take(len)?.to_vec())
            }
            Layout::VariableLength => {
                let len = self.length_prefix()?;
                Value::Leaf(self.take(len)?.to_vec())
            }
            Layout::AccountId => {
                let len = self.length_prefix()?;
                if len != 20 {
                    return err(format!("{} is {len} bytes, not 20", field_name(id)));
                }
                Value::Leaf(self.take(len)?.to_vec())
            }
            Layout::Object => Value::Object(self.object_body(depth + 1, true)?),
            Layout::Array => {
                let mut elements = Vec::new();
                loop {
                    let element = self.header()?;
                    if element == fields::ARRAY_END {
                        break;
                    }
                    if element.type_code != 14 || element == fields::OBJECT_END {
                        return err(format!("{} holds a non-object element", field_name(id)));
                    }
                    let inner = self.object_body(depth + 1, true)?;
                    elements.push(Field {
                        id: element,
                        value: Value::Object(inner),
                    });
                }
                Value::Array(elements)
            }
        })
    }
}

fn write_header(out: &mut Vec<u8>, id: FieldId) {
    let (t, n) = (id.type_code, id.nth);
    match (t < 16, n < 16) {
        (true, true) => out.push((t << 4) | n),
        (true, false) => out.extend_from_slice(&[t << 4, n]),
        (false, true) => out.extend_from_slice(&[n, t]),
        (false, false) => out.extend_from_slice(&[0, t, n]),
    }
}

fn write_length_prefix(out: &mut Vec<u8>, len: usize) {
    // Our own blobs never approach the 918 744-byte maximum.
    if len <= 192 {
        out.push(len as u8);
    } else if len <= 12_480 {
        let l = len - 193;
        out.extend_from_slice(&[193 + (l >> 8) as u8, (l & 0xFF) as u8]);
    } else {
        let l = len - 12_481;
        out.extend_from_slice(&[
            241 + (l >> 16) as u8,
            ((l >> 8) & 0xFF) as u8,
            (l & 0xFF) as u8,
        ]);
    }
}

fn write_fields(out: &mut Vec<u8>, fields: &[Field]) {
    for field in fields {
        write_header(out, field.id);
        match &field.value {
            Value::Leaf(bytes) => {
                if matches!(field.id.type_code, 7 | 8 | 19) {
                    write_length_prefix(out, bytes.len());
                }
                out.extend_from_slice(bytes);
            }
            Value::Object(inner) => {
                write_fields(out, inner);
                write_header(out, fields::OBJECT_END);
            }
            Value::Array(elements) => {
                write_fields(out, elements);
                write_header(out, fields::ARRAY_END);
            }
        }
    }
}

/// Decodes hex from outside (either case), bounded in size.
pub(crate) fn decode_hex_blob(blob: &str) -> Result<Vec<u8>, DecodeError> {
    let blob = blob.trim();
    if blob.is_empty() {
        return err("empty blob");
    }
    if blob.len() > 2 * MAX_BLOB_BYTES {
        return err(format!("blob is longer than {MAX_BLOB_BYTES} bytes"));
    }
    hex::decode(blob).map_err(|e| DecodeError(format!("not hex: {e}")))
}

/// Serializes transaction JSON with xrpl-rust's codec, for comparison with our own.
pub(crate) fn xrpl_rust_encode(json: &Json) -> Result<Vec<u8>, String> {
    let hex_blob = xrpl::core::binarycodec::encode(json).map_err(|e| e.to_string())?;
    hex::decode(hex_blob).map_err(|e| e.to_string())
}

/// XRPL's base58 alphabet (not Bitcoin's).
const ALPHABET: &[u8; 58] = b"rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz";

/// Base58Check encoding with XRPL's alphabet: `version || payload || checksum`.
pub(crate) fn base58check_encode(version: &[u8], payload: &[u8]) -> String {
    let mut data = Vec::with_capacity(version.len() + payload.len() + 4);
    data.extend_from_slice(version);
    data.extend_from_slice(payload);
    let checksum = sha256d::Hash::hash(&data).to_byte_array();
    data.extend_from_slice(&checksum[..4]);

    let zeros = data.iter().take_while(|b| **b == 0).count();
    // Little-endian base-58 digits.
    let mut digits: Vec<u8> = Vec::with_capacity(data.len() * 138 / 100 + 1);
    for byte in &data[zeros..] {
        let mut carry = u32::from(*byte);
        for digit in digits.iter_mut() {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n(ALPHABET[0] as char, zeros));
    out.extend(
        digits
            .iter()
            .rev()
            .map(|d| ALPHABET[usize::from(*d)] as char),
    );
    out
}

/// Decodes Base58Check with XRPL's alphabet; returns the payload after `version`.
/// Fails on a wrong alphabet, checksum, version or payload length.
pub(crate) fn base58check_decode(
    text: &str,
    version: &[u8],
    payload_len: usize,
) -> Result<Vec<u8>, DecodeError> {
    // An over-long string cannot be a key or address; bound the quadratic decode.
    if text.len() > 64 {
        return err("too long");
    }
    let zeros = text.bytes().take_while(|c| *c == ALPHABET[0]).count();
    let mut bytes: Vec<u8> = Vec::new(); // little-endian base-256
    for c in text.bytes().skip(zeros) {
        let value = ALPHABET
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| DecodeError(format!("invalid base58 character {:?}", c as char)))?;
        let mut carry = value as u32;
        for byte in bytes.iter_mut() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xFF) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xFF) as u8);
            carry >>= 8;
        }
    }
    let mut data = vec![0u8; zeros];
    data.extend(bytes.iter().rev());
    if data.len() != version.len() + payload_len + 4 {
        return err("wrong length");
    }
    let (body, checksum) = data.split_at(data.len() - 4);
    if sha256d::Hash::hash(body).to_byte_array()[..4] != *checksum {
        return err("bad checksum");
    }
    if &body[..version.len()] != version {
        return err("wrong version prefix");
    }
    Ok(body[version.len()..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StObject {
        StObject::new(vec![
            Field::u16(fields::TRANSACTION_TYPE, tx_type::PAYMENT),
            Field::u32(fields::FLAGS, 0),
            Field::u32(fields::SEQUENCE, 7),
            Field::xrp(fields::AMOUNT, 1_000_000),
            Field::xrp(fields::FEE, 30),
            Field::blob(fields::SIGNING_PUB_KEY, &[]),
            Field::account(fields::ACCOUNT, &[1; 20]),
            Field::account(fields::DESTINATION, &[2; 20]),
            Field::array(
                fields::SIGNERS,
                vec![Field::object(
                    fields::SIGNER,
                    vec![
                        Field::account(fields::ACCOUNT, &[3; 20]),
                        Field::blob(fields::SIGNING_PUB_KEY, &[2; 33]),
                        Field::blob(fields::TXN_SIGNATURE, &[9; 71]),
                    ],
                )],
            ),
        ])
    }

    #[test]
    fn an_object_survives_a_round_trip() {
        let bytes = sample().to_bytes();
        assert_eq!(StObject::parse(&bytes).unwrap(), sample());
    }

    #[test]
    fn our_writer_agrees_with_xrpl_rust() {
        let json = serde_json::json!({
            "TransactionType": "Payment",
            "Flags": 0,
            "Sequence": 7,
            "Amount": "1000000",
            "Fee": "30",
            "SigningPubKey": "",
            "Account": base58check_encode(&[0], &[1; 20]),
            "Destination": base58check_encode(&[0], &[2; 20]),
            "Signers": [{"Signer": {
                "Account": base58check_encode(&[0], &[3; 20]),
                "SigningPubKey": hex::encode_upper([2u8; 33]),
                "TxnSignature": hex::encode_upper([9u8; 71]),
            }}],
        });
        assert_eq!(xrpl_rust_encode(&json).unwrap(), sample().to_bytes());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            // A cut exactly between top-level fields is a valid shorter object.
            if let Ok(obj) = StObject::parse(cut) {
                assert_eq!(obj.to_bytes(), cut);
            }
        }
    }

    #[test]
    fn out_of_order_and_repeated_fields_are_rejected() {
        let mut bytes = Vec::new();
        write_fields(
            &mut bytes,
            &[
                Field::u32(fields::SEQUENCE, 1),
                Field::u32(fields::FLAGS, 0),
            ],
        );
        assert!(StObject::parse(&bytes).is_err());
        let mut bytes = Vec::new();
        write_fields(
            &mut bytes,
            &[Field::u32(fields::FLAGS, 0), Field::u32(fields::FLAGS, 0)],
        );
        assert!(StObject::parse(&bytes).is_err());
    }

    #[test]
    fn unknown_types_and_stray_markers_are_rejected() {
        assert!(StObject::parse(&[0x01, 0x12, 0x00]).is_err()); // PathSet
        assert!(StObject::parse(&[0xE1]).is_err());
        assert!(StObject::parse(&[0xF1]).is_err());
        // A long header for a short type code.
        assert!(StObject::parse(&[0x02, 0x02, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn an_account_id_of_the_wrong_length_is_rejected() {
        let mut bytes = vec![0x81, 19];
        bytes.extend_from_slice(&[0; 19]);
        assert!(StObject::parse(&bytes).is_err());
    }

    #[test]
    fn length_prefixes_round_trip_at_their_boundaries() {
        for len in [0usize, 192, 193, 12_480, 12_481, 14_000] {
            let mut out = Vec::new();
            write_length_prefix(&mut out, len);
            let mut reader = Reader { buf: &out, pos: 0 };
            assert_eq!(reader.length_prefix().unwrap(), len);
            assert!(reader.at_end());
        }
    }

    #[test]
    fn base58check_matches_xrpl_rust_and_rejects_bad_checksums() {
        let id = [0x5Au8; 20];
        let ours = base58check_encode(&[0], &id);
        let theirs = xrpl::core::addresscodec::encode_classic_address(&id).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(base58check_decode(&ours, &[0], 20).unwrap(), id.to_vec());
        let mut tampered = ours.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'r' { b'p' } else { b'r' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(base58check_decode(&tampered, &[0], 20).is_err());
        assert!(base58check_decode("r", &[0], 20).is_err());
        assert!(base58check_decode("0OIl", &[0], 20).is_err());
    }

    #[test]
    fn first_difference_names_the_earliest_field() {
        let a = sample();
        let b = a.with(Field::xrp(fields::AMOUNT, 2));
        assert_eq!(a.first_difference(&b), Some(fields::AMOUNT));
        let c = a.without(&[fields::SEQUENCE]);
        assert_eq!(a.first_difference(&c), Some(fields::SEQUENCE));
        assert_eq!(a.first_difference(&a.clone()), None);
    }
}
