//! The history node's workload helpers (need the `apps` feature: strata-history).

use super::*;

/// Blocks per shard of the history workloads.
pub const HISTORY_SHARD_BLOCKS: u64 = 16;
/// Blocks of the history workloads: `0..HISTORY_BLOCKS`.
pub const HISTORY_BLOCKS: u64 = 160;

/// Opens (or creates) the history store of the history workloads, with every write synced.
pub fn open_history(dir: &Path) -> strata_history::HistoryStore {
    let options = strata_history::HistoryOptions {
        shard_blocks: HISTORY_SHARD_BLOCKS,
        durability: strata::Durability::SyncPerBatch,
        create_if_missing: true,
    };
    strata_history::HistoryStore::open(dir, options).expect("open history store")
}

/// The bytes of `column` of block `number` in the history workloads (a few to 3,000 bytes).
pub fn history_value(number: u64, column: strata_history::Column) -> Vec<u8> {
    let mut v = format!("block {number} column {}|", column.0).into_bytes();
    let len = number
        .wrapping_mul(37)
        .wrapping_add(u64::from(column.0) * 101)
        % 3000;
    v.resize(v.len().max(len as usize), b'a' + (number % 26) as u8);
    v
}

/// Writes blocks `numbers` with one `put_blocks`, each with the three columns of
/// [`HISTORY_COLUMNS`] whose bytes `value` gives.
pub fn put_history_blocks(
    store: &strata_history::HistoryStore,
    numbers: &[u64],
    value: &dyn Fn(u64, strata_history::Column) -> Vec<u8>,
) -> strata_history::Result<()> {
    let values: Vec<Vec<(strata_history::Column, Vec<u8>)>> = numbers
        .iter()
        .map(|&n| HISTORY_COLUMNS.iter().map(|&c| (c, value(n, c))).collect())
        .collect();
    let columns: Vec<Vec<(strata_history::Column, &[u8])>> = values
        .iter()
        .map(|v| v.iter().map(|(c, b)| (*c, &b[..])).collect())
        .collect();
    let blocks: Vec<strata_history::Block<'_>> = numbers
        .iter()
        .zip(&columns)
        .map(|(&number, columns)| strata_history::Block { number, columns })
        .collect();
    store.put_blocks(&blocks)
}

/// Columns of the history workloads.
pub const HISTORY_COLUMNS: [strata_history::Column; 3] = [
    strata_history::HEADER,
    strata_history::BODY,
    strata_history::RECEIPTS,
];

/// One random step of a history node on `store`: writes 1 to 8 blocks (duplicates of present
/// ones included, never into a sealed shard), rolls back, or seals a full shard. Reports
/// `op put N,N,..`, `op rollback N` or `op seal S` before the step and `acked` after it.
pub fn history_step(
    store: &strata_history::HistoryStore,
    rng: &mut rand::rngs::SmallRng,
    report: &mut dyn FnMut(String),
) {
    use rand::Rng;
    match rng.random_range(0..100) {
        0..80 => {
            let mut numbers: Vec<u64> = (0..rng.random_range(1..=8))
                .map(|_| rng.random_range(0..HISTORY_BLOCKS))
                .filter(|&n| !store.is_sealed(store.shard_of(n)))
                .collect();
            numbers.sort_unstable();
            numbers.dedup();
            let list: Vec<String> = numbers.iter().map(u64::to_string).collect();
            report(format!("op put {}", list.join(",")));
            put_history_blocks(store, &numbers, &|n, c| history_value(n, c)).expect("put_blocks");
        }
        80..88 => {
            let to = rng.random_range(0..HISTORY_BLOCKS);
            report(format!("op rollback {to}"));
            store.rollback_to(to).expect("rollback");
        }
        _ => {
            let full: Vec<u64> = (0..HISTORY_BLOCKS / HISTORY_SHARD_BLOCKS)
                .filter(|&s| store.shard_is_full(s) && !store.is_sealed(s))
                .collect();
            let Some(&shard) = full.get(rng.random_range(0..full.len().max(1))) else {
                return;
            };
            report(format!("op seal {shard}"));
            store.seal(shard).expect("seal");
        }
    }
    report("acked".into());
}
