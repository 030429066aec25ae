//! The data root on an object store: one `ObjectRoot` per Kiln, over
//! `object_store`'s S3 client (the library Delta-rs, DataFusion and Sail use).

use std::sync::Arc;

use futures_util::TryStreamExt as _;
use kiln_core::{Error, Result};
use object_store::aws::AmazonS3Builder;
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::config::{parse_root, StorageConfig};

pub struct ObjectRoot {
    store: Arc<dyn ObjectStore>,
    /// The same store, for uploads whose parts arrive one request each.
    multipart: Arc<dyn MultipartStore>,
    bucket: String,
    prefix: String,
    config: StorageConfig,
    /// The runtime the store's connections live on, for calls from blocking
    /// code ([`ObjectRoot::block_on`]).
    runtime: Option<tokio::runtime::Handle>,
    /// Where multipart uploads in progress are written down (`journal`).
    pub(crate) journal: std::sync::OnceLock<std::path::PathBuf>,
    /// Kiln's own credentials (what signs its STS calls).
    credentials: Option<object_store::aws::AwsCredentialProvider>,
}

impl ObjectRoot {
    /// The configured object store root; `None` when `[storage] root` is unset.
    pub fn open(config: &StorageConfig) -> Result<Option<Arc<Self>>> {
        let Some(root) = config.root.as_deref().filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        let (bucket, prefix) = parse_root(root).map_err(Error::invalid)?;
        // Both end up inside s3fs's `-o` list: no option may be smuggled in.
        for (name, value) in [("endpoint", &config.endpoint), ("region", &config.region)] {
            if value
                .as_deref()
                .is_some_and(|v| v.contains([',', ' ', '\t', '\n']))
            {
                return Err(Error::invalid(format!(
                    "[storage] {name}: commas and spaces are not allowed"
                )));
            }
        }
        if config.engine_role_arn.is_some()
            && !(900..=43200).contains(&config.engine_credentials_seconds)
        {
            return Err(Error::invalid(
                "[storage] engine_credentials_seconds must be between 900 and 43200",
            ));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let store = builder
            .build()
            .map_err(|e| Error::invalid(format!("[storage] root {root}: {e}")))?;
        let store = Arc::new(store);
        Ok(Some(Arc::new(Self {
            credentials: Some(store.credentials().clone()),
            multipart: store.clone(),
            store,
            bucket,
            prefix,
            config: config.clone(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            journal: std::sync::OnceLock::new(),
        })))
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn multipart(&self) -> &Arc<dyn MultipartStore> {
        &self.multipart
    }

    /// A root over any store (unit tests use `object_store`'s in-memory one).
    pub fn with_store<S: ObjectStore + MultipartStore>(
        store: Arc<S>,
        bucket: &str,
        prefix: &str,
    ) -> Self {
        Self {
            multipart: store.clone(),
            store,
            bucket: bucket.into(),
            prefix: prefix.into(),
            config: StorageConfig::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            journal: std::sync::OnceLock::new(),
            credentials: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_engine_role(&mut self, role_arn: &str) {
        self.config.engine_role_arn = Some(role_arn.to_string());
    }

    /// Kiln's own credentials, for signing its STS calls.
    pub async fn signing_credential(&self) -> Result<object_store::aws::AwsCredential> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| Error::internal("sign an STS call", "the store has no credentials"))?;
        provider
            .get_credential()
            .await
            .map(|c| object_store::aws::AwsCredential {
                key_id: c.key_id.clone(),
                secret_key: c.secret_key.clone(),
                token: c.token.clone(),
            })
            .map_err(|e| Error::internal("Kiln's object store credentials", e))
    }

    /// The key of `rel` (a `/`-separated path below the root), kept as
    /// written (no percent-encoding: s3fs and engines name objects by their
    /// raw names); `.`, `..`, empty and control-character segments are refused.
    pub fn key(&self, rel: &str) -> Result<Key> {
        Key::parse(self.joined(rel)).map_err(|e| Error::invalid(format!("Invalid path {rel}: {e}")))
    }

    /// `prefix/rel` without empty segments.
    fn joined(&self, rel: &str) -> String {
        let parts: Vec<&str> = self
            .prefix
            .split('/')
            .chain(rel.split('/'))
            .filter(|p| !p.is_empty())
            .collect();
        parts.join("/")
    }

    /// `s3://bucket/prefix/rel`, as engines name it.
    pub fn url(&self, rel: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.joined(rel))
    }

    /// Runs an object-store call from blocking code: on a worker of the
    /// multi-threaded runtime the worker first hands its other tasks on
    /// (`block_in_place`); on a plain thread the call runs on the runtime the
    /// root was opened on. A single-threaded runtime cannot wait for itself.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> Result<F::Output> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                Ok(tokio::task::block_in_place(|| handle.block_on(f)))
            }
            Ok(_) => Err(Error::internal(
                "reach object storage",
                "a blocking call on a single-threaded runtime",
            )),
            Err(_) => match &self.runtime {
                Some(handle) => Ok(handle.block_on(f)),
                None => Err(Error::internal(
                    "reach object storage",
                    "no runtime to run the call on",
                )),
            },
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Checks at start that the root works as Kiln needs: a put, a
    /// conditional put that must be refused (`If-None-Match: *`, which Delta
    /// commits rely on), a listing and deletes, under `<root>/.kiln-check/`.
    pub async fn check(&self) -> Result<()> {
        let failed = |what: &str, e: object_store::Error| {
            Error::invalid(format!(
                "[storage] root s3://{}/{}: {what} failed: {e}",
                self.bucket, self.prefix
            ))
        };
        let key = self.key(&format!(".kiln-check/{}", kiln_core::ids::random_hex(8)))?;
        self.store
            .put(&key, PutPayload::from_static(b"kiln"))
            .await
            .map_err(|e| failed("a put", e))?;
        let again = self
            .store
            .put_opts(
                &key,
                PutPayload::from_static(b"again"),
                PutOptions::from(PutMode::Create),
            )
            .await;
        let conditional = match again {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(object_store::Error::Precondition { .. }) => Ok(()),
            Ok(_) => Err(Error::invalid(format!(
                "[storage] root s3://{}/{}: the service ignored If-None-Match (a put over an existing object succeeded); Delta commits need it",
                self.bucket, self.prefix
            ))),
            Err(e) => Err(failed("a conditional put", e)),
        };
        let listed: Vec<_> = self
            .store
            .list(Some(&self.key(".kiln-check")?))
            .try_collect()
            .await
            .map_err(|e| failed("a listing", e))?;
        for object in listed {
            self.store
                .delete(&object.location)
                .await
                .map_err(|e| failed("a delete", e))?;
        }
        conditional
    }

    /// What an engine or a FUSE mount needs to reach the root with Kiln's
    /// own key, as the variables object_store reads (`AWS_*`).
    pub fn engine_env(&self) -> Vec<(String, String)> {
        let mut env = self.store_env();
        for (value, var) in [
            (&self.config.access_key_id, "AWS_ACCESS_KEY_ID"),
            (&self.config.secret_access_key, "AWS_SECRET_ACCESS_KEY"),
            (&self.config.session_token, "AWS_SESSION_TOKEN"),
        ] {
            if let Some(v) = value.clone().or_else(|| std::env::var(var).ok()) {
                env.push((var.to_string(), v));
            }
        }
        env
    }

    /// The store's settings without credentials (endpoint, style, region).
    pub fn store_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        let mut set = |k: &str, v: &str| env.push((k.to_string(), v.to_string()));
        if let Some(endpoint) = &self.config.endpoint {
            set("AWS_ENDPOINT", endpoint);
        }
        if self.config.allow_http {
            set("AWS_ALLOW_HTTP", "true");
        }
        if self.config.virtual_hosted_style {
            set("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "true");
        }
        let region = self.region();
        set("AWS_REGION", &region);
        env
    }

    pub fn region(&self) -> String {
        self.config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into())
    }
}
