//! STS `AssumeRole` for engine credentials: a role session whose session
//! policy allows only the data root's prefix, signed with Kiln's own key
//! (SigV4 through `object_store`'s signer), its answer parsed from STS's XML.

use kiln_core::{Error, ErrorCode, Result};
use object_store::aws::AwsCredential;
use object_store::client::{HttpClient, HttpConnector as _, HttpRequest, ReqwestConnector};
use object_store::ClientOptions;

/// Temporary credentials of one role session.
#[derive(Clone)]
pub struct TempCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// When they stop working (ms since the epoch).
    pub expiration_ms: i64,
}

impl std::fmt::Debug for TempCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration_ms", &self.expiration_ms)
            .finish_non_exhaustive()
    }
}

/// The session policy of engine credentials: objects below `prefix` (the
/// whole bucket when it is empty), and listings of that prefix only.
pub fn session_policy(bucket: &str, prefix: &str) -> String {
    let (objects, listed) = if prefix.is_empty() {
        (format!("arn:aws:s3:::{bucket}/*"), vec!["*".to_string()])
    } else {
        (
            format!("arn:aws:s3:::{bucket}/{prefix}/*"),
            vec![prefix.to_string(), format!("{prefix}/*")],
        )
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "KilnDataRootObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"
                ],
                "Resource": [objects]
            },
            {
                "Sid": "KilnDataRootListing",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [format!("arn:aws:s3:::{bucket}")],
                "Condition": {"StringLike": {"s3:prefix": listed}}
            },
            {
                "Sid": "KilnDataRootBucket",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation"],
                "Resource": [format!("arn:aws:s3:::{bucket}")]
            }
        ]
    })
    .to_string()
}

/// Where STS answers: the storage endpoint when there is one (MinIO and
/// moto serve STS there), else AWS's regional endpoint.
pub fn endpoint(
    sts_endpoint: Option<&str>,
    storage_endpoint: Option<&str>,
    region: &str,
) -> String {
    sts_endpoint
        .or(storage_endpoint)
        .map(|e| e.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
}

/// One `AssumeRole` call.
pub struct AssumeRole<'a> {
    pub endpoint: &'a str,
    pub region: &'a str,
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub policy: &'a str,
    pub duration_seconds: u64,
}

impl AssumeRole<'_> {
    /// The form body STS's query API takes.
    fn body(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRole")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", self.role_arn)
            .append_pair("RoleSessionName", self.session_name)
            .append_pair("Policy", self.policy)
            .append_pair("DurationSeconds", &self.duration_seconds.to_string())
            .finish()
    }

    pub async fn call(
        &self,
        client: &HttpClient,
        signer: &AwsCredential,
    ) -> Result<TempCredentials> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorCode::TemporarilyUnavailable,
                format!("STS AssumeRole of {} ({what}): {e}", self.role_arn),
            )
        };
        let url = format!("{}/", self.endpoint);
        let mut request: HttpRequest = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(self.body().into())
            .map_err(|e| failed("the request", &e))?;
        object_store::aws::AwsAuthorizer::new(signer, "sts", self.region)
            .authorize(&mut request, None);
        let response = client
            .execute(request)
            .await
            .map_err(|e| failed("the call", &e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| failed("the answer", &e))?;
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            let code = tag(&text, "Code").unwrap_or_default();
            let message = tag(&text, "Message").unwrap_or_default();
            return Err(failed(
                &format!("HTTP {status}"),
                &format!("{code} {message}"),
            ));
        }
        parse_credentials(&text).ok_or_else(|| failed("the answer", &"no credentials in it"))
    }
}

/// An HTTP client for STS with the store's TLS and plain-HTTP settings.
pub fn client(allow_http: bool) -> Result<HttpClient> {
    ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(allow_http))
        .map_err(|e| Error::internal("an HTTP client for STS", e))
}

fn parse_credentials(xml: &str) -> Option<TempCredentials> {
    let creds = section(xml, "Credentials")?;
    Some(TempCredentials {
        access_key_id: tag(creds, "AccessKeyId")?,
        secret_access_key: tag(creds, "SecretAccessKey")?,
        session_token: tag(creds, "SessionToken")?,
        expiration_ms: kiln_core::time::parse_rfc3339(&tag(creds, "Expiration")?)?,
    })
}

fn section<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

/// The text of the first `<name>` element, unescaped.
fn tag(xml: &str, name: &str) -> Option<String> {
    let raw = section(xml, name)?.trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn the_policy_allows_the_prefix_only() -> Outcome {
        let policy: serde_json::Value = serde_json::from_str(&session_policy("b", "kiln/root"))?;
        let statements = policy["Statement"].as_array().ok_or("no statements")?;
        assert_eq!(statements[0]["Resource"][0], "arn:aws:s3:::b/kiln/root/*");
        assert_eq!(
            statements[1]["Condition"]["StringLike"]["s3:prefix"],
            serde_json::json!(["kiln/root", "kiln/root/*"])
        );
        // No bucket-wide object access, no other actions.
        let text = policy.to_string();
        assert!(!text.contains("arn:aws:s3:::b/*"));
        assert!(!text.contains("s3:*"));
        let whole: serde_json::Value = serde_json::from_str(&session_policy("b", ""))?;
        assert_eq!(whole["Statement"][0]["Resource"][0], "arn:aws:s3:::b/*");
        Ok(())
    }

    #[test]
    fn an_answer_gives_credentials_and_an_error_its_code() -> Outcome {
        let answer = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
            <AssumeRoleResult><Credentials><AccessKeyId>ASIA1</AccessKeyId>\
            <SecretAccessKey>s/e+c</SecretAccessKey><SessionToken>t&amp;k</SessionToken>\
            <Expiration>2026-12-07T20:00:00Z</Expiration></Credentials>\
            <AssumedRoleUser><Arn>x</Arn></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>";
        let creds = parse_credentials(answer).ok_or("no credentials")?;
        assert_eq!(creds.access_key_id, "ASIA1");
        assert_eq!(creds.secret_access_key, "s/e+c");
        assert_eq!(creds.session_token, "t&k");
        assert_eq!(
            creds.expiration_ms,
            kiln_core::time::parse_rfc3339("2026-12-07T20:00:00Z").ok_or("a date")?
        );
        assert!(parse_credentials(
            "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>"
        )
        .is_none());
        assert_eq!(
            tag("<Error><Code>AccessDenied</Code></Error>", "Code").as_deref(),
            Some("AccessDenied")
        );
        assert!(!format!("{creds:?}").contains("s/e+c"));
        Ok(())
    }

    #[test]
    fn the_body_is_form_encoded() {
        let call = AssumeRole {
            endpoint: "http://127.0.0.1:1",
            region: "us-east-1",
            role_arn: "arn:aws:iam::123456789012:role/kiln",
            session_name: "kiln-c1",
            policy: "{\"a\": 1}",
            duration_seconds: 900,
        };
        let body = call.body();
        assert!(body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fkiln"));
        assert!(body.contains("Policy=%7B%22a%22%3A+1%7D"));
        assert!(body.contains("DurationSeconds=900"));
        assert_eq!(
            endpoint(None, Some("http://m:5000/"), "eu-west-1"),
            "http://m:5000"
        );
        assert_eq!(
            endpoint(None, None, "eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com"
        );
    }
}
