//! `docs/FORMAT.md` and the code agree: every byte table marked `<!-- layout: NAME -->` lists, in
//! order, the offsets and sizes of the code's layout of that name (rows whose offset and size
//! are plain numbers; variable-length rows are prose), and names its magics and version.

use std::path::Path;

use strata_engine::format::Layout;

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/FORMAT.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the table after `<!-- layout: name -->`: every line up to the first line that
/// is not a table row.
fn table<'a>(doc: &'a str, name: &str) -> Vec<&'a str> {
    let marker = format!("<!-- layout: {name} -->");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/FORMAT.md has no table marked {marker}"));
    doc[at + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .collect()
}

/// `(offset, size)` of every row whose first two cells are numbers.
fn numeric_fields(rows: &[&str]) -> Vec<(usize, usize)> {
    rows.iter()
        .filter_map(|row| {
            let mut cells = row.split('|').map(str::trim).skip(1);
            let offset = cells.next()?.parse().ok()?;
            let size = cells.next()?.parse().ok()?;
            Some((offset, size))
        })
        .collect()
}

fn layouts() -> Vec<Layout> {
    let mut all = strata_engine::format::LAYOUTS.to_vec();
    all.extend([
        strata_wal::SEGMENT_HEADER_LAYOUT,
        strata_wal::RECORD_HEADER_LAYOUT,
        strata_index_inmem::INMEM_HEADER_LAYOUT,
        strata_index_disk::DISK_HEADER_LAYOUT,
        strata_history::presence::PRESENCE_LAYOUT,
        strata_history::ROLLBACK_LAYOUT,
    ]);
    all
}

#[test]
fn every_byte_table_matches_the_code() {
    let doc = doc();
    let layouts = layouts();
    assert_eq!(
        layouts.len(),
        11,
        "a layout was added: mark its table in FORMAT.md"
    );
    for layout in layouts {
        let rows = table(&doc, layout.name);
        assert_eq!(
            numeric_fields(&rows),
            layout.fields(),
            "offsets and sizes of table {} in docs/FORMAT.md",
            layout.name
        );
        let text = rows.join("\n");
        for magic in layout.magics {
            let magic = format!("`{}`", String::from_utf8_lossy(magic));
            assert!(
                text.contains(&magic),
                "table {} does not name magic {magic}",
                layout.name
            );
        }
        if let Some(v) = layout.version {
            assert!(
                text.contains(&format!("version ({v})")),
                "table {} does not give version {v}",
                layout.name
            );
        }
    }
}

#[test]
fn every_table_marker_names_a_layout_of_the_code() {
    let doc = doc();
    let names: Vec<&str> = layouts().iter().map(|l| l.name).collect();
    for line in doc.lines().filter(|l| l.starts_with("<!-- layout: ")) {
        let name = line
            .trim_start_matches("<!-- layout: ")
            .trim_end_matches(" -->");
        assert!(
            names.contains(&name),
            "FORMAT.md marks a table {name} that the code lacks"
        );
    }
}

#[test]
fn the_limits_the_document_quotes_are_the_codes() {
    let doc = doc();
    for (quote, value) in [
        (
            "`MAX_VALUE_BYTES` = 64 MiB",
            strata::MAX_VALUE_BYTES == 64 << 20,
        ),
        ("`MAX_KEY_BYTES` = 4096", strata::MAX_KEY_BYTES == 4096),
        (
            "`MAX_MANIFEST_BYTES` = 1 MiB",
            strata_engine::MAX_MANIFEST_BYTES == 1 << 20,
        ),
    ] {
        assert!(doc.contains(quote), "FORMAT.md no longer says {quote}");
        assert!(value, "FORMAT.md says {quote}, the code differs");
    }
}
