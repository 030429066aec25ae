//! Unit tests of `secrets`.
use super::*;
use kiln_store::SqliteStore;
use std::path::Path;

fn user(name: &str) -> Principal {
    Principal {
        name: name.into(),
        admin: false,
        groups: vec!["users".into()],
    }
}

fn secrets(dir: &Path) -> Result<Secrets> {
    let store = Arc::new(SqliteStore::open(&dir.join("k.db"))?);
    Secrets::open(
        store,
        SecretCipher::load_or_create(&dir.join("secrets.key"))?,
    )
}

#[test]
fn values_are_sealed_at_rest_and_read_back() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
    let alice = user("alice");
    {
        let s = secrets(dir.path())?;
        s.create_scope(&alice, "app", None)?;
        s.put_secret(&alice, "app", "db-password", b"hunter2-plaintext")?;
    }
    let db = std::fs::read(dir.path().join("k.db")).map_err(|e| Error::internal("t", e))?;
    let wal = std::fs::read(dir.path().join("k.db-wal")).unwrap_or_default();
    let needle = b"hunter2-plaintext";
    assert!(
        !db.windows(needle.len()).any(|w| w == needle)
            && !wal.windows(needle.len()).any(|w| w == needle)
    );
    let s = secrets(dir.path())?;
    assert_eq!(
        s.get_secret(&alice, "app", "db-password")?,
        b"hunter2-plaintext"
    );
    Ok(())
}

#[test]
fn acls_are_enforced() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
    let s = secrets(dir.path())?;
    let (alice, bob) = (user("alice"), user("bob"));
    s.create_scope(&alice, "app", None)?;
    s.put_secret(&alice, "app", "k", b"v")?;
    let denied = |r: Result<Vec<u8>>| r.err().map(|e| e.code) == Some(ErrorCode::PermissionDenied);
    assert!(denied(s.get_secret(&bob, "app", "k")));
    s.put_acl(&alice, "app", "bob", AclPermission::Read)?;
    assert_eq!(s.get_secret(&bob, "app", "k")?, b"v");
    assert!(
        s.put_secret(&bob, "app", "k2", b"x").is_err(),
        "READ cannot write"
    );
    assert!(
        s.put_acl(&bob, "app", "bob", AclPermission::Manage)
            .is_err(),
        "READ cannot manage"
    );
    let admin = Principal {
        name: "admin".into(),
        admin: true,
        groups: vec![],
    };
    assert_eq!(s.get_secret(&admin, "app", "k")?, b"v");
    Ok(())
}

#[test]
fn users_group_as_initial_manager() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
    let s = secrets(dir.path())?;
    s.create_scope(&user("alice"), "shared", Some("users"))?;
    s.put_secret(&user("bob"), "shared", "k", b"v")?;
    assert_eq!(
        s.create_scope(&user("bob"), "shared", None)
            .err()
            .map(|e| e.code),
        Some(ErrorCode::ResourceAlreadyExists)
    );
    Ok(())
}

#[test]
fn tampered_ciphertext_is_refused() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
    let cipher = SecretCipher::load_or_create(&dir.path().join("key"))?;
    let sealed = cipher.seal("a/b", b"v")?;
    assert!(cipher.open("a/c", &sealed).is_err(), "bound to scope/key");
    assert_eq!(cipher.open("a/b", &sealed)?, b"v");
    Ok(())
}
