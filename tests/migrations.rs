//! Applied migrations are never edited. A database that ran a migration
//! keeps its checksum (sqlx refuses to start against a changed one), so an
//! edit would strand every installation that already has it: change the
//! schema with a new migration instead. This test holds the checksum of
//! every migration that has landed; a new migration adds its line here in
//! the same commit, and nothing else in this list ever changes.

use sha2::{Digest, Sha256};

const LANDED: &[(&str, &str)] = &[
    (
        "0001_event_store.sql",
        "d464eef98e9ce9fbb0e26bab96d4fb6be940bab56ec855275481fe75bf62da49",
    ),
    (
        "0002_positioned_log.sql",
        "191e680d40ee1ea6ec9cef2df1e4f5315d0298b27b49a8f5c2c7fae47e09883a",
    ),
    (
        "0003_views.sql",
        "c1c022188fd4d92f35433fa89da21e9197b397205c8a796c6d7ded8785f31fbe",
    ),
    (
        "0004_audit.sql",
        "06605a5706e0a317d1ea35353390e7b01ee37931956ac968c7ea0b52c2fe726a",
    ),
    (
        "0005_dispatch.sql",
        "7c229bb4aa57f3671e5333d6c034be11d0faef20b0785e50a2398c35fb90ce3d",
    ),
    (
        "0006_security.sql",
        "86ca299d099852a2b5a8e876dd0fa564ba30908843f9fbdd7f945330b285150e",
    ),
    (
        "0007_lifecycle.sql",
        "bd01b515d927f042bd760006cd1bfd56a27226043b02e8f57caa8663ce3346ae",
    ),
    (
        "0008_log_time.sql",
        "c6de43bcaca97529df951000a1f862f3eb447ff4083fa233a32de6506c46544e",
    ),
];

#[test]
fn every_landed_migration_is_unchanged_and_every_migration_is_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the migrations directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a migration");
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, hex::encode(Sha256::digest(&bytes)))
        })
        .collect();
    found.sort();
    for (name, checksum) in LANDED {
        let now = found.iter().find(|(found, _)| found == name);
        assert_eq!(
            now.map(|(_, sum)| sum.as_str()),
            Some(*checksum),
            "migrations/{name} was removed or edited after it landed; \
             undo that and change the schema in a new migration"
        );
    }
    let unlisted: Vec<&str> = found
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !LANDED.iter().any(|(landed, _)| landed == name))
        .collect();
    assert!(
        unlisted.is_empty(),
        "new migrations {unlisted:?}: add their checksums (sha256sum migrations/…) to LANDED \
         in tests/migrations.rs in the same commit"
    );
}
