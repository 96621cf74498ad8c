//! Actuators end to end: the AWS Auto Scaling backend against the moto server (started
//! here; installed by `scripts/install-moto.sh`), and the Kubernetes backend against a
//! contract server implemented in this file (no API server is available in the test
//! environment): the `scale` subresource's status codes, 409 conflicts on a stale
//! `resourceVersion`, 403 for a forbidden namespace, 401 without the bearer token.
//! Every request goes through the safety layer, so the clamps are checked against a
//! recommender asking for 0 or 10 000 replicas (moto does not enforce min/max itself).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use scalecast::actuators::{
    ActionResult, ActuatorConfig, AwsActuatorConfig, K8sActuatorConfig, build,
};
use scalecast::recommend::limits::Direction;
use scalecast::recommend::policy::{Mode, TargetKind, TargetPolicy};
use scalecast::recommend::{Dispatch, Recommendation, dispatch};

use crate::common::{free_port, start_moto, wait_moto};

fn rec(target: &str, current: u32, recommended: u32) -> Recommendation {
    let t = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    Recommendation {
        ts: t,
        data_ts: t,
        target: target.into(),
        policy: "test".into(),
        recommender: "hpa".into(),
        decided_by: "hpa".into(),
        mode: Mode::ForecastAndScale,
        current_replicas: current,
        recommended_replicas: recommended,
        direction: Direction::of(current, recommended),
        load: 1.0,
        reason: "test".into(),
        ..Default::default()
    }
}

/// A target that may act at once (no cooldowns, no step limits).
fn target(name: &str, kind: TargetKind) -> TargetPolicy {
    let mut t = TargetPolicy::example(name, 1.0, 1, 10);
    t.kind = kind;
    t.mode = Mode::ForecastAndScale;
    t.cooldown_secs = 0;
    t.scale_up_cooldown_secs = 0;
    t.scale_down_stabilization_secs = 0;
    t
}

fn asg_client(url: &str) -> aws_sdk_autoscaling::Client {
    use aws_sdk_autoscaling::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_autoscaling::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    aws_sdk_autoscaling::Client::from_conf(conf)
}

async fn desired(client: &aws_sdk_autoscaling::Client, group: &str) -> i32 {
    let out = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("describe");
    out.auto_scaling_groups()
        .first()
        .and_then(|g| g.desired_capacity())
        .expect("the group and its desired capacity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_asg_scales_a_moto_group_within_the_clamps() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some((_moto, url)) = start_moto(dir.path()) else {
        return;
    };
    wait_moto(&url).await;
    let asg = asg_client(&url);
    asg.create_launch_configuration()
        .launch_configuration_name("lc")
        .image_id("ami-12c6146b")
        .instance_type("t2.micro")
        .send()
        .await
        .expect("launch configuration");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("web-asg")
        .launch_configuration_name("lc")
        .min_size(1)
        .max_size(10)
        .desired_capacity(2)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("group");

    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .expect("credentials file");
    let cfg = ActuatorConfig {
        dry_run: false,
        aws: AwsActuatorConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.clone()),
            credentials_file: Some(creds),
            max_attempts: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(cfg.validate(), Ok(()));
    let mut t = target("web", TargetKind::AwsAsg);
    t.asg_name = Some("web-asg".into());
    let paused = Arc::new(AtomicBool::new(false));
    let act = build(&t, &cfg, paused.clone()).await.expect("aws actuator");
    assert_eq!(act.backend_name(), "aws_asg");
    assert_eq!(act.current_replicas(&t).await.expect("describe"), Some(2));

    // A normal decision goes through dispatch.
    assert_eq!(
        dispatch(&t, &rec("web", 2, 5), &act).await,
        Dispatch::Applied
    );
    assert_eq!(desired(&asg, "web-asg").await, 5);

    // moto accepts any capacity; the safety layer is what keeps it in [1, 10].
    let r = act.apply(&t, &rec("web", 5, 10_000)).await;
    assert_eq!(
        (r.result, r.from_replicas, r.to_replicas),
        (ActionResult::Ok, 5, 10),
        "{r:?}"
    );
    assert!(r.reason.contains("maximum 10"), "{}", r.reason);
    assert_eq!(desired(&asg, "web-asg").await, 10);
    let r = act.apply(&t, &rec("web", 10, 0)).await;
    assert_eq!((r.result, r.to_replicas), (ActionResult::Ok, 1), "{r:?}");
    assert_eq!(desired(&asg, "web-asg").await, 1);

    // The group's own MaxSize narrows the policy's bound.
    asg.update_auto_scaling_group()
        .auto_scaling_group_name("web-asg")
        .max_size(4)
        .send()
        .await
        .expect("update");
    let r = act.apply(&t, &rec("web", 1, 9)).await;
    assert_eq!((r.result, r.to_replicas), (ActionResult::Ok, 4), "{r:?}");
    assert_eq!(desired(&asg, "web-asg").await, 4);

    // Kill switch: refused, moto untouched.
    paused.store(true, Ordering::SeqCst);
    match dispatch(&t, &rec("web", 4, 2), &act).await {
        Dispatch::Failed(why) => assert!(why.contains("paused"), "{why}"),
        other => panic!("expected a blocked action, got {other:?}"),
    }
    assert_eq!(desired(&asg, "web-asg").await, 4);
    paused.store(false, Ordering::SeqCst);

    // Manual scale: still clamped (already at the group's max 4: nothing to do).
    let r = act.scale_manual(&t, 50).await;
    assert_eq!(
        (r.result, r.to_replicas, r.source.as_str()),
        (ActionResult::Blocked, 4, "manual")
    );
    assert!(r.reason.contains("maximum 4"), "{}", r.reason);
    let r = act.scale_manual(&t, 2).await;
    assert_eq!((r.result, r.to_replicas), (ActionResult::Ok, 2), "{r:?}");
    assert_eq!(desired(&asg, "web-asg").await, 2);

    // An unknown group is a clear failure, not a panic (moto answers Describe with an
    // empty list; SetDesiredCapacity would be an HTML 500).
    let mut missing = target("ghost", TargetKind::AwsAsg);
    missing.asg_name = Some("no-such-asg".into());
    let act2 = build(&missing, &cfg, paused).await.expect("aws actuator");
    let r = act2.apply(&missing, &rec("ghost", 1, 3)).await;
    assert_eq!(r.result, ActionResult::Failed);
    assert!(
        r.reason.contains("\"no-such-asg\" does not exist"),
        "{}",
        r.reason
    );
    assert_eq!(act.records().len(), 7);
}

// ---------------------------------------------------------------------------------------
// Kubernetes contract server.

const TOKEN: &str = "test-token";

#[derive(Default)]
struct Cluster {
    /// (namespace, name) → (spec.replicas, resourceVersion).
    deployments: Mutex<BTreeMap<(String, String), (u32, u64)>>,
    /// PATCHes before which another writer bumps the resource version.
    conflicts_to_inject: AtomicU32,
    patches: AtomicU32,
    conflicts: AtomicU32,
    bad_auth: AtomicU32,
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

fn scale_json(ns: &str, name: &str, replicas: u32, rv: u64) -> Value {
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": { "name": name, "namespace": ns, "resourceVersion": rv.to_string() },
        "spec": { "replicas": replicas },
        "status": { "replicas": replicas, "selector": format!("app={name}") },
    })
}

/// Authentication, authorization and lookup shared by GET and PATCH.
fn admit(
    c: &Cluster,
    headers: &HeaderMap,
    ns: &str,
    name: &str,
    verb: &str,
) -> Result<(), Box<Response>> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TOKEN}")) {
        c.bad_auth.fetch_add(1, Ordering::SeqCst);
        return Err(Box::new(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        )));
    }
    if ns == "locked" {
        return Err(Box::new(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "deployments.apps \"{name}\" is forbidden: User \"system:serviceaccount:scalecast:scalecast\" cannot {verb} resource \"deployments/scale\" in API group \"apps\" in the namespace \"{ns}\""
            ),
        )));
    }
    let d = c.deployments.lock().unwrap_or_else(|p| p.into_inner());
    if !d.contains_key(&(ns.to_string(), name.to_string())) {
        return Err(Box::new(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("deployments.apps \"{name}\" not found"),
        )));
    }
    Ok(())
}

async fn get_scale(
    State(c): State<Arc<Cluster>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&c, &headers, &ns, &name, "get") {
        return *r;
    }
    let d = c.deployments.lock().unwrap_or_else(|p| p.into_inner());
    match d.get(&(ns.clone(), name.clone())) {
        Some(&(replicas, rv)) => Json(scale_json(&ns, &name, replicas, rv)).into_response(),
        None => status(StatusCode::NOT_FOUND, "NotFound", "gone".into()),
    }
}

async fn patch_scale(
    State(c): State<Arc<Cluster>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = admit(&c, &headers, &ns, &name, "patch") {
        return *r;
    }
    c.patches.fetch_add(1, Ordering::SeqCst);
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct != "application/merge-patch+json" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json; got {ct:?}"
            ),
        );
    }
    let Ok(patch) = serde_json::from_str::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "invalid JSON".into());
    };
    let mut d = c.deployments.lock().unwrap_or_else(|p| p.into_inner());
    let Some(entry) = d.get_mut(&(ns.clone(), name.clone())) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "gone".into());
    };
    // Another writer (kubectl, an HPA) changes the Deployment between our read and write.
    if c.conflicts_to_inject
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        entry.1 += 1;
    }
    if let Some(rv) = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && rv != entry.1.to_string()
    {
        c.conflicts.fetch_add(1, Ordering::SeqCst);
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    match patch.pointer("/spec/replicas").map(Value::as_u64) {
        Some(Some(n)) if n <= i32::MAX as u64 => entry.0 = n as u32,
        Some(_) => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "spec.replicas: Invalid value".into(),
            );
        }
        None => {}
    }
    entry.1 += 1;
    Json(scale_json(&ns, &name, entry.0, entry.1)).into_response()
}

async fn start_cluster(c: Arc<Cluster>) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            get(get_scale).patch(patch_scale),
        )
        .with_state(c);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let h = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), h)
}

fn kubeconfig(dir: &Path, server: &str, token: &str) -> PathBuf {
    let p = dir.join(format!("kubeconfig-{token}"));
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: c\n  cluster:\n    server: {server}\ncontexts:\n- name: test\n  context: {{cluster: c, user: u, namespace: prod}}\nusers:\n- name: u\n  user:\n    token: {token}\n"
        ),
    )
    .expect("kubeconfig");
    p
}

fn k8s_target(name: &str, ns: Option<&str>) -> TargetPolicy {
    let mut t = target(name, TargetKind::K8sDeployment);
    t.namespace = ns.map(str::to_string);
    t.deployment = Some(name.to_string());
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_scale_subresource_contract() {
    let cluster = Arc::new(Cluster::default());
    {
        let mut d = cluster.deployments.lock().expect("lock");
        d.insert(("prod".into(), "web".into()), (2, 100));
        d.insert(("locked".into(), "web".into()), (2, 100));
    }
    let (server, handle) = start_cluster(cluster.clone()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = ActuatorConfig {
        dry_run: false,
        kubernetes: K8sActuatorConfig {
            kubeconfig: Some(kubeconfig(dir.path(), &server, TOKEN)),
            timeout_secs: 5,
            ..Default::default()
        },
        ..Default::default()
    };
    let paused = Arc::new(AtomicBool::new(false));
    // Namespace from the kubeconfig context.
    let web = k8s_target("web", None);
    let act = build(&web, &cfg, paused.clone())
        .await
        .expect("k8s actuator");
    assert_eq!(act.backend_name(), "k8s");
    assert_eq!(
        act.current_replicas(&web).await.expect("GET scale"),
        Some(2)
    );

    // One 409 (another writer in between): re-read and retry.
    cluster.conflicts_to_inject.store(1, Ordering::SeqCst);
    assert_eq!(
        dispatch(&web, &rec("web", 2, 5), &act).await,
        Dispatch::Applied
    );
    let replicas = |c: &Cluster, ns: &str| {
        c.deployments.lock().expect("lock")[&(ns.to_string(), "web".to_string())].0
    };
    assert_eq!(replicas(&cluster, "prod"), 5);
    assert_eq!(cluster.conflicts.load(Ordering::SeqCst), 1);
    assert_eq!(cluster.patches.load(Ordering::SeqCst), 2);

    // Clamps hold against 10 000 and 0.
    let r = act.apply(&web, &rec("web", 5, 10_000)).await;
    assert_eq!((r.result, r.to_replicas), (ActionResult::Ok, 10), "{r:?}");
    assert_eq!(replicas(&cluster, "prod"), 10);
    let r = act.apply(&web, &rec("web", 10, 0)).await;
    assert_eq!((r.result, r.to_replicas), (ActionResult::Ok, 1), "{r:?}");
    assert_eq!(replicas(&cluster, "prod"), 1);

    // Conflicts that never end: a clear error after the retries.
    cluster.conflicts_to_inject.store(100, Ordering::SeqCst);
    let r = act.apply(&web, &rec("web", 1, 3)).await;
    assert_eq!(r.result, ActionResult::Failed);
    assert!(
        r.reason.contains("409") && r.reason.contains("after 3 re-reads"),
        "{}",
        r.reason
    );
    assert_eq!(replicas(&cluster, "prod"), 1);
    cluster.conflicts_to_inject.store(0, Ordering::SeqCst);

    // 403: RBAC refuses the namespace.
    let locked = k8s_target("web", Some("locked"));
    let r = act.apply(&locked, &rec("web", 2, 4)).await;
    assert_eq!(r.result, ActionResult::Failed);
    assert!(
        r.reason.contains("forbidden") && r.reason.contains("HTTP 403"),
        "{}",
        r.reason
    );
    assert!(r.reason.contains("cannot get resource"), "{}", r.reason);

    // 404: no such Deployment.
    let ghost = k8s_target("ghost", Some("prod"));
    let r = act.apply(&ghost, &rec("ghost", 2, 4)).await;
    assert_eq!(r.result, ActionResult::Failed);
    assert!(
        r.reason.contains("not found") && r.reason.contains("404"),
        "{}",
        r.reason
    );

    // 401: a wrong token.
    let bad = ActuatorConfig {
        kubernetes: K8sActuatorConfig {
            kubeconfig: Some(kubeconfig(dir.path(), &server, "wrong")),
            ..cfg.kubernetes.clone()
        },
        ..cfg.clone()
    };
    let act_bad = build(&web, &bad, paused.clone())
        .await
        .expect("k8s actuator");
    let r = act_bad.apply(&web, &rec("web", 1, 4)).await;
    assert_eq!(r.result, ActionResult::Failed);
    assert!(
        r.reason.contains("unauthorized") && r.reason.contains("401"),
        "{}",
        r.reason
    );
    assert!(cluster.bad_auth.load(Ordering::SeqCst) >= 1);
    assert_eq!(replicas(&cluster, "prod"), 1);

    // Kill switch.
    paused.store(true, Ordering::SeqCst);
    let r = act.apply(&web, &rec("web", 1, 4)).await;
    assert_eq!(r.result, ActionResult::Blocked);
    assert_eq!(replicas(&cluster, "prod"), 1);

    // A missing kubeconfig is a clear start-up error.
    let missing = ActuatorConfig {
        kubernetes: K8sActuatorConfig {
            kubeconfig: Some(dir.path().join("nope")),
            ..Default::default()
        },
        ..cfg
    };
    match build(&web, &missing, paused).await {
        Err(e) => assert!(
            e.to_string().contains("credentials") && e.to_string().contains("nope"),
            "{e}"
        ),
        Ok(_) => panic!("a missing kubeconfig must fail"),
    }
    handle.abort();
}

#[tokio::test]
async fn k8s_unreachable_server_is_a_transport_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port(); // bound and released: nothing listens there
    let cfg = ActuatorConfig {
        dry_run: false,
        kubernetes: K8sActuatorConfig {
            kubeconfig: Some(kubeconfig(
                dir.path(),
                &format!("http://127.0.0.1:{port}"),
                TOKEN,
            )),
            timeout_secs: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let web = k8s_target("web", None);
    let act = build(&web, &cfg, Arc::new(AtomicBool::new(false)))
        .await
        .expect("actuator");
    let r = act.apply(&web, &rec("web", 2, 4)).await;
    assert_eq!(r.result, ActionResult::Failed);
    assert!(
        r.reason.contains("transport") && r.reason.contains("GET"),
        "{}",
        r.reason
    );
}
