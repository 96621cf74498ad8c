//! The Kubernetes backend (`kind: k8s_deployment` targets): the Deployment's `scale`
//! subresource.
//!
//! * `GET /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale` returns an
//!   `autoscaling/v1` `Scale` (`spec.replicas`, `status.replicas`,
//!   `metadata.resourceVersion`);
//! * `PATCH` of the same path with `Content-Type: application/merge-patch+json` and
//!   `{"metadata":{"resourceVersion":"<read>"},"spec":{"replicas":N}}` sets the count. The
//!   resource version makes the patch conditional: when the Deployment changed in between,
//!   the API server answers **409 Conflict**; the backend re-reads and retries (at most
//!   `max_conflict_retries` times).
//! * 401 (bad or missing token), 403 (RBAC: the service account needs `get` and `patch` on
//!   `deployments/scale`) and 404 (no such Deployment or namespace) are clear errors
//!   carrying the API's `Status` message.
//!
//! Credentials, in order: a configured kubeconfig; the in-cluster service account
//! (`/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}` with
//! `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`); `$KUBECONFIG`; `~/.kube/config`.
//! Bearer tokens only (token or tokenFile in the kubeconfig; the service-account token file
//! is re-read on every request, so rotated tokens are picked up). Client certificates and
//! exec plugins are not supported and are reported as such.
//!
//! **TLS:** `https://` API servers are verified against the kubeconfig's or service
//! account's CA bundle ([`K8sCredentials::ca_pem`], added as a root) and the public web
//! roots; `insecure-skip-tls-verify: true` turns verification off, as in kubectl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::actuators::{
    ActuatorError, Backend, BackendFuture, K8sActuatorConfig, Observed, Result,
};
use crate::recommend::policy::TargetPolicy;

/// Where the in-cluster service-account files live.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How the bearer token is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// No token (an API server that needs none, e.g. behind `kubectl proxy`).
    None,
    /// A fixed token (kubeconfig `token`).
    Static(String),
    /// A file read on every request (service account, kubeconfig `tokenFile`).
    File(PathBuf),
}

/// Everything needed to talk to an API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sCredentials {
    /// Base URL of the API server, without a trailing slash.
    pub server: String,
    /// The bearer token.
    pub token: Token,
    /// PEM CA bundle for an `https://` server.
    pub ca_pem: Option<Vec<u8>>,
    /// Default namespace (service account's, or the kubeconfig context's).
    pub namespace: Option<String>,
    /// `insecure-skip-tls-verify` of the kubeconfig.
    pub insecure_skip_tls_verify: bool,
}

fn io_err(path: &Path, e: std::io::Error) -> ActuatorError {
    ActuatorError::Credentials(format!("{}: {e}", path.display()))
}

impl K8sCredentials {
    /// The in-cluster service account from `dir` (normally [`SERVICE_ACCOUNT_DIR`]) and the
    /// `host`/`port` of `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`.
    pub fn in_cluster_from(dir: &Path, host: &str, port: &str) -> Result<K8sCredentials> {
        let token = dir.join("token");
        if !token.is_file() {
            return Err(ActuatorError::Credentials(format!(
                "no service-account token at {}",
                token.display()
            )));
        }
        let ca = dir.join("ca.crt");
        let ca_pem = if ca.is_file() {
            Some(std::fs::read(&ca).map_err(|e| io_err(&ca, e))?)
        } else {
            None
        };
        let ns = dir.join("namespace");
        let namespace = std::fs::read_to_string(&ns)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        // IPv6 service hosts need brackets.
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Ok(K8sCredentials {
            server: format!("https://{host}:{port}"),
            token: Token::File(token),
            ca_pem,
            namespace,
            insecure_skip_tls_verify: false,
        })
    }

    /// The in-cluster service account, when the process runs in a pod.
    pub fn in_cluster() -> Option<Result<K8sCredentials>> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        Some(Self::in_cluster_from(
            Path::new(SERVICE_ACCOUNT_DIR),
            &host,
            &port,
        ))
    }

    /// Reads a kubeconfig file and resolves `context` (default: `current-context`).
    pub fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<K8sCredentials> {
        let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_kubeconfig_str(&text, base, context)
            .map_err(|e| ActuatorError::Credentials(format!("{}: {e}", path.display())))
    }

    /// Parses kubeconfig YAML; relative file paths are resolved against `base`.
    pub fn from_kubeconfig_str(
        text: &str,
        base: &Path,
        context: Option<&str>,
    ) -> std::result::Result<K8sCredentials, String> {
        let kc: Kubeconfig =
            serde_yaml::from_str(text).map_err(|e| format!("not a kubeconfig: {e}"))?;
        let ctx_name = context
            .map(str::to_string)
            .or(kc.current_context.clone())
            .filter(|c| !c.is_empty())
            .ok_or("no context given and no current-context set")?;
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .ok_or_else(|| format!("context {ctx_name:?} not found"))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| {
                format!(
                    "cluster {:?} (of context {ctx_name:?}) not found",
                    ctx.context.cluster
                )
            })?;
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let ca_pem = match (
            &cluster.cluster.certificate_authority_data,
            &cluster.cluster.certificate_authority,
        ) {
            (Some(data), _) => {
                Some(base64_decode(data).ok_or("certificate-authority-data is not valid base64")?)
            }
            (None, Some(file)) => {
                let f = resolve(file);
                Some(
                    std::fs::read(&f)
                        .map_err(|e| format!("certificate-authority {}: {e}", f.display()))?,
                )
            }
            (None, None) => None,
        };
        let token = match &ctx.context.user {
            None => Token::None,
            Some(user) => {
                let u =
                    kc.users.iter().find(|u| &u.name == user).ok_or_else(|| {
                        format!("user {user:?} (of context {ctx_name:?}) not found")
                    })?;
                match (&u.user.token, &u.user.token_file) {
                    (Some(t), _) => Token::Static(t.trim().to_string()),
                    (None, Some(f)) => Token::File(resolve(f)),
                    (None, None) => {
                        if u.user.exec.is_some() || u.user.auth_provider.is_some() {
                            return Err(format!(
                                "user {user:?}: exec/auth-provider plugins are not supported; use a bearer token (token or tokenFile)"
                            ));
                        }
                        if u.user.client_certificate.is_some()
                            || u.user.client_certificate_data.is_some()
                        {
                            return Err(format!(
                                "user {user:?}: client certificates are not supported; use a bearer token (token or tokenFile)"
                            ));
                        }
                        Token::None
                    }
                }
            }
        };
        let server = cluster.cluster.server.trim_end_matches('/').to_string();
        if server.is_empty() {
            return Err(format!("cluster {:?} has no server", cluster.name));
        }
        Ok(K8sCredentials {
            server,
            token,
            ca_pem,
            namespace: ctx.context.namespace.clone(),
            insecure_skip_tls_verify: cluster.cluster.insecure_skip_tls_verify,
        })
    }

    /// The bearer token now (re-reads a token file).
    pub fn bearer(&self) -> Result<Option<String>> {
        match &self.token {
            Token::None => Ok(None),
            Token::Static(t) => Ok(Some(t.clone())),
            Token::File(p) => {
                let t = std::fs::read_to_string(p).map_err(|e| io_err(p, e))?;
                Ok(Some(t.trim().to_string()))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: ClusterEntry,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: ContextEntry,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: UserEntry,
}

#[derive(Debug, Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority-data", default)]
    certificate_authority_data: Option<String>,
    #[serde(rename = "certificate-authority", default)]
    certificate_authority: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<String>,
    #[serde(rename = "client-certificate", default)]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data", default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    exec: Option<serde_yaml::Value>,
    #[serde(rename = "auth-provider", default)]
    auth_provider: Option<serde_yaml::Value>,
}

/// Standard base64 (padding optional, whitespace ignored); `None` on bad input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A Deployment's scale as read: desired replicas and the resource version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// `spec.replicas`.
    pub replicas: u32,
    /// `status.replicas` (running), when reported.
    pub status_replicas: Option<u32>,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
}

/// Talks to the `scale` subresource of Deployments.
#[derive(Debug, Clone)]
pub struct K8s {
    creds: K8sCredentials,
    http: reqwest::Client,
    max_conflict_retries: u32,
}

impl K8s {
    /// Credentials from the configuration (see the module docs for the order).
    pub fn from_config(cfg: &K8sActuatorConfig) -> Result<K8s> {
        let creds = if let Some(p) = &cfg.kubeconfig {
            K8sCredentials::from_kubeconfig(p, cfg.context.as_deref())?
        } else if let Some(c) = K8sCredentials::in_cluster() {
            c?
        } else {
            let path = std::env::var_os("KUBECONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
                .ok_or_else(|| ActuatorError::Credentials("not in a cluster, and no kubeconfig: set `actuators.kubernetes.kubeconfig` or KUBECONFIG".into()))?;
            K8sCredentials::from_kubeconfig(&path, cfg.context.as_deref())?
        };
        Self::new(
            creds,
            Duration::from_secs(cfg.timeout_secs.max(1)),
            cfg.max_conflict_retries,
        )
    }

    /// A client for `creds`.
    pub fn new(creds: K8sCredentials, timeout: Duration, max_conflict_retries: u32) -> Result<K8s> {
        if !creds.server.starts_with("http://") && !creds.server.starts_with("https://") {
            return Err(ActuatorError::Config(format!(
                "API server {:?} is not an http(s) URL",
                creds.server
            )));
        }
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if creds.server.starts_with("https://") {
            if let Some(pem) = &creds.ca_pem {
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(ActuatorError::Config(format!(
                        "invalid CA certificate for {}: no PEM `BEGIN CERTIFICATE` block",
                        creds.server
                    )));
                }
                let ca = reqwest::Certificate::from_pem(pem).map_err(|e| {
                    ActuatorError::Config(format!(
                        "invalid CA certificate for {}: {e}",
                        creds.server
                    ))
                })?;
                builder = builder.add_root_certificate(ca);
            }
            if creds.insecure_skip_tls_verify {
                builder = builder.danger_accept_invalid_certs(true);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ActuatorError::Config(format!("HTTP client: {e}")))?;
        Ok(K8s {
            creds,
            http,
            max_conflict_retries,
        })
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &K8sCredentials {
        &self.creds
    }

    fn url(&self, ns: &str, name: &str) -> String {
        format!(
            "{}/apis/apps/v1/namespaces/{}/deployments/{}/scale",
            self.creds.server,
            path_segment(ns),
            path_segment(name)
        )
    }

    fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder> {
        let mut req = self
            .http
            .request(method, url)
            .header("Accept", "application/json");
        if let Some(t) = self.creds.bearer()? {
            req = req.bearer_auth(t);
        }
        Ok(req)
    }

    /// Reads the scale of `ns/name`.
    pub async fn get_scale(&self, ns: &str, name: &str) -> Result<Scale> {
        let url = self.url(ns, name);
        let resp = self
            .request(reqwest::Method::GET, &url)?
            .send()
            .await
            .map_err(|e| ActuatorError::Transport(format!("GET {url}: {e}")))?;
        let body = check(resp, "GET", ns, name).await?;
        parse_scale(&body).map_err(|e| ActuatorError::Api(format!("GET {url}: {e}")))
    }

    /// Sets `spec.replicas` of `ns/name`, conditional on the read resource version;
    /// re-reads and retries on 409. Returns the scale the server answered with.
    pub async fn set_replicas(&self, ns: &str, name: &str, replicas: u32) -> Result<Scale> {
        let url = self.url(ns, name);
        let mut attempt = 0;
        loop {
            let current = self.get_scale(ns, name).await?;
            let patch = json!({
                "metadata": { "resourceVersion": current.resource_version },
                "spec": { "replicas": replicas },
            });
            let resp = self
                .request(reqwest::Method::PATCH, &url)?
                .header("Content-Type", "application/merge-patch+json")
                .body(patch.to_string())
                .send()
                .await
                .map_err(|e| ActuatorError::Transport(format!("PATCH {url}: {e}")))?;
            match check(resp, "PATCH", ns, name).await {
                Ok(body) => {
                    return parse_scale(&body)
                        .map_err(|e| ActuatorError::Api(format!("PATCH {url}: {e}")));
                }
                Err(ActuatorError::Conflict(why)) if attempt < self.max_conflict_retries => {
                    attempt += 1;
                    tracing::info!(
                        namespace = ns,
                        deployment = name,
                        attempt,
                        "409 conflict, re-reading: {why}"
                    );
                }
                Err(ActuatorError::Conflict(why)) => {
                    return Err(ActuatorError::Conflict(format!(
                        "{why} (still conflicting after {} re-reads)",
                        self.max_conflict_retries
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Percent-encodes anything outside the unreserved set (names are DNS labels, but a
/// configuration typo must not change the path).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Turns a non-2xx answer into the matching error, with the API's `Status.message`.
async fn check(resp: reqwest::Response, method: &str, ns: &str, name: &str) -> Result<String> {
    let status = resp.status();
    let body = resp.text().await.map_err(|e| {
        ActuatorError::Transport(format!("{method} {ns}/{name}: reading the answer: {e}"))
    })?;
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect());
    let what = format!("deployment {ns}/{name}");
    Err(match status.as_u16() {
        401 => ActuatorError::Unauthorized(format!(
            "{method} {what}: HTTP 401 (missing, invalid or expired bearer token): {message}"
        )),
        403 => ActuatorError::Forbidden(format!(
            "{method} {what}: HTTP 403 (the account needs get and patch on deployments/scale in namespace {ns}): {message}"
        )),
        404 => ActuatorError::NotFound(format!("{method} {what}: HTTP 404: {message}")),
        409 => ActuatorError::Conflict(format!("{method} {what}: HTTP 409: {message}")),
        s => ActuatorError::Api(format!("{method} {what}: HTTP {s}: {message}")),
    })
}

fn parse_scale(body: &str) -> std::result::Result<Scale, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let replicas = v
        .pointer("/spec/replicas")
        .map(|r| {
            r.as_u64()
                .ok_or("spec.replicas is not a non-negative integer")
        })
        .transpose()?
        // An omitted spec.replicas means 0 in autoscaling/v1 Scale.
        .unwrap_or(0);
    let replicas = u32::try_from(replicas).map_err(|_| "spec.replicas is too large")?;
    let status_replicas = v
        .pointer("/status/replicas")
        .and_then(Value::as_u64)
        .and_then(|r| u32::try_from(r).ok());
    let resource_version = v
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .ok_or("metadata.resourceVersion is missing")?
        .to_string();
    Ok(Scale {
        replicas,
        status_replicas,
        resource_version,
    })
}

fn names(target: &TargetPolicy, default_ns: Option<&str>) -> Result<(String, String)> {
    let ns = target.namespace.as_deref().or(default_ns).ok_or_else(|| {
        ActuatorError::Config(format!("target {:?} has no `namespace`", target.name))
    })?;
    let name = target.deployment.as_deref().ok_or_else(|| {
        ActuatorError::Config(format!("target {:?} has no `deployment`", target.name))
    })?;
    Ok((ns.to_string(), name.to_string()))
}

impl Backend for K8s {
    fn name(&self) -> &str {
        "k8s"
    }

    fn observe<'a>(&'a self, target: &'a TargetPolicy) -> BackendFuture<'a, Observed> {
        Box::pin(async move {
            let (ns, name) = names(target, self.creds.namespace.as_deref())?;
            let s = self.get_scale(&ns, &name).await?;
            Ok(Observed {
                replicas: Some(s.replicas),
                min: None,
                max: None,
            })
        })
    }

    fn scale<'a>(&'a self, target: &'a TargetPolicy, _from: u32, to: u32) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let (ns, name) = names(target, self.creds.namespace.as_deref())?;
            let s = self.set_replicas(&ns, &name, to).await?;
            if s.replicas != to {
                return Err(ActuatorError::Api(format!(
                    "deployment {ns}/{name}: asked for {to} replicas, the API server answered spec.replicas {}",
                    s.replicas
                )));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
  - name: c1
    cluster:
      server: http://127.0.0.1:8001/
      certificate-authority-data: aGVsbG8=
  - name: c2
    cluster: { server: "https://10.0.0.1:6443", certificate-authority: ca.pem }
contexts:
  - name: dev
    context: { cluster: c1, user: u1, namespace: team }
  - name: prod
    context: { cluster: c2, user: u2 }
  - name: exec
    context: { cluster: c1, user: u3 }
users:
  - name: u1
    user: { token: "abc\n" }
  - name: u2
    user: { tokenFile: token.txt }
  - name: u3
    user: { exec: { command: aws } }
"#;

    #[test]
    fn kubeconfig_contexts_tokens_and_ca() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = K8sCredentials::from_kubeconfig_str(KUBECONFIG, dir.path(), None).expect("dev");
        assert_eq!(c.server, "http://127.0.0.1:8001");
        assert_eq!(c.token, Token::Static("abc".into()));
        assert_eq!(c.ca_pem.as_deref(), Some(&b"hello"[..]));
        assert_eq!(c.namespace.as_deref(), Some("team"));
        // prod: relative CA file missing -> clear error naming it.
        let err = K8sCredentials::from_kubeconfig_str(KUBECONFIG, dir.path(), Some("prod"))
            .expect_err("no ca file");
        assert!(err.contains("ca.pem"), "{err}");
        std::fs::write(dir.path().join("ca.pem"), b"PEM").expect("write");
        std::fs::write(dir.path().join("token.txt"), b"tok\n").expect("write");
        let c = K8sCredentials::from_kubeconfig_str(KUBECONFIG, dir.path(), Some("prod"))
            .expect("prod");
        assert_eq!(c.token, Token::File(dir.path().join("token.txt")));
        assert_eq!(c.bearer().expect("reads"), Some("tok".into()));
        let err = K8s::new(c, Duration::from_secs(1), 3).expect_err("a CA file that is not PEM");
        assert!(err.to_string().contains("invalid CA certificate"), "{err}");
        let err = K8sCredentials::from_kubeconfig_str(KUBECONFIG, dir.path(), Some("exec"))
            .expect_err("exec plugin");
        assert!(err.contains("not supported"), "{err}");
        let err = K8sCredentials::from_kubeconfig_str(KUBECONFIG, dir.path(), Some("nope"))
            .expect_err("unknown context");
        assert!(err.contains("\"nope\" not found"), "{err}");
        assert!(K8sCredentials::from_kubeconfig_str("[1, 2]", dir.path(), None).is_err());
    }

    #[test]
    fn in_cluster_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let err =
            K8sCredentials::in_cluster_from(dir.path(), "10.96.0.1", "443").expect_err("no token");
        assert!(err.to_string().contains("token"), "{err}");
        std::fs::write(dir.path().join("token"), "t0k\n").expect("write");
        std::fs::write(dir.path().join("ca.crt"), "CA").expect("write");
        std::fs::write(dir.path().join("namespace"), "prod\n").expect("write");
        let c = K8sCredentials::in_cluster_from(dir.path(), "fd00::1", "443").expect("creds");
        assert_eq!(c.server, "https://[fd00::1]:443");
        assert_eq!(c.namespace.as_deref(), Some("prod"));
        assert_eq!(c.bearer().expect("token"), Some("t0k".into()));
        assert_eq!(c.ca_pem.as_deref(), Some(&b"CA"[..]));
    }

    #[test]
    fn base64_and_scale_parsing() {
        assert_eq!(
            base64_decode("aGVsbG8gd29ybGQ=").as_deref(),
            Some(&b"hello world"[..])
        );
        assert_eq!(base64_decode("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode("a*b"), None);
        let s = parse_scale(r#"{"kind":"Scale","metadata":{"resourceVersion":"7"},"spec":{"replicas":3},"status":{"replicas":2}}"#)
            .expect("scale");
        assert_eq!(
            (s.replicas, s.status_replicas, s.resource_version.as_str()),
            (3, Some(2), "7")
        );
        assert!(parse_scale("<html>").is_err());
        assert!(
            parse_scale(r#"{"spec":{"replicas":-1},"metadata":{"resourceVersion":"1"}}"#).is_err()
        );
        assert!(parse_scale(r#"{"spec":{"replicas":1}}"#).is_err());
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }
}
