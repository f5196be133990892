//! An order-preserving byte encoding of `LedgerKey`s.
//!
//! stellar-core sorts bucket entries with `LedgerEntryIdCmp`: by entry type, then by the type's
//! key fields compared structurally, the way xdrpp compares XDR values: structs field by field,
//! unions by discriminant and then by arm, enums and signed integers as signed numbers, unsigned
//! integers as unsigned, fixed opaques byte by byte, variable opaques and strings as unsigned
//! bytes with a shorter prefix first, vectors element by element with a shorter prefix first,
//! optionals with absent first.
//!
//! XDR's own bytes do not sort that way (a length prefix comes before the bytes), so a strata
//! key is [`encode_key`]'s encoding, whose plain byte order (`memcmp`) is exactly that order:
//!
//! | XDR value | encoding |
//! | --- | --- |
//! | `unsigned int`, `unsigned hyper` | big-endian, 4 or 8 bytes |
//! | `int`, `hyper`, enum, union discriminant | sign bit flipped, big-endian |
//! | `bool` | one byte, 0 or 1 |
//! | `opaque[n]` | the n bytes |
//! | `opaque<>`, `string<>` | each byte, with 0x00 written as 0x00 0xFF; then 0x00 0x01 |
//! | `T<>` (vector) | 0x01 and the element, for each element; then 0x00 |
//! | `T*` (optional) | 0x00 when absent; 0x01 and the value when present |
//!
//! Every encoding is self-delimiting, so the encoding of one key is never a proper prefix of
//! another's of the same type, and the first four bytes are the entry type
//! ([`type_prefix`]): all keys of one type are one contiguous range.

use stellar_xdr::{
    AccountId, ClaimableBalanceId, ContractExecutable, LedgerEntryData, LedgerEntryType, LedgerKey,
    PublicKey, ScAddress, ScContractInstance, ScError, ScMap, ScVal, TrustLineAsset,
};

/// Bytes of the entry-type prefix that starts every encoded key.
pub const TYPE_PREFIX_BYTES: usize = 4;

/// The encoding of a signed 32-bit value (an enum or union discriminant).
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&((v as u32) ^ 0x8000_0000).to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&((v as u64) ^ 0x8000_0000_0000_0000).to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A variable-length opaque or string: unsigned bytes, shorter prefix first.
fn put_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// The prefix shared by the encodings of every key of type `ty`.
pub fn type_prefix(ty: LedgerEntryType) -> [u8; TYPE_PREFIX_BYTES] {
    let mut out = Vec::with_capacity(TYPE_PREFIX_BYTES);
    put_i32(&mut out, ty as i32);
    out.try_into().expect("four bytes")
}

/// Appends the order-preserving encoding of `key` to `out`.
pub fn encode_key(key: &LedgerKey, out: &mut Vec<u8>) {
    put_i32(out, key.discriminant() as i32);
    match key {
        LedgerKey::Account(k) => put_account(out, &k.account_id),
        LedgerKey::Trustline(k) => {
            put_account(out, &k.account_id);
            put_trustline_asset(out, &k.asset);
        }
        LedgerKey::Offer(k) => {
            put_account(out, &k.seller_id);
            put_i64(out, k.offer_id);
        }
        LedgerKey::Data(k) => {
            put_account(out, &k.account_id);
            put_var_bytes(out, k.data_name.0.as_slice());
        }
        LedgerKey::ClaimableBalance(k) => put_balance_id(out, &k.balance_id),
        LedgerKey::LiquidityPool(k) => out.extend_from_slice(&k.liquidity_pool_id.0 .0),
        LedgerKey::ContractData(k) => {
            put_address(out, &k.contract);
            put_scval(out, &k.key);
            put_i32(out, k.durability as i32);
        }
        LedgerKey::ContractCode(k) => out.extend_from_slice(&k.hash.0),
        LedgerKey::ConfigSetting(k) => put_i32(out, k.config_setting_id as i32),
        LedgerKey::Ttl(k) => out.extend_from_slice(&k.key_hash.0),
    }
}

/// The encoding of `key` as a new vector.
pub fn key_bytes(key: &LedgerKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_key(key, &mut out);
    out
}

/// Appends the encoding of the key of a ledger entry (`LedgerEntryIdCmp` compares entries by
/// their keys) to `out`.
pub fn encode_entry_key(data: &LedgerEntryData, out: &mut Vec<u8>) {
    encode_key(&data.to_key(), out);
}

fn put_account(out: &mut Vec<u8>, id: &AccountId) {
    let AccountId(PublicKey::PublicKeyTypeEd25519(k)) = id;
    put_i32(out, 0);
    out.extend_from_slice(&k.0);
}

fn put_trustline_asset(out: &mut Vec<u8>, asset: &TrustLineAsset) {
    put_i32(out, asset.discriminant() as i32);
    match asset {
        TrustLineAsset::Native => {}
        TrustLineAsset::CreditAlphanum4(a) => {
            out.extend_from_slice(&a.asset_code.0);
            put_account(out, &a.issuer);
        }
        TrustLineAsset::CreditAlphanum12(a) => {
            out.extend_from_slice(&a.asset_code.0);
            put_account(out, &a.issuer);
        }
        TrustLineAsset::PoolShare(p) => out.extend_from_slice(&p.0 .0),
    }
}

fn put_balance_id(out: &mut Vec<u8>, id: &ClaimableBalanceId) {
    let ClaimableBalanceId::ClaimableBalanceIdTypeV0(h) = id;
    put_i32(out, 0);
    out.extend_from_slice(&h.0);
}

fn put_address(out: &mut Vec<u8>, address: &ScAddress) {
    put_i32(out, address.discriminant() as i32);
    match address {
        ScAddress::Account(a) => put_account(out, a),
        ScAddress::Contract(c) => out.extend_from_slice(&c.0 .0),
        ScAddress::MuxedAccount(m) => {
            put_u64(out, m.id);
            out.extend_from_slice(&m.ed25519.0);
        }
        ScAddress::ClaimableBalance(b) => put_balance_id(out, b),
        ScAddress::LiquidityPool(p) => out.extend_from_slice(&p.0 .0),
        ScAddress::MuxedContract(m) => {
            put_u64(out, m.id);
            out.extend_from_slice(&m.contract_id.0 .0);
        }
    }
}

fn put_map(out: &mut Vec<u8>, map: &ScMap) {
    for entry in map.0.iter() {
        out.push(0x01);
        put_scval(out, &entry.key);
        put_scval(out, &entry.val);
    }
    out.push(0x00);
}

fn put_optional<T>(out: &mut Vec<u8>, value: Option<&T>, put: impl FnOnce(&mut Vec<u8>, &T)) {
    match value {
        None => out.push(0x00),
        Some(v) => {
            out.push(0x01);
            put(out, v);
        }
    }
}

fn put_error(out: &mut Vec<u8>, error: &ScError) {
    put_i32(out, error.discriminant() as i32);
    match error {
        ScError::Contract(code) => put_u32(out, *code),
        ScError::WasmVm(c)
        | ScError::Context(c)
        | ScError::Storage(c)
        | ScError::Object(c)
        | ScError::Crypto(c)
        | ScError::Events(c)
        | ScError::Budget(c)
        | ScError::Value(c)
        | ScError::Auth(c) => put_i32(out, *c as i32),
    }
}

fn put_executable(out: &mut Vec<u8>, executable: &ContractExecutable) {
    put_i32(out, executable.discriminant() as i32);
    match executable {
        ContractExecutable::Wasm(h) => out.extend_from_slice(&h.0),
        ContractExecutable::StellarAsset => {}
        ContractExecutable::ExternalRef(r) => {
            put_address(out, &r.executable_owner);
            put_var_bytes(out, r.tag.0.as_slice());
        }
    }
}

fn put_instance(out: &mut Vec<u8>, instance: &ScContractInstance) {
    put_executable(out, &instance.executable);
    put_optional(out, instance.storage.as_ref(), put_map);
}

fn put_scval(out: &mut Vec<u8>, v: &ScVal) {
    put_i32(out, v.discriminant() as i32);
    match v {
        ScVal::Bool(b) => out.push(u8::from(*b)),
        ScVal::Void | ScVal::LedgerKeyContractInstance => {}
        ScVal::Error(e) => put_error(out, e),
        ScVal::U32(x) => put_u32(out, *x),
        ScVal::I32(x) => put_i32(out, *x),
        ScVal::U64(x) => put_u64(out, *x),
        ScVal::I64(x) => put_i64(out, *x),
        ScVal::Timepoint(t) => put_u64(out, t.0),
        ScVal::Duration(d) => put_u64(out, d.0),
        ScVal::U128(p) => {
            put_u64(out, p.hi);
            put_u64(out, p.lo);
        }
        ScVal::I128(p) => {
            put_i64(out, p.hi);
            put_u64(out, p.lo);
        }
        ScVal::U256(p) => {
            put_u64(out, p.hi_hi);
            put_u64(out, p.hi_lo);
            put_u64(out, p.lo_hi);
            put_u64(out, p.lo_lo);
        }
        ScVal::I256(p) => {
            put_i64(out, p.hi_hi);
            put_u64(out, p.hi_lo);
            put_u64(out, p.lo_hi);
            put_u64(out, p.lo_lo);
        }
        ScVal::Bytes(b) => put_var_bytes(out, b.0.as_slice()),
        ScVal::String(s) => put_var_bytes(out, s.0.as_slice()),
        ScVal::Symbol(s) => put_var_bytes(out, s.0.as_slice()),
        ScVal::ExecutableTag(s) => put_var_bytes(out, s.0.as_slice()),
        ScVal::Vec(v) => put_optional(out, v.as_ref(), |out, vec| {
            for item in vec.0.iter() {
                out.push(0x01);
                put_scval(out, item);
            }
            out.push(0x00);
        }),
        ScVal::Map(m) => put_optional(out, m.as_ref(), put_map),
        ScVal::Address(a) => put_address(out, a),
        ScVal::ContractInstance(i) => put_instance(out, i),
        ScVal::LedgerKeyNonce(n) => put_i64(out, n.nonce),
    }
}

/// The entry types, in stellar-core's order, with the names the CLI accepts.
pub const ENTRY_TYPES: [(LedgerEntryType, &str); 10] = [
    (LedgerEntryType::Account, "account"),
    (LedgerEntryType::Trustline, "trustline"),
    (LedgerEntryType::Offer, "offer"),
    (LedgerEntryType::Data, "data"),
    (LedgerEntryType::ClaimableBalance, "claimable_balance"),
    (LedgerEntryType::LiquidityPool, "liquidity_pool"),
    (LedgerEntryType::ContractData, "contract_data"),
    (LedgerEntryType::ContractCode, "contract_code"),
    (LedgerEntryType::ConfigSetting, "config_setting"),
    (LedgerEntryType::Ttl, "ttl"),
];

/// Parses an entry type name: `account`, `trustline`, ..., `ttl` (case and `-`/`_` ignored,
/// stellar-core's `CONTRACT_DATA` spelling accepted).
pub fn parse_entry_type(name: &str) -> Option<LedgerEntryType> {
    let wanted: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    ENTRY_TYPES
        .iter()
        .find(|(_, n)| n.replace('_', "") == wanted)
        .map(|(t, _)| *t)
}

/// The CLI name of an entry type.
pub fn entry_type_name(ty: LedgerEntryType) -> &'static str {
    ENTRY_TYPES
        .iter()
        .find(|(t, _)| *t == ty)
        .map(|(_, n)| *n)
        .expect("every type is listed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_values_sort_as_signed() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        put_i64(&mut a, -1);
        put_i64(&mut b, 0);
        assert!(a < b);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        put_i32(&mut a, i32::MIN);
        put_i32(&mut b, i32::MAX);
        assert!(a < b);
    }

    #[test]
    fn shorter_string_prefix_sorts_first_and_zero_bytes_are_escaped() {
        let enc = |s: &[u8]| {
            let mut v = Vec::new();
            put_var_bytes(&mut v, s);
            v.push(0x00); // a following field that would sort low
            v
        };
        assert!(enc(b"a") < enc(b"a\0"));
        assert!(enc(b"a\0") < enc(b"a\x01"));
        assert!(enc(b"a") < enc(b"ab"));
        assert!(enc(b"b") > enc(b"ab"));
        assert!(enc(b"") < enc(b"\0"));
    }

    #[test]
    fn type_names_round_trip() {
        for (ty, name) in ENTRY_TYPES {
            assert_eq!(parse_entry_type(name), Some(ty));
            assert_eq!(entry_type_name(ty), name);
        }
        assert_eq!(
            parse_entry_type("CONTRACT_DATA"),
            Some(LedgerEntryType::ContractData)
        );
        assert_eq!(parse_entry_type("nope"), None);
    }
}
