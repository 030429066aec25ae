//! Integration tests: boot the real server (real store, real Sail engines) on a
//! loopback port with a temporary data dir and talk HTTP to it.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_server::Config;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Server {
    base: String,
    token: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<kiln_core::Result<()>>,
    http: Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn start(
    dir: &Path,
    configure: impl FnOnce(&mut Config),
) -> Result<Server, Box<dyn std::error::Error>> {
    let mut config = Config {
        port: free_port(),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    // Never the default 5432 (a system Postgres holds it on many machines).
    config.lakebase.proxy_port = 0;
    // Nor the default HTTPS port: these tests run side by side.
    config.server.https_port = free_port();
    configure(&mut config);
    let base = format!("http://127.0.0.1:{}", config.port);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kiln_server::serve(config, async move {
        let _ = stopped.await;
    }));
    let http = Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while http.get(format!("{base}/health")).send().await.is_err() {
        if task.is_finished() {
            let outcome = task.await?;
            return Err(format!("server stopped before becoming healthy: {outcome:?}").into());
        }
        if Instant::now() > deadline {
            return Err("server did not become healthy".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = std::fs::read_to_string(dir.join("admin.token"))?
        .trim()
        .to_string();
    Ok(Server {
        base,
        token,
        stop: Some(stop),
        task,
        http,
    })
}

impl Server {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Value), reqwest::Error> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value), reqwest::Error> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn wait_state(
        &self,
        cluster_id: &str,
        want: &str,
    ) -> Result<Value, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, cluster) = self
                .get(&format!("/api/2.1/clusters/get?cluster_id={cluster_id}"))
                .await?;
            if cluster["state"] == want {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "cluster stuck in {}: {}",
                    cluster["state"], cluster["state_message"]
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) -> TestResult {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await??;
        Ok(())
    }
}

fn port_of(cluster: &Value) -> u16 {
    cluster["default_tags"]["KilnSparkConnectUrl"]
        .as_str()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_missing_and_bad_credentials() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), |_| {}).await?;
    let health = server
        .http
        .get(format!("{}/health", server.base))
        .send()
        .await?;
    assert_eq!(health.status(), StatusCode::OK);
    for path in [
        "/api/2.1/clusters/list",
        "/api/2.0/token/list",
        "/api/openapi.json",
        "/api/9.9/nothing",
    ] {
        let response = server
            .http
            .get(format!("{}{path}", server.base))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = response.json().await?;
        assert_eq!(body["error_code"], "UNAUTHENTICATED");
        let bad = server
            .http
            .get(format!("{}{path}", server.base))
            .bearer_auth("dapi-nope")
            .send()
            .await?;
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_databricks_shape_and_change_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), |_| {}).await?;
    let (status, body) = server
        .get("/api/2.1/clusters/get?cluster_id=0000-000000-missing")
        .await?;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_PARAMETER_VALUE"))
    );
    assert_eq!(
        body["message"],
        "Cluster 0000-000000-missing does not exist"
    );
    let (status, body) = server
        .post(
            "/api/2.1/clusters/create",
            json!({"num_workers": "two", "spark_version": "16.4.x-scala2.12"}),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("num_workers"),
        "{body}"
    );
    let (status, body) = server
        .post("/api/2.1/clusters/create", json!({"cluster_name": "x"}))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("spark_version"),
        "{body}"
    );
    let raw = server
        .http
        .post(format!("{}/api/2.1/clusters/create", server.base))
        .bearer_auth(&server.token)
        .body("{\"spark_version\": ")
        .send()
        .await?;
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        raw.json::<Value>().await?["error_code"],
        "MALFORMED_REQUEST"
    );
    let (_, list) = server.get("/api/2.1/clusters/list").await?;
    assert_eq!(
        list["clusters"],
        json!([]),
        "failed requests created nothing"
    );
    let (status, body) = server.get("/api/2.0/nothing/here").await?;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ENDPOINT_NOT_FOUND"))
    );
    let (status, body) = server.get("/api/2.1/jobs/runs/export?run_id=1").await?;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (StatusCode::NOT_IMPLEMENTED, Some("NOT_IMPLEMENTED"))
    );
    let (status, body) = server.get("/api/2.0/sql/queries").await?;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (StatusCode::NOT_IMPLEMENTED, Some("NOT_IMPLEMENTED"))
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), |c| {
        c.rate_limit.requests_per_second = 1.0;
        c.rate_limit.burst = 2.0;
    })
    .await?;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let response = server
            .http
            .get(format!("{}/api/2.1/clusters/list", server.base))
            .bearer_auth(&server.token)
            .send()
            .await?;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_runs_a_real_engine_and_survives_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), |_| {}).await?;
    let (status, created) = server
        .post(
            "/api/2.1/clusters/create",
            json!({"cluster_name": "it", "spark_version": "16.4.x-scala2.12", "num_workers": 0}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["cluster_id"]
        .as_str()
        .ok_or("clusters/create answered no cluster_id")?
        .to_string();
    let (_, pending) = server
        .get(&format!("/api/2.1/clusters/get?cluster_id={id}"))
        .await?;
    assert!(pending["state"] == "PENDING" || pending["state"] == "RUNNING");
    let running = server.wait_state(&id, "RUNNING").await?;
    let port = port_of(&running);
    let rows = kiln_compute::spark_connect::count_rows(
        port,
        "SELECT * FROM range(7)",
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(rows, 7, "the engine answers a real query");

    // Terminate: the engine goes away.
    let (status, _) = server
        .post("/api/2.1/clusters/delete", json!({"cluster_id": id}))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let terminated = server.wait_state(&id, "TERMINATED").await?;
    assert_eq!(terminated["termination_reason"]["code"], "USER_REQUEST");
    assert!(
        kiln_compute::spark_connect::count_rows(port, "SELECT 1", Duration::from_secs(2))
            .await
            .is_err()
    );
    let (status, body) = server
        .post("/api/2.1/clusters/restart", json!({"cluster_id": id}))
        .await?;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_STATE"))
    );

    // Start again, then stop Kiln and start it on the same data dir.
    server
        .post("/api/2.1/clusters/start", json!({"cluster_id": id}))
        .await?;
    server.wait_state(&id, "RUNNING").await?;
    let (_, token) = server
        .post(
            "/api/2.0/token/create",
            json!({"comment": "kept", "lifetime_seconds": 3600}),
        )
        .await?;
    let second_token = token["token_value"]
        .as_str()
        .ok_or("token/create answered no token_value")?
        .to_string();
    server.stop().await?;

    let server = start(dir.path(), |_| {}).await?;
    let listed = server
        .http
        .get(format!("{}/api/2.0/token/list", server.base))
        .bearer_auth(&second_token)
        .send()
        .await?;
    assert_eq!(
        listed.status(),
        StatusCode::OK,
        "an acknowledged token survives a restart"
    );
    let running = server.wait_state(&id, "RUNNING").await?;
    let rows = kiln_compute::spark_connect::count_rows(
        port_of(&running),
        "SELECT 1",
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(rows, 1);
    let (_, events) = server
        .post(
            "/api/2.1/clusters/events",
            json!({"cluster_id": id, "order": "ASC", "limit": 500}),
        )
        .await?;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds.first(), Some(&"CREATING"));
    for kind in ["RUNNING", "TERMINATING", "STARTING"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    server.stop().await
}
