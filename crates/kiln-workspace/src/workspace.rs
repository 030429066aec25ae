//! Workspace files and notebooks (Workspace API 2.0), stored durably in the
//! store (one record per object, content included) and cached in memory.
//!
//! Notebooks are kept as SOURCE text; a SOURCE notebook is recognised by its
//! header (`# Databricks notebook source`, `-- Databricks notebook source`, …)
//! and cells are separated by `COMMAND ----------` lines. `/`, `/Users`,
//! `/Shared` and every user's home folder always exist.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use kiln_core::{time::now_ms, Error, ErrorCode, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};

mod formats;

pub use formats::cells;
use formats::{interpret, to_jupyter};

const KIND: &str = "workspace";
const PROTECTED: &[&str] = &["/", "/Users", "/Shared"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectType {
    Directory,
    Notebook,
    File,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "DIRECTORY",
            Self::Notebook => "NOTEBOOK",
            Self::File => "FILE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Language {
    Python,
    Sql,
    Scala,
    R,
}

impl Language {
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_uppercase().as_str() {
            "PYTHON" => Ok(Self::Python),
            "SQL" => Ok(Self::Sql),
            "SCALA" => Ok(Self::Scala),
            "R" => Ok(Self::R),
            _ => Err(Error::invalid(format!(
                "Invalid language {value}: use PYTHON, SQL, SCALA or R"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "PYTHON",
            Self::Sql => "SQL",
            Self::Scala => "SCALA",
            Self::R => "R",
        }
    }

    fn comment(self) -> &'static str {
        match self {
            Self::Python | Self::R => "#",
            Self::Sql => "--",
            Self::Scala => "//",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Python => "py",
            Self::Sql => "sql",
            Self::Scala => "scala",
            Self::R => "r",
        }
    }

    fn from_extension(path: &str) -> Option<Self> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "py" => Some(Self::Python),
            "sql" => Some(Self::Sql),
            "scala" => Some(Self::Scala),
            "r" => Some(Self::R),
            _ => None,
        }
    }

    fn header(self) -> String {
        format!("{} Databricks notebook source", self.comment())
    }

    fn separator(self) -> String {
        format!("{} COMMAND ----------", self.comment())
    }
}

/// The notebook language a SOURCE text declares in its first line, if any.
pub fn detect_notebook(text: &str) -> Option<Language> {
    let first = text.lines().next()?.trim();
    [Language::Python, Language::Sql, Language::Scala]
        .into_iter()
        .find(|l| first == l.header())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub path: String,
    pub object_id: i64,
    pub object_type: ObjectType,
    pub language: Option<Language>,
    /// base64 of the content (notebook source text, or file bytes)
    pub content: String,
    pub created_at: i64,
    pub modified_at: i64,
}

impl ObjectRecord {
    pub fn bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.content)
            .unwrap_or_default()
    }
}

/// Import formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Auto,
    Source,
    Jupyter,
    Raw,
}

impl Format {
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_uppercase().as_str() {
            "AUTO" => Ok(Self::Auto),
            "SOURCE" => Ok(Self::Source),
            "JUPYTER" => Ok(Self::Jupyter),
            "RAW" => Ok(Self::Raw),
            other @ ("DBC" | "HTML" | "R_MARKDOWN") => Err(Error::invalid(format!(
                "Format {other} is not supported by Kiln; use SOURCE, JUPYTER, RAW or AUTO"
            ))),
            other => Err(Error::invalid(format!("Invalid format {other}"))),
        }
    }
}

pub struct Workspace {
    store: Arc<dyn Store>,
    objects: RwLock<BTreeMap<String, ObjectRecord>>,
    writer: Mutex<()>,
}

/// Normalises an absolute workspace path; `..`, empty and relative paths are refused.
pub fn normalize(path: &str) -> Result<String> {
    let path = path
        .strip_prefix("/Workspace")
        .filter(|p| p.is_empty() || p.starts_with('/'))
        .unwrap_or(path);
    if !path.starts_with('/') {
        return Err(Error::invalid(format!("Path ({path}) must be absolute")));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts
        .iter()
        .any(|p| *p == ".." || *p == "." || p.contains('\0'))
    {
        return Err(Error::invalid(format!(
            "Path ({path}) must not contain . or .. components"
        )));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn parent_of(path: &str) -> Option<String> {
    if path == "/" {
        return None;
    }
    let (parent, _) = path.rsplit_once('/')?;
    Some(if parent.is_empty() {
        "/".into()
    } else {
        parent.into()
    })
}

fn missing(path: &str) -> Error {
    Error::not_found(format!("Path ({path}) doesn't exist."))
}

impl Workspace {
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let mut objects = BTreeMap::new();
        for value in store.objects(KIND)? {
            let record: ObjectRecord = serde_json::from_value(value)
                .map_err(|e| Error::internal("read the workspace", e))?;
            objects.insert(record.path.clone(), record);
        }
        let workspace = Self {
            store,
            objects: RwLock::new(objects),
            writer: Mutex::new(()),
        };
        for dir in PROTECTED {
            workspace.ensure_dir(dir)?;
        }
        Ok(workspace)
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, BTreeMap<String, ObjectRecord>>> {
        self.objects
            .read()
            .map_err(|_| Error::internal("read the workspace", "poisoned lock"))
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.writer
            .lock()
            .map_err(|_| Error::internal("update the workspace", "poisoned lock"))
    }

    fn commit(&self, put: Vec<ObjectRecord>, delete: Vec<String>) -> Result<()> {
        let mut writes = Vec::new();
        for record in &put {
            let value = serde_json::to_value(record)
                .map_err(|e| Error::internal("write the workspace", e))?;
            writes.push(Write::PutObject {
                kind: KIND,
                key: record.path.clone(),
                record: value,
            });
        }
        writes.extend(delete.iter().map(|p| Write::DeleteObject {
            kind: KIND,
            key: p.clone(),
        }));
        self.store.commit(writes)?;
        let mut objects = self
            .objects
            .write()
            .map_err(|_| Error::internal("update the workspace", "poisoned lock"))?;
        for path in delete {
            objects.remove(&path);
        }
        for record in put {
            objects.insert(record.path.clone(), record);
        }
        Ok(())
    }

    fn new_record(
        path: &str,
        object_type: ObjectType,
        language: Option<Language>,
        content: &[u8],
    ) -> ObjectRecord {
        let now = now_ms();
        ObjectRecord {
            path: path.into(),
            object_id: (rand::random::<u64>() >> 12) as i64,
            object_type,
            language,
            content: base64::engine::general_purpose::STANDARD.encode(content),
            created_at: now,
            modified_at: now,
        }
    }

    fn ensure_dir(&self, path: &str) -> Result<()> {
        let _guard = self.guard()?;
        self.mkdirs_locked(path).map(|_| ())
    }

    /// The object with this `object_id`.
    pub fn by_id(&self, object_id: i64) -> Result<ObjectRecord> {
        self.read()?
            .values()
            .find(|o| o.object_id == object_id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Object {object_id} does not exist.")))
    }

    /// The existing directories above `path`, nearest first.
    pub fn ancestors(&self, path: &str) -> Result<Vec<ObjectRecord>> {
        let objects = self.read()?;
        let mut out = Vec::new();
        let mut current = parent_of(path);
        while let Some(p) = current {
            if let Some(o) = objects.get(&p) {
                out.push(o.clone());
            }
            current = parent_of(&p);
        }
        Ok(out)
    }

    /// `path` itself if it exists, else its nearest existing ancestor.
    pub fn nearest_existing(&self, path: &str) -> Result<ObjectRecord> {
        let path = normalize(path)?;
        let objects = self.read()?;
        let mut current = Some(path);
        while let Some(p) = current {
            if let Some(o) = objects.get(&p) {
                return Ok(o.clone());
            }
            current = parent_of(&p);
        }
        Err(missing("/"))
    }

    /// A user's home folder (`/Users/<user name>`).
    pub fn ensure_home(&self, user_name: &str) -> Result<()> {
        if user_name.contains('/') || user_name.is_empty() {
            return Ok(());
        }
        let home = format!("/Users/{user_name}");
        if self.read()?.contains_key(&home) {
            return Ok(());
        }
        self.ensure_dir(&home)
    }

    pub fn get(&self, path: &str) -> Result<ObjectRecord> {
        let path = normalize(path)?;
        self.read()?
            .get(&path)
            .cloned()
            .ok_or_else(|| missing(&path))
    }

    /// Direct children of a directory (or the object itself for a file).
    pub fn list(&self, path: &str) -> Result<Vec<ObjectRecord>> {
        let object = self.get(path)?;
        if object.object_type != ObjectType::Directory {
            return Ok(vec![object]);
        }
        let objects = self.read()?;
        let prefix = if object.path == "/" {
            "/".to_string()
        } else {
            format!("{}/", object.path)
        };
        Ok(objects
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| p.len() > prefix.len() && !p[prefix.len()..].contains('/'))
            .map(|(_, o)| o.clone())
            .collect())
    }

    /// Creates a directory and its missing parents; returns the created ones,
    /// outermost first.
    pub fn mkdirs(&self, path: &str) -> Result<Vec<ObjectRecord>> {
        let path = normalize(path)?;
        let _guard = self.guard()?;
        self.mkdirs_locked(&path)
    }

    fn mkdirs_locked(&self, path: &str) -> Result<Vec<ObjectRecord>> {
        let mut missing_dirs = Vec::new();
        let mut current = Some(path.to_string());
        while let Some(p) = current {
            match self.read()?.get(&p) {
                Some(o) if o.object_type == ObjectType::Directory => break,
                Some(_) => {
                    return Err(Error::already_exists(format!(
                        "Path ({p}) already exists and is not a directory."
                    )))
                }
                None => missing_dirs.push(p.clone()),
            }
            current = parent_of(&p);
        }
        let records: Vec<ObjectRecord> = missing_dirs
            .iter()
            .rev()
            .map(|p| Self::new_record(p, ObjectType::Directory, None, b""))
            .collect();
        self.commit(records.clone(), Vec::new())?;
        Ok(records)
    }

    /// Imports content; returns the created object.
    pub fn import(
        &self,
        path: &str,
        format: Format,
        language: Option<Language>,
        content: &[u8],
        overwrite: bool,
    ) -> Result<ObjectRecord> {
        let path = normalize(path)?;
        if PROTECTED.contains(&path.as_str()) {
            return Err(Error::invalid(format!("Cannot import over {path}")));
        }
        let (object_type, language, stored) = interpret(&path, format, language, content)?;
        let _guard = self.guard()?;
        let parent = parent_of(&path).unwrap_or_else(|| "/".into());
        match self.read()?.get(&parent) {
            Some(p) if p.object_type == ObjectType::Directory => {}
            Some(_) => {
                return Err(Error::invalid(format!(
                    "The parent ({parent}) is not a directory."
                )))
            }
            None => {
                return Err(Error::not_found(format!(
                    "The parent folder ({parent}) does not exist."
                )))
            }
        }
        let mut record = Self::new_record(&path, object_type, language, &stored);
        if let Some(existing) = self.read()?.get(&path) {
            if !overwrite || existing.object_type == ObjectType::Directory {
                return Err(Error::already_exists(format!(
                    "Path ({path}) already exists."
                )));
            }
            record.object_id = existing.object_id;
            record.created_at = existing.created_at;
        }
        self.commit(vec![record.clone()], Vec::new())?;
        Ok(record)
    }

    /// Content of a notebook or file in `format` (`None`: SOURCE for notebooks).
    pub fn export(&self, path: &str, format: Option<Format>) -> Result<(Vec<u8>, String)> {
        let object = self.get(path)?;
        match (object.object_type, format.unwrap_or(Format::Source)) {
            (ObjectType::Directory, _) => Err(Error::invalid(format!(
                "Directory ({}) cannot be exported in this format; Kiln supports no DBC archives.",
                object.path
            ))),
            (ObjectType::File, _) => Ok((
                object.bytes(),
                object
                    .path
                    .rsplit_once('.')
                    .map(|(_, e)| e.to_string())
                    .unwrap_or_default(),
            )),
            (ObjectType::Notebook, Format::Jupyter) => Ok((to_jupyter(&object)?, "ipynb".into())),
            (ObjectType::Notebook, _) => {
                let language = object.language.unwrap_or(Language::Python);
                Ok((object.bytes(), language.extension().into()))
            }
        }
    }

    /// Deletes an object (and, `recursive`, what is below it); returns what was deleted.
    pub fn delete(&self, path: &str, recursive: bool) -> Result<Vec<ObjectRecord>> {
        let path = normalize(path)?;
        if PROTECTED.contains(&path.as_str())
            || (path.starts_with("/Users/") && path.matches('/').count() == 2)
        {
            return Err(Error::new(
                ErrorCode::InvalidParameterValue,
                format!("Folder ({path}) is protected and cannot be deleted."),
            ));
        }
        let _guard = self.guard()?;
        let object = self
            .read()?
            .get(&path)
            .cloned()
            .ok_or_else(|| missing(&path))?;
        let prefix = format!("{path}/");
        let mut gone: Vec<ObjectRecord> = self
            .read()?
            .values()
            .filter(|o| o.path.starts_with(&prefix))
            .cloned()
            .collect();
        if object.object_type == ObjectType::Directory && !gone.is_empty() && !recursive {
            return Err(Error::new(
                ErrorCode::DirectoryNotEmpty,
                format!("Folder ({path}) is not empty; use recursive=true."),
            ));
        }
        gone.push(object);
        self.commit(Vec::new(), gone.iter().map(|o| o.path.clone()).collect())?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests;
