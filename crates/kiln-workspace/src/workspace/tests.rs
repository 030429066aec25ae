//! Unit tests of `workspace`.
use super::*;
use kiln_store::SqliteStore;

fn ws() -> Result<Workspace> {
    Workspace::open(Arc::new(SqliteStore::open_in_memory()?))
}

#[test]
fn source_notebooks_are_recognised() -> Result<()> {
    let w = ws()?;
    w.mkdirs("/Users/a@x")?;
    let nb = "# Databricks notebook source\nprint(1)\n\n# COMMAND ----------\n\nprint(2)\n";
    let o = w.import("/Users/a@x/nb", Format::Auto, None, nb.as_bytes(), false)?;
    assert_eq!(
        (o.object_type, o.language),
        (ObjectType::Notebook, Some(Language::Python))
    );
    assert_eq!(cells(Language::Python, nb), vec!["print(1)", "print(2)"]);
    let sql = w.import("/Users/a@x/q.sql", Format::Source, None, b"SELECT 1", false)?;
    assert_eq!(sql.language, Some(Language::Sql));
    assert_eq!(
        w.export("/Users/a@x/q.sql", None)?.0,
        b"-- Databricks notebook source\nSELECT 1"
    );
    let file = w.import(
        "/Users/a@x/data.bin",
        Format::Auto,
        None,
        &[0, 159, 255],
        false,
    )?;
    assert_eq!(file.object_type, ObjectType::File);
    assert_eq!(w.export("/Users/a@x/data.bin", None)?.0, vec![0, 159, 255]);
    Ok(())
}

#[test]
fn jupyter_round_trip() -> Result<()> {
    let w = ws()?;
    let ipynb = br#"{"cells": [{"cell_type": "code", "source": ["x = 1\n", "x"]}, {"cell_type": "markdown", "source": "hi"}], "metadata": {"language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}"#;
    w.import("/Shared/j", Format::Jupyter, None, ipynb, false)?;
    let (out, ext) = w.export("/Shared/j", Some(Format::Jupyter))?;
    assert_eq!(ext, "ipynb");
    let value: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| Error::internal("t", e))?;
    assert_eq!(value["cells"][0]["source"], "x = 1\nx");
    Ok(())
}

#[test]
fn bad_paths_and_conflicts_change_nothing() -> Result<()> {
    let w = ws()?;
    assert!(w
        .import("relative", Format::Raw, None, b"x", false)
        .is_err());
    assert!(w
        .import("/Shared/../etc", Format::Raw, None, b"x", false)
        .is_err());
    assert_eq!(
        w.import("/nope/x", Format::Raw, None, b"x", false)
            .err()
            .map(|e| e.code),
        Some(ErrorCode::ResourceDoesNotExist)
    );
    w.import("/Shared/f", Format::Raw, None, b"one", false)?;
    assert_eq!(
        w.import("/Shared/f", Format::Raw, None, b"two", false)
            .err()
            .map(|e| e.code),
        Some(ErrorCode::ResourceAlreadyExists)
    );
    assert_eq!(w.export("/Shared/f", None)?.0, b"one");
    w.import("/Shared/f", Format::Raw, None, b"two", true)?;
    assert_eq!(w.export("/Shared/f", None)?.0, b"two");
    w.mkdirs("/Shared/d/e")?;
    assert_eq!(
        w.delete("/Shared/d", false).err().map(|e| e.code),
        Some(ErrorCode::DirectoryNotEmpty)
    );
    w.delete("/Shared/d", true)?;
    assert!(w.get("/Shared/d/e").is_err());
    assert!(w.delete("/Shared", true).is_err());
    Ok(())
}

/// A bounded fuzz run over notebook imports: random bytes, mangled SOURCE
/// headers and mangled Jupyter JSON, in every format, never panic (each is a
/// notebook, a file, or an INVALID_PARAMETER_VALUE).
#[test]
fn fuzz_imports_never_panic() {
    let mut rng = kiln_core::fuzz::Rng::new(0x2545_F491_4F6C_DD1D);
    let mut next = move || rng.next_u64();
    const PIECES: &[&str] = &[
        "# Databricks notebook source\n",
        "-- Databricks notebook source\n",
        "\n# COMMAND ----------\n",
        "\n-- COMMAND ----------\n",
        "# MAGIC %sql\n",
        "{\"cells\": [",
        "{\"cell_type\": \"code\", \"source\": [\"x\"]}",
        "\"metadata\": {\"language_info\": {\"name\": \"python\"}}",
        "{\"nbformat\": 4, ",
        "]",
        "}",
        ",",
        "null",
        "\u{0}",
        "print(1)",
        "\u{fffd}",
    ];
    let formats = [Format::Source, Format::Auto, Format::Jupyter, Format::Raw];
    let paths = ["/x/nb", "/x/nb.py", "/x/q.sql", "/x/n.ipynb", "/x/r.scala"];
    for _ in 0..5_000 {
        let mut content: Vec<u8> = Vec::new();
        for _ in 0..next() % 10 {
            if next() % 4 == 0 {
                content.push((next() % 256) as u8);
            } else {
                content
                    .extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize].as_bytes());
            }
        }
        let format = formats[(next() % 4) as usize];
        let path = paths[(next() % paths.len() as u64) as usize];
        let language = [None, Some(Language::Python), Some(Language::Sql)][(next() % 3) as usize];
        if let Ok((_, Some(language), stored)) =
            formats::interpret(path, format, language, &content)
        {
            let _ = cells(language, &String::from_utf8_lossy(&stored));
        }
    }
}
