//! `[storage]`: where Kiln keeps the data user code reaches. Absent (or a
//! `root` without a scheme): the local shared tree, as always. `root =
//! "s3://bucket/prefix"`: an S3 bucket or an S3-compatible service (MinIO,
//! moto, Ceph) given by `endpoint`.

use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `s3://bucket/prefix` (the prefix may be empty).
    pub root: Option<String>,
    /// The service's URL (`http://minio:9000`); absent: AWS S3 for `region`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `bucket.host/key` requests instead of `host/bucket/key` (AWS only;
    /// MinIO and moto want path-style, the default).
    pub virtual_hosted_style: bool,
    /// Whether `http://` endpoints are allowed (test services on loopback).
    pub allow_http: bool,
    /// Credentials; absent: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN` from Kiln's environment.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// A role engines assume instead of using Kiln's key: each engine, worker
    /// pod and pipeline worker gets a session of it whose session policy
    /// allows only the root's prefix (`sts:AssumeRole` on it for Kiln's key).
    pub engine_role_arn: Option<String>,
    /// How long each such session lasts (900 to the role's maximum).
    pub engine_credentials_seconds: u64,
    /// STS's URL; absent: `endpoint` when set, else AWS's regional STS.
    pub sts_endpoint: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            root: None,
            endpoint: None,
            region: None,
            virtual_hosted_style: false,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            engine_role_arn: None,
            engine_credentials_seconds: 3600,
            sts_endpoint: None,
        }
    }
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("StorageConfig")
            .field("root", &self.root)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &shown(&self.secret_access_key))
            .field("session_token", &shown(&self.session_token))
            .field("engine_role_arn", &self.engine_role_arn)
            .field(
                "engine_credentials_seconds",
                &self.engine_credentials_seconds,
            )
            .field("sts_endpoint", &self.sts_endpoint)
            .finish()
    }
}

/// `s3://bucket/a/b/` → (`bucket`, `a/b`).
pub fn parse_root(root: &str) -> Result<(String, String), String> {
    let rest = root
        .strip_prefix("s3://")
        .or_else(|| root.strip_prefix("s3a://"))
        .ok_or_else(|| {
            format!("[storage] root {root:?}: only s3:// roots are supported (local disk is the default)")
        })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid_bucket {
        return Err(format!(
            "[storage] root {root:?}: {bucket:?} is not a bucket name"
        ));
    }
    let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(format!(
            "[storage] root {root:?}: '.' and '..' are not allowed"
        ));
    }
    // Kiln, s3fs and engines must spell the prefix the same way: plain characters only.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !parts.iter().all(|p| p.chars().all(plain)) {
        return Err(format!(
            "[storage] root {root:?}: the prefix may hold letters, digits, '-', '_' and '.' only"
        ));
    }
    Ok((bucket.to_string(), parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_parse_into_bucket_and_prefix() {
        assert_eq!(
            parse_root("s3://kiln-data/a/b/").ok(),
            Some(("kiln-data".into(), "a/b".into()))
        );
        assert_eq!(
            parse_root("s3://kiln-data").ok(),
            Some(("kiln-data".into(), String::new()))
        );
        assert!(parse_root("/var/lib/kiln").is_err());
        assert!(parse_root("s3://B/x").is_err());
        assert!(parse_root("s3://kiln-data/../x").is_err());
        assert!(parse_root("s3://kiln-data/a%20b").is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let config: StorageConfig = toml::from_str(
            "root = \"s3://kiln-data\"\naccess_key_id = \"AKIA1\"\nsecret_access_key = \"very-secret\"\n",
        )
        .unwrap_or_default();
        let shown = format!("{config:?}");
        assert!(
            shown.contains("AKIA1") && !shown.contains("very-secret"),
            "{shown}"
        );
        assert!(toml::from_str::<StorageConfig>("rot = 1").is_err());
    }

    #[test]
    fn engine_sessions_last_between_a_quarter_hour_and_twelve_hours() {
        let config = |seconds: u64| StorageConfig {
            root: Some("s3://kiln-data/root".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            allow_http: true,
            engine_role_arn: Some("arn:aws:iam::123456789012:role/kiln-engines".into()),
            engine_credentials_seconds: seconds,
            ..StorageConfig::default()
        };
        for refused in [0, 899, 43201] {
            let opened = crate::ObjectRoot::open(&config(refused));
            assert!(
                opened.is_err_and(|e| e.message.contains("engine_credentials_seconds")),
                "{refused}"
            );
        }
        assert!(crate::ObjectRoot::open(&config(900)).is_ok_and(|r| r.is_some()));
        let parsed: StorageConfig =
            toml::from_str("engine_role_arn = \"arn:aws:iam::1:role/r\"\n").unwrap_or_default();
        assert_eq!(parsed.engine_credentials_seconds, 3600);
        assert!(!format!("{parsed:?}").is_empty());
    }
}
