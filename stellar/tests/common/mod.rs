//! Buckets built by hand for the Stellar tests: entries of three types, framed and hashed
//! here, independently of strata's writer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use strata_stellar::bucket::EMPTY_BUCKET;
use strata_stellar::stellar_xdr::{
    AccountId, Asset, ContractDataDurability, ContractDataEntry, ContractId, ExtensionPoint, Hash,
    LedgerEntry, LedgerEntryData, LedgerEntryExt, LedgerKey, LedgerKeyContractData, LedgerKeyOffer,
    LedgerKeyTtl, Limits, OfferEntry, OfferEntryExt, Price, PublicKey, ScAddress, ScVal, TtlEntry,
    Uint256, WriteXdr,
};

pub const LIVE: i32 = 0;
pub const DEAD: i32 = 1;
pub const INIT: i32 = 2;
/// Hot archive discriminants: an archived entry, and the tombstone of a restored one.
pub const ARCHIVED: i32 = 0;
pub const RESTORED: i32 = 1;

#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Offer,
    Data,
    Ttl,
}

/// One record: discriminant, entry type, id (the key), value.
pub type Rec = (i32, Ty, u8, u32);

pub fn seller() -> AccountId {
    AccountId(PublicKey::PublicKeyTypeEd25519(Uint256([7; 32])))
}

pub fn contract() -> ScAddress {
    ScAddress::Contract(ContractId(Hash([9; 32])))
}

pub fn ledger_entry(ty: Ty, id: u8, v: u32) -> Vec<u8> {
    let data = match ty {
        Ty::Offer => LedgerEntryData::Offer(OfferEntry {
            seller_id: seller(),
            offer_id: i64::from(id),
            selling: Asset::Native,
            buying: Asset::Native,
            amount: i64::from(v),
            price: Price { n: 1, d: 1 },
            flags: 0,
            ext: OfferEntryExt::V0,
        }),
        Ty::Data => LedgerEntryData::ContractData(ContractDataEntry {
            ext: ExtensionPoint::V0,
            contract: contract(),
            key: ScVal::U32(u32::from(id)),
            durability: ContractDataDurability::Persistent,
            val: ScVal::U32(v),
        }),
        Ty::Ttl => LedgerEntryData::Ttl(TtlEntry {
            key_hash: Hash([id; 32]),
            live_until_ledger_seq: v,
        }),
    };
    LedgerEntry {
        last_modified_ledger_seq: v,
        data,
        ext: LedgerEntryExt::V0,
    }
    .to_xdr(Limits::none())
    .unwrap()
}

pub fn ledger_key(ty: Ty, id: u8) -> Vec<u8> {
    match ty {
        Ty::Offer => LedgerKey::Offer(LedgerKeyOffer {
            seller_id: seller(),
            offer_id: i64::from(id),
        }),
        Ty::Data => LedgerKey::ContractData(LedgerKeyContractData {
            contract: contract(),
            key: ScVal::U32(u32::from(id)),
            durability: ContractDataDurability::Persistent,
        }),
        Ty::Ttl => LedgerKey::Ttl(LedgerKeyTtl {
            key_hash: Hash([id; 32]),
        }),
    }
    .to_xdr(Limits::none())
    .unwrap()
}

/// A METAENTRY: version, and the `ext` (None: v0; Some(t): v1 naming bucket list type t).
pub fn meta_record(version: u32, list: Option<i32>) -> Vec<u8> {
    let mut r = (-1i32).to_be_bytes().to_vec();
    r.extend_from_slice(&version.to_be_bytes());
    match list {
        None => r.extend_from_slice(&0i32.to_be_bytes()),
        Some(t) => {
            r.extend_from_slice(&1i32.to_be_bytes());
            r.extend_from_slice(&t.to_be_bytes());
        }
    }
    r
}

/// The record of `rec`: its discriminant, then the entry (LIVE, INIT, ARCHIVED) or the key.
/// (The live DEAD and the hot archive's restored tombstone share discriminant 1 and a key.)
pub fn record(rec: Rec) -> Vec<u8> {
    let (tag, ty, id, v) = rec;
    let mut r = tag.to_be_bytes().to_vec();
    if tag == DEAD {
        r.extend(ledger_key(ty, id));
    } else {
        r.extend(ledger_entry(ty, id, v));
    }
    r
}

/// A bucket's bytes, framed by hand (a record mark with the high bit set, then the record).
pub fn bucket_bytes(meta: Option<Vec<u8>>, recs: &[Rec]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in meta.into_iter().chain(recs.iter().map(|&r| record(r))) {
        out.extend_from_slice(&(r.len() as u32 | 0x8000_0000).to_be_bytes());
        out.extend_from_slice(&r);
    }
    out
}

/// The name stellar-core gives a bucket with these bytes.
pub fn name(bytes: &[u8]) -> [u8; 32] {
    if bytes.is_empty() {
        EMPTY_BUCKET
    } else {
        Sha256::digest(bytes).into()
    }
}

pub fn write(dir: &Path, file: &str, meta: Option<Vec<u8>>, recs: &[Rec]) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, bucket_bytes(meta, recs)).unwrap();
    path
}
