//! Property: the byte order of encoded keys is the structural order of `LedgerKey`s that
//! stellar-core's `LedgerEntryIdCmp` uses. The reference is the derived `Ord` of the
//! stellar-xdr types, which compares exactly as xdrpp does for these types: structs field by
//! field, unions by discriminant (declared in ascending order, checked below) then arm,
//! integers by sign, byte strings unsigned with a shorter prefix first, absent optionals first.

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;
use strata_stellar::key::{key_bytes, type_prefix};
use strata_stellar::stellar_xdr::{
    AccountId, ContractDataDurability, ContractId, Hash, LedgerKey, LedgerKeyContractData,
    LedgerKeyData, PublicKey, ScAddress, ScMap, ScMapEntry, ScSymbol, ScVal, ScVec, String64,
    Uint256,
};

fn arbitrary_key(bytes: &[u8]) -> Option<LedgerKey> {
    LedgerKey::arbitrary(&mut Unstructured::new(bytes)).ok()
}

fn check_pair(a: &LedgerKey, b: &LedgerKey) -> Result<(), TestCaseError> {
    let (ea, eb) = (key_bytes(a), key_bytes(b));
    prop_assert_eq!(ea.cmp(&eb), a.cmp(b), "{:?} vs {:?}", a, b);
    prop_assert_eq!(&ea[..4], &type_prefix(a.discriminant())[..]);
    Ok(())
}

/// Byte strings over a tiny alphabet, so that equal prefixes and zero bytes are common.
fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xff]), 0..4)
}

fn symbol() -> impl Strategy<Value = ScVal> {
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'_']), 0..4)
        .prop_map(|s| ScVal::Symbol(ScSymbol(s.try_into().unwrap())))
}

fn scval() -> impl Strategy<Value = ScVal> {
    let leaf = prop_oneof![
        symbol(),
        small_bytes().prop_map(|b| ScVal::Bytes(b.try_into().unwrap())),
        small_bytes().prop_map(|b| ScVal::String(b.try_into().unwrap())),
        any::<i64>().prop_map(|v| ScVal::I64(v % 3)),
        any::<u32>().prop_map(|v| ScVal::U32(v % 3)),
        any::<bool>().prop_map(ScVal::Bool),
        Just(ScVal::Void),
        Just(ScVal::LedgerKeyContractInstance),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::option::of(prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|v| ScVal::Vec(v.map(|v| ScVec(v.try_into().unwrap())))),
            prop::option::of(prop::collection::vec((inner.clone(), inner), 0..3)).prop_map(|m| {
                ScVal::Map(m.map(|m| {
                    ScMap(
                        m.into_iter()
                            .map(|(key, val)| ScMapEntry { key, val })
                            .collect::<Vec<_>>()
                            .try_into()
                            .unwrap(),
                    )
                }))
            }),
        ]
    })
}

fn contract_data_key() -> impl Strategy<Value = LedgerKey> {
    (0u8..2, scval(), any::<bool>()).prop_map(|(c, key, persistent)| {
        LedgerKey::ContractData(LedgerKeyContractData {
            contract: ScAddress::Contract(ContractId(Hash([c; 32]))),
            key,
            durability: if persistent {
                ContractDataDurability::Persistent
            } else {
                ContractDataDurability::Temporary
            },
        })
    })
}

fn data_key() -> impl Strategy<Value = LedgerKey> {
    (0u8..2, small_bytes()).prop_map(|(a, name)| {
        LedgerKey::Data(LedgerKeyData {
            account_id: AccountId(PublicKey::PublicKeyTypeEd25519(Uint256([a; 32]))),
            data_name: String64(name.try_into().unwrap()),
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Arbitrary keys of every type, the second a mutation of the first so that they often
    /// share a type and a prefix.
    #[test]
    fn arbitrary_keys_sort_like_their_encodings(
        base in prop::collection::vec(any::<u8>(), 0..300),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut other = base.clone();
        for (i, v) in edits {
            if !other.is_empty() {
                let i = i.index(other.len());
                other[i] = v;
            }
        }
        if let (Some(a), Some(b)) = (arbitrary_key(&base), arbitrary_key(&other)) {
            check_pair(&a, &b)?;
            check_pair(&b, &a)?;
            check_pair(&a, &a)?;
        }
    }

    /// CONTRACT_DATA keys with nested symbols, strings, vectors and maps of different lengths:
    /// where XDR byte order and `LedgerEntryIdCmp` disagree.
    #[test]
    fn contract_data_keys_sort_like_their_encodings(a in contract_data_key(), b in contract_data_key()) {
        check_pair(&a, &b)?;
    }

    /// DATA keys with names of different lengths.
    #[test]
    fn data_keys_sort_like_their_encodings(a in data_key(), b in data_key()) {
        check_pair(&a, &b)?;
    }
}

/// The derived order compares union arms in declaration order; it equals the XDR
/// discriminant order only if the arms are declared in ascending discriminant order.
#[test]
fn union_arms_are_declared_in_discriminant_order() {
    use strata_stellar::stellar_xdr::{
        AssetType, ConfigSettingId, ContractExecutableType, LedgerEntryType, ScAddressType,
        ScErrorCode, ScErrorType, ScValType,
    };
    fn ascending(values: &[i32]) -> bool {
        values.windows(2).all(|w| w[0] < w[1])
    }
    assert!(ascending(&LedgerEntryType::VARIANTS.map(|v| v as i32)));
    assert!(ascending(&ScValType::VARIANTS.map(|v| v as i32)));
    assert!(ascending(&ScAddressType::VARIANTS.map(|v| v as i32)));
    assert!(ascending(&ScErrorType::VARIANTS.map(|v| v as i32)));
    assert!(ascending(&ScErrorCode::VARIANTS.map(|v| v as i32)));
    assert!(ascending(&ConfigSettingId::VARIANTS.map(|v| v as i32)));
    assert!(ascending(&AssetType::VARIANTS.map(|v| v as i32)));
    assert!(ascending(
        &ContractExecutableType::VARIANTS.map(|v| v as i32)
    ));
}

/// The arbitrary strategy above does produce keys of every type (it is not vacuous).
#[test]
fn arbitrary_bytes_make_keys_of_every_type() {
    let mut seen = std::collections::BTreeSet::new();
    let mut made = 0;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..200)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        if let Some(k) = arbitrary_key(&bytes) {
            made += 1;
            seen.insert(k.discriminant() as i32);
        }
    }
    assert!(made > 1000, "{made} keys from 2000 inputs");
    assert_eq!(seen.len(), 10, "{seen:?}");
}
