//! A **test double of the Kubernetes API server**: no API server can run on the build
//! machines, so the kubernetes driver is tested against this HTTP server, which speaks the
//! parts of the API the driver uses (server-side apply, dry-run apply, get, list, watch,
//! delete), plays the StatefulSet controller (status becomes ready after a configurable
//! delay) and the namespace controller (a deleted namespace disappears with its objects), and
//! records every request. Like the real API server, it does not write an apply that changes
//! nothing (the object keeps its `resourceVersion`), and a dry-run apply answers with what
//! the object would be, under its current `resourceVersion` (none if it does not exist).
//! [`FakeKube::edit`] and [`FakeKube::remove`] change objects behind the driver's back, as
//! `kubectl scale`, `kubectl edit` or `kubectl delete` would.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// One request as the API server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    /// `(api group, resource, verb)`, as RBAC would see it.
    pub rbac: (String, String, String),
}

/// `(group, resource, namespace, name)`.
type Key = (String, String, Option<String>, String);

struct Inner {
    objects: BTreeMap<Key, Value>,
    version: u64,
    requests: Vec<Recorded>,
    /// How long the "controller" takes to make a StatefulSet ready; `None`: never.
    ready_after: Option<Duration>,
}

#[derive(Clone)]
pub struct FakeKube {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<(Key, &'static str, Value)>,
    pub url: String,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

struct Target {
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => (String::new(), rest.to_vec()),
        ["apis", g, _v, rest @ ..] => ((*g).to_owned(), rest.to_vec()),
        _ => return None,
    };
    let owned = |s: &&str| (*s).to_owned();
    Some(match rest.as_slice() {
        ["namespaces"] => Target {
            group,
            resource: "namespaces".into(),
            namespace: None,
            name: None,
        },
        ["namespaces", name] if rest.len() == 2 && !group.is_empty() => {
            // /apis/g/v/namespaces/<ns> is not a thing the driver uses
            Target {
                group,
                resource: "namespaces".into(),
                namespace: None,
                name: Some(owned(name)),
            }
        }
        ["namespaces", name] => Target {
            group,
            resource: "namespaces".into(),
            namespace: None,
            name: Some(owned(name)),
        },
        ["namespaces", ns, resource] => Target {
            group,
            resource: owned(resource),
            namespace: Some(owned(ns)),
            name: None,
        },
        ["namespaces", ns, resource, name] => Target {
            group,
            resource: owned(resource),
            namespace: Some(owned(ns)),
            name: Some(owned(name)),
        },
        _ => return None,
    })
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.replace("%3D", "=").replace("%2F", "/"))
        })
        .collect()
}

impl FakeKube {
    pub async fn start(ready_after: Option<Duration>) -> Self {
        let (events, _) = broadcast::channel(1024);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Self {
            inner: Arc::new(Mutex::new(Inner {
                objects: BTreeMap::new(),
                version: 1,
                requests: Vec::new(),
                ready_after,
            })),
            events,
            url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.inner.lock().unwrap().requests.clear();
    }

    pub fn object(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = (
            group.to_owned(),
            resource.to_owned(),
            ns.map(str::to_owned),
            name.to_owned(),
        );
        self.inner.lock().unwrap().objects.get(&key).cloned()
    }

    pub fn object_count(&self) -> usize {
        self.inner.lock().unwrap().objects.len()
    }

    fn publish(&self, key: Key, kind: &'static str, obj: Value) {
        let _ = self.events.send((key, kind, obj));
    }

    /// The StatefulSet controller: after the delay, every replica is ready and updated.
    fn make_ready_later(&self, key: Key) {
        let Some(delay) = self.inner.lock().unwrap().ready_after else {
            return;
        };
        let fake = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let updated = {
                let mut inner = fake.inner.lock().unwrap();
                inner.version += 1;
                let version = inner.version;
                let Some(obj) = inner.objects.get_mut(&key) else {
                    return;
                };
                let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                let generation = obj["metadata"]["generation"].clone();
                obj["status"] = json!({"replicas": replicas, "readyReplicas": replicas,
                    "updatedReplicas": replicas, "currentReplicas": replicas,
                    "observedGeneration": generation});
                obj["metadata"]["resourceVersion"] = json!(version.to_string());
                obj.clone()
            };
            fake.publish(key, "MODIFIED", updated);
        });
    }

    fn key(group: &str, resource: &str, ns: Option<&str>, name: &str) -> Key {
        (
            group.to_owned(),
            resource.to_owned(),
            ns.map(str::to_owned),
            name.to_owned(),
        )
    }

    /// Changes an object as someone other than the driver would (`kubectl scale`, `kubectl
    /// edit`): a new `resourceVersion`, a new `generation` if the spec changed, a watch event,
    /// and for a StatefulSet its controller acting on the new spec.
    pub fn edit(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let key = Self::key(group, resource, ns, name);
        let obj = {
            let mut inner = self.inner.lock().unwrap();
            inner.version += 1;
            let version = inner.version;
            let obj = inner.objects.get_mut(&key).expect("no such object to edit");
            let spec = obj["spec"].clone();
            change(obj);
            if obj["spec"] != spec {
                let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
                obj["metadata"]["generation"] = json!(generation + 1);
            }
            obj["metadata"]["resourceVersion"] = json!(version.to_string());
            obj.clone()
        };
        self.publish(key.clone(), "MODIFIED", obj);
        if resource == "statefulsets" {
            self.make_ready_later(key);
        }
    }

    /// Deletes an object as `kubectl delete` would (namespaces excepted: see
    /// `delete_namespace`).
    pub fn remove(&self, group: &str, resource: &str, ns: Option<&str>, name: &str) {
        let key = Self::key(group, resource, ns, name);
        let obj = self
            .inner
            .lock()
            .unwrap()
            .objects
            .remove(&key)
            .expect("no such object to remove");
        self.publish(key, "DELETED", obj);
    }

    fn apply(&self, t: &Target, body: Value, dry_run: bool) -> Response {
        let name = t.name.clone().unwrap_or_default();
        let key: Key = (
            t.group.clone(),
            t.resource.clone(),
            t.namespace.clone(),
            name.clone(),
        );
        let (obj, created, changed) = {
            let mut inner = self.inner.lock().unwrap();
            let previous = inner.objects.get(&key).cloned();
            let version = inner.version + 1;
            let mut obj = body;
            let generation = match &previous {
                Some(p) if p["spec"] == obj["spec"] => {
                    p["metadata"]["generation"].as_i64().unwrap_or(1)
                }
                Some(p) => p["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
                None => 1,
            };
            let uid = previous
                .as_ref()
                .map(|p| p["metadata"]["uid"].clone())
                .unwrap_or_else(|| json!(format!("uid-{version}")));
            obj["metadata"]["uid"] = uid;
            obj["metadata"]["resourceVersion"] = json!(version.to_string());
            obj["metadata"]["generation"] = json!(generation);
            if t.resource == "statefulsets" {
                // Keep what the controller reported; a changed spec is not ready yet.
                let old_status = previous
                    .as_ref()
                    .map(|p| p["status"].clone())
                    .unwrap_or(Value::Null);
                obj["status"] = if old_status.is_null() {
                    json!({"replicas": 0})
                } else {
                    old_status
                };
            }
            // What a write would store, but for its version: equal to what is there is a
            // no-op, which is not written and keeps the object's resourceVersion.
            let unchanged = previous.as_ref().is_some_and(|p| {
                let mut was = p.clone();
                was["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
                was == obj
            });
            if let Some(p) = previous.as_ref().filter(|_| unchanged || dry_run) {
                obj["metadata"]["resourceVersion"] = p["metadata"]["resourceVersion"].clone();
            }
            if dry_run {
                if previous.is_none() {
                    // Nothing was stored, so nothing has a version.
                    if let Some(meta) = obj["metadata"].as_object_mut() {
                        meta.remove("resourceVersion");
                    }
                }
                return (StatusCode::OK, axum::Json(obj)).into_response();
            }
            if !unchanged {
                inner.version = version;
                inner.objects.insert(key.clone(), obj.clone());
            }
            (obj, previous.is_none(), !unchanged)
        };
        if changed {
            self.publish(
                key.clone(),
                if created { "ADDED" } else { "MODIFIED" },
                obj.clone(),
            );
            if t.resource == "statefulsets" {
                self.make_ready_later(key);
            }
        }
        let code = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (code, axum::Json(obj)).into_response()
    }

    fn delete_namespace(&self, name: &str) -> Response {
        let key: Key = (String::new(), "namespaces".into(), None, name.to_owned());
        let obj = {
            let mut inner = self.inner.lock().unwrap();
            let Some(obj) = inner.objects.get_mut(&key) else {
                return status(404, "NotFound", &format!("namespaces \"{name}\" not found"));
            };
            obj["metadata"]["deletionTimestamp"] = json!("2026-11-23T00:00:00Z");
            obj["status"] = json!({"phase": "Terminating"});
            obj.clone()
        };
        self.publish(key.clone(), "MODIFIED", obj.clone());
        // The namespace controller: the namespace and everything in it go away shortly.
        let fake = self.clone();
        let ns = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let gone: Vec<(Key, Value)> = {
                let mut inner = fake.inner.lock().unwrap();
                let keys: Vec<Key> = inner
                    .objects
                    .keys()
                    .filter(|k| {
                        k.2.as_deref() == Some(ns.as_str()) || (k.1 == "namespaces" && k.3 == ns)
                    })
                    .cloned()
                    .collect();
                keys.into_iter()
                    .filter_map(|k| inner.objects.remove(&k).map(|v| (k, v)))
                    .collect()
            };
            for (k, v) in gone {
                fake.publish(k, "DELETED", v);
            }
        });
        (StatusCode::OK, axum::Json(obj)).into_response()
    }

    fn list(&self, t: &Target, q: &BTreeMap<String, String>) -> Vec<(Key, Value)> {
        let wanted = q
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="))
            .map(str::to_owned);
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .iter()
            .filter(|(k, _)| k.0 == t.group && k.1 == t.resource && k.2 == t.namespace)
            .filter(|(k, _)| wanted.as_deref().is_none_or(|w| k.3 == w))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn watch(&self, t: Target, q: BTreeMap<String, String>) -> Response {
        let wanted = q
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="))
            .map(str::to_owned);
        let mut rx = self.events.subscribe();
        let stream = async_stream(
            move |tx: tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>| async move {
                let timeout = tokio::time::sleep(Duration::from_secs(30));
                tokio::pin!(timeout);
                loop {
                    tokio::select! {
                        _ = &mut timeout => return,
                        event = rx.recv() => {
                            let Ok((key, kind, obj)) = event else { return };
                            if key.0 != t.group || key.1 != t.resource || key.2 != t.namespace {
                                continue;
                            }
                            if wanted.as_deref().is_some_and(|w| key.3 != w) {
                                continue;
                            }
                            let line = format!("{}\n", json!({"type": kind, "object": obj}));
                            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            },
        );
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(stream)
            .unwrap()
    }
}

/// A streaming body fed by a task.
fn async_stream<F, Fut>(produce: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(tx));
    Body::from_stream(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn verb(method: &Method, t: &Target, q: &BTreeMap<String, String>) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", _) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        _ => "unknown",
    }
}

async fn handle(State(fake): State<FakeKube>, headers: HeaderMap, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let Some(t) = parse(parts.uri.path()) else {
        return status(
            404,
            "NotFound",
            "the fake API server does not serve this path",
        );
    };
    let q = query(&parts.uri);
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    fake.inner.lock().unwrap().requests.push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: q.clone(),
        content_type: headers
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned()),
        body: body.clone(),
        rbac: (
            t.group.clone(),
            t.resource.clone(),
            verb(&parts.method, &t, &q).to_owned(),
        ),
    });
    match (parts.method.clone(), &t.name) {
        (Method::PATCH, Some(_)) => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ct != "application/apply-patch+yaml" {
                return status(
                    415,
                    "UnsupportedMediaType",
                    "only server-side apply is supported",
                );
            }
            let Some(obj) = body else {
                return status(400, "BadRequest", "the body is not JSON");
            };
            let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
            fake.apply(&t, obj, dry_run)
        }
        (Method::GET, Some(name)) => {
            let key: Key = (
                t.group.clone(),
                t.resource.clone(),
                t.namespace.clone(),
                name.clone(),
            );
            match fake.inner.lock().unwrap().objects.get(&key) {
                Some(obj) => (StatusCode::OK, axum::Json(obj.clone())).into_response(),
                None => status(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", t.resource),
                ),
            }
        }
        (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            fake.watch(t, q)
        }
        (Method::GET, None) => {
            let items: Vec<Value> = fake.list(&t, &q).into_iter().map(|(_, v)| v).collect();
            let version = fake.inner.lock().unwrap().version;
            let body = json!({"kind": "List", "apiVersion": "v1",
                "metadata": {"resourceVersion": version.to_string()}, "items": items});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        (Method::DELETE, Some(name)) if t.resource == "namespaces" => fake.delete_namespace(name),
        _ => status(
            405,
            "MethodNotAllowed",
            "the fake API server does not support this",
        ),
    }
}
