//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into wire JSON,
//! for the kinds client-go's typed clients send that way: Helm 3.19 (client-go 0.34) stores its
//! release records as Secrets (or ConfigMaps) through the typed client, which defaults to protobuf for
//! built-in types and does not fall back to JSON; kubectl's imperative `create`, `create token` and
//! `auth can-i` do the same. Covered: the `k8s\0` envelope (`runtime.Unknown`) around v1 Secret,
//! ConfigMap, Namespace, ServiceAccount, DeleteOptions, TokenRequest, TokenReview, the access reviews,
//! Role/ClusterRole and RoleBinding/ClusterRoleBinding, with full ObjectMeta. Other kinds are refused
//! with a clear error (workload kinds need their large generated layouts).

use base64::Engine;
use serde_json::{Map, Value, json};

/// The protobuf media type of Kubernetes objects.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\x00";

/// A body that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("failed to decode protobuf: missing the k8s envelope prefix")]
    NoEnvelope,
    #[error("failed to decode protobuf: truncated or malformed message")]
    Malformed,
    #[error("failed to decode protobuf: unsupported wire type {0}")]
    WireType(u8),
    #[error("failed to decode protobuf: no protobuf decoding for {0}")]
    UnsupportedKind(String),
    #[error(
        "failed to decode protobuf: field {0} is not supported by the simulator's protobuf layouts"
    )]
    UnsupportedField(u64),
}

/// Whether a Content-Type header names the Kubernetes protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE))
}

/// One decoded field value.
#[derive(Clone, Copy, Debug)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64,
    Fixed32,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(ProtobufError::Malformed)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(ProtobufError::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).ok_or(ProtobufError::Malformed)?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(ProtobufError::Malformed)?;
        self.pos = end;
        Ok(s)
    }

    /// The next (field number, value), or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, ProtobufError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        let field = match (key & 7) as u8 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Malformed)?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            w => return Err(ProtobufError::WireType(w)),
        };
        Ok(Some((number, field)))
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ProtobufError> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `map<string, string|bytes>` entry (key = 1, value = 2).
fn map_entry(b: &[u8]) -> Result<(String, &[u8]), ProtobufError> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = string(k),
            (2, Field::Bytes(v)) => value = v,
            _ => {}
        }
    }
    Ok((key, value))
}

/// `metav1.Time` (seconds = 1, nanos = 2) as RFC 3339; `None` for the zero time.
fn time(b: &[u8]) -> Result<Option<Value>, ProtobufError> {
    let mut seconds: i64 = 0;
    for (n, f) in fields(b)? {
        if let (1, Field::Varint(v)) = (n, f) {
            seconds = v as i64;
        }
    }
    if seconds == 0 {
        return Ok(None);
    }
    Ok(chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| Value::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())))
}

/// How one protobuf field maps to JSON.
#[derive(Clone, Copy)]
enum Kind {
    /// A string; empty strings are omitted (gogo-protobuf writes non-pointer strings even when empty).
    Str,
    /// A repeated string; empty elements are kept (`apiGroups: [""]` is meaningful).
    Strs,
    /// An integer; `true` omits zero (a non-pointer Go field), `false` keeps it (a pointer that was set).
    Int(bool),
    /// A pointer bool (`*bool`): kept when present, even when false.
    Bool,
    /// A non-pointer bool: omitted when false, as JSON `omitempty` does.
    Flag,
    /// `intstr.IntOrString` (type = 1, intVal = 2, strVal = 3) as a JSON number or string.
    IntOrString,
    /// `resource.Quantity` (string = 1) as its string.
    Quantity,
    /// `map<string, Quantity>` (resource lists).
    MapQuantity,
    /// A field the server ignores in request bodies (`status`).
    Ignore,
    /// An embedded struct whose fields JSON flattens into the parent (`LocalObjectReference`).
    Inline(&'static [Spec]),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`, base64 in JSON.
    MapBytes,
    /// `bytes`, base64 in JSON.
    Bytes,
    /// `metav1.Time`.
    Time,
    /// `FieldsV1`: raw JSON in field 1.
    RawJson,
    Msg(&'static [Spec]),
    Msgs(&'static [Spec]),
}

/// (field number, JSON name, kind) of one message field.
type Spec = (u64, &'static str, Kind);

const OWNER_REFERENCE: &[Spec] = &[
    (1, "kind", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];

const MANAGED_FIELDS_ENTRY: &[Spec] = &[
    (1, "manager", Kind::Str),
    (2, "operation", Kind::Str),
    (3, "apiVersion", Kind::Str),
    (4, "time", Kind::Time),
    (6, "fieldsType", Kind::Str),
    (7, "fieldsV1", Kind::RawJson),
    (8, "subresource", Kind::Str),
];

const OBJECT_META: &[Spec] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (4, "selfLink", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (7, "generation", Kind::Int(true)),
    (8, "creationTimestamp", Kind::Time),
    (9, "deletionTimestamp", Kind::Time),
    (10, "deletionGracePeriodSeconds", Kind::Int(false)),
    (11, "labels", Kind::MapStr),
    (12, "annotations", Kind::MapStr),
    (13, "ownerReferences", Kind::Msgs(OWNER_REFERENCE)),
    (14, "finalizers", Kind::Strs),
    (17, "managedFields", Kind::Msgs(MANAGED_FIELDS_ENTRY)),
];

const META: Spec = (1, "metadata", Kind::Msg(OBJECT_META));

/// `status` in a request body: the server ignores it, so it is not decoded.
const STATUS: Spec = (3, "status", Kind::Ignore);

const SECRET: &[Spec] = &[
    META,
    (2, "data", Kind::MapBytes),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::MapStr),
    (5, "immutable", Kind::Bool),
];

const CONFIG_MAP: &[Spec] = &[
    META,
    (2, "data", Kind::MapStr),
    (3, "binaryData", Kind::MapBytes),
    (4, "immutable", Kind::Bool),
];

const NAMESPACE: &[Spec] = &[
    META,
    (2, "spec", Kind::Msg(&[(1, "finalizers", Kind::Strs)])),
    STATUS,
];

const OBJECT_REFERENCE: &[Spec] = &[
    (1, "kind", Kind::Str),
    (2, "namespace", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (7, "fieldPath", Kind::Str),
];

const SERVICE_ACCOUNT: &[Spec] = &[
    META,
    (2, "secrets", Kind::Msgs(OBJECT_REFERENCE)),
    (3, "imagePullSecrets", Kind::Msgs(&[(1, "name", Kind::Str)])),
    (4, "automountServiceAccountToken", Kind::Bool),
];

const PRECONDITIONS: &[Spec] = &[(1, "uid", Kind::Str), (2, "resourceVersion", Kind::Str)];

const DELETE_OPTIONS: &[Spec] = &[
    (1, "gracePeriodSeconds", Kind::Int(false)),
    (2, "preconditions", Kind::Msg(PRECONDITIONS)),
    (3, "orphanDependents", Kind::Bool),
    (4, "propagationPolicy", Kind::Str),
    (5, "dryRun", Kind::Strs),
];

const BOUND_OBJECT_REFERENCE: &[Spec] = &[
    (1, "kind", Kind::Str),
    (2, "apiVersion", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
];

const TOKEN_REQUEST: &[Spec] = &[
    META,
    (
        2,
        "spec",
        Kind::Msg(&[
            (1, "audiences", Kind::Strs),
            (3, "boundObjectRef", Kind::Msg(BOUND_OBJECT_REFERENCE)),
            (4, "expirationSeconds", Kind::Int(false)),
        ]),
    ),
    STATUS,
];

/// `SelfSubjectReview`: only metadata; the status (field 2) is the server's answer.
const SELF_SUBJECT_REVIEW: &[Spec] = &[META, (2, "status", Kind::Ignore)];

/// `certificates.k8s.io/v1` CertificateSigningRequest, status included: `kubectl certificate
/// approve` sends its conditions to `/approval`.
const CERTIFICATE_SIGNING_REQUEST: &[Spec] = &[
    META,
    (
        2,
        "spec",
        Kind::Msg(&[
            (1, "request", Kind::Bytes),
            (2, "username", Kind::Str),
            (3, "uid", Kind::Str),
            (4, "groups", Kind::Strs),
            (5, "usages", Kind::Strs),
            (7, "signerName", Kind::Str),
            (8, "expirationSeconds", Kind::Int(false)),
        ]),
    ),
    (
        3,
        "status",
        Kind::Msg(&[
            (
                1,
                "conditions",
                Kind::Msgs(&[
                    (1, "type", Kind::Str),
                    (2, "reason", Kind::Str),
                    (3, "message", Kind::Str),
                    (4, "lastUpdateTime", Kind::Time),
                    (5, "lastTransitionTime", Kind::Time),
                    (6, "status", Kind::Str),
                ]),
            ),
            (2, "certificate", Kind::Bytes),
        ]),
    ),
];

const TOKEN_REVIEW: &[Spec] = &[
    META,
    (
        2,
        "spec",
        Kind::Msg(&[(1, "token", Kind::Str), (2, "audiences", Kind::Strs)]),
    ),
    STATUS,
];

const RESOURCE_ATTRIBUTES: &[Spec] = &[
    (1, "namespace", Kind::Str),
    (2, "verb", Kind::Str),
    (3, "group", Kind::Str),
    (4, "version", Kind::Str),
    (5, "resource", Kind::Str),
    (6, "subresource", Kind::Str),
    (7, "name", Kind::Str),
];

const NON_RESOURCE_ATTRIBUTES: &[Spec] = &[(1, "path", Kind::Str), (2, "verb", Kind::Str)];

const SELF_SUBJECT_ACCESS_REVIEW: &[Spec] = &[
    META,
    (
        2,
        "spec",
        Kind::Msg(&[
            (1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
            (
                2,
                "nonResourceAttributes",
                Kind::Msg(NON_RESOURCE_ATTRIBUTES),
            ),
        ]),
    ),
    STATUS,
];

/// SubjectAccessReview and LocalSubjectAccessReview.
const SUBJECT_ACCESS_REVIEW: &[Spec] = &[
    META,
    (
        2,
        "spec",
        Kind::Msg(&[
            (1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
            (
                2,
                "nonResourceAttributes",
                Kind::Msg(NON_RESOURCE_ATTRIBUTES),
            ),
            (3, "user", Kind::Str),
            (4, "groups", Kind::Strs),
            (6, "uid", Kind::Str),
        ]),
    ),
    STATUS,
];

const SELF_SUBJECT_RULES_REVIEW: &[Spec] = &[
    META,
    (2, "spec", Kind::Msg(&[(1, "namespace", Kind::Str)])),
    STATUS,
];

const POLICY_RULE: &[Spec] = &[
    (1, "verbs", Kind::Strs),
    (2, "apiGroups", Kind::Strs),
    (3, "resources", Kind::Strs),
    (4, "resourceNames", Kind::Strs),
    (5, "nonResourceURLs", Kind::Strs),
];

const LABEL_SELECTOR: &[Spec] = &[
    (1, "matchLabels", Kind::MapStr),
    (
        2,
        "matchExpressions",
        Kind::Msgs(&[
            (1, "key", Kind::Str),
            (2, "operator", Kind::Str),
            (3, "values", Kind::Strs),
        ]),
    ),
];

const ROLE: &[Spec] = &[
    META,
    (2, "rules", Kind::Msgs(POLICY_RULE)),
    (
        3,
        "aggregationRule",
        Kind::Msg(&[(1, "clusterRoleSelectors", Kind::Msgs(LABEL_SELECTOR))]),
    ),
];

const LOCAL_OBJECT_REFERENCE: Spec = (1, "", Kind::Inline(&[(1, "name", Kind::Str)]));

const KEY_SELECTOR: &[Spec] = &[
    LOCAL_OBJECT_REFERENCE,
    (2, "key", Kind::Str),
    (3, "optional", Kind::Bool),
];

const ENV_VAR_SOURCE: &[Spec] = &[
    (
        1,
        "fieldRef",
        Kind::Msg(&[(1, "apiVersion", Kind::Str), (2, "fieldPath", Kind::Str)]),
    ),
    (
        2,
        "resourceFieldRef",
        Kind::Msg(&[
            (1, "containerName", Kind::Str),
            (2, "resource", Kind::Str),
            (3, "divisor", Kind::Quantity),
        ]),
    ),
    (3, "configMapKeyRef", Kind::Msg(KEY_SELECTOR)),
    (4, "secretKeyRef", Kind::Msg(KEY_SELECTOR)),
];

const ENV_FROM_SOURCE: &[Spec] = &[
    (1, "prefix", Kind::Str),
    (
        2,
        "configMapRef",
        Kind::Msg(&[LOCAL_OBJECT_REFERENCE, (2, "optional", Kind::Bool)]),
    ),
    (
        3,
        "secretRef",
        Kind::Msg(&[LOCAL_OBJECT_REFERENCE, (2, "optional", Kind::Bool)]),
    ),
];

/// The parts of `core/v1` Container that `kubectl create` and common manifests use; other non-empty
/// fields are refused rather than dropped.
const CONTAINER: &[Spec] = &[
    (1, "name", Kind::Str),
    (2, "image", Kind::Str),
    (3, "command", Kind::Strs),
    (4, "args", Kind::Strs),
    (5, "workingDir", Kind::Str),
    (
        6,
        "ports",
        Kind::Msgs(&[
            (1, "name", Kind::Str),
            (2, "hostPort", Kind::Int(true)),
            (3, "containerPort", Kind::Int(true)),
            (4, "protocol", Kind::Str),
            (5, "hostIP", Kind::Str),
        ]),
    ),
    (
        7,
        "env",
        Kind::Msgs(&[
            (1, "name", Kind::Str),
            (2, "value", Kind::Str),
            (3, "valueFrom", Kind::Msg(ENV_VAR_SOURCE)),
        ]),
    ),
    (
        8,
        "resources",
        Kind::Msg(&[
            (1, "limits", Kind::MapQuantity),
            (2, "requests", Kind::MapQuantity),
        ]),
    ),
    (
        9,
        "volumeMounts",
        Kind::Msgs(&[
            (1, "name", Kind::Str),
            (2, "readOnly", Kind::Flag),
            (3, "mountPath", Kind::Str),
            (4, "subPath", Kind::Str),
            (5, "mountPropagation", Kind::Str),
            (6, "subPathExpr", Kind::Str),
        ]),
    ),
    (13, "terminationMessagePath", Kind::Str),
    (14, "imagePullPolicy", Kind::Str),
    (16, "stdin", Kind::Flag),
    (17, "stdinOnce", Kind::Flag),
    (18, "tty", Kind::Flag),
    (19, "envFrom", Kind::Msgs(ENV_FROM_SOURCE)),
    (20, "terminationMessagePolicy", Kind::Str),
];

const POD_SPEC: &[Spec] = &[
    (2, "containers", Kind::Msgs(CONTAINER)),
    (3, "restartPolicy", Kind::Str),
    (4, "terminationGracePeriodSeconds", Kind::Int(false)),
    (5, "activeDeadlineSeconds", Kind::Int(false)),
    (6, "dnsPolicy", Kind::Str),
    (7, "nodeSelector", Kind::MapStr),
    (8, "serviceAccountName", Kind::Str),
    (9, "serviceAccount", Kind::Str),
    (10, "nodeName", Kind::Str),
    (11, "hostNetwork", Kind::Flag),
    (12, "hostPID", Kind::Flag),
    (13, "hostIPC", Kind::Flag),
    (
        15,
        "imagePullSecrets",
        Kind::Msgs(&[(1, "name", Kind::Str)]),
    ),
    (16, "hostname", Kind::Str),
    (17, "subdomain", Kind::Str),
    (19, "schedulerName", Kind::Str),
    (20, "initContainers", Kind::Msgs(CONTAINER)),
    (21, "automountServiceAccountToken", Kind::Bool),
    (
        22,
        "tolerations",
        Kind::Msgs(&[
            (1, "key", Kind::Str),
            (2, "operator", Kind::Str),
            (3, "value", Kind::Str),
            (4, "effect", Kind::Str),
            (5, "tolerationSeconds", Kind::Int(false)),
        ]),
    ),
    (24, "priorityClassName", Kind::Str),
    (25, "priority", Kind::Int(false)),
    (30, "enableServiceLinks", Kind::Bool),
];

const POD_TEMPLATE_SPEC: &[Spec] = &[META, (2, "spec", Kind::Msg(POD_SPEC))];

const DEPLOYMENT: &[Spec] = &[
    META,
    (
        2,
        "spec",
        Kind::Msg(&[
            (1, "replicas", Kind::Int(false)),
            (2, "selector", Kind::Msg(LABEL_SELECTOR)),
            (3, "template", Kind::Msg(POD_TEMPLATE_SPEC)),
            (
                4,
                "strategy",
                Kind::Msg(&[
                    (1, "type", Kind::Str),
                    (
                        2,
                        "rollingUpdate",
                        Kind::Msg(&[
                            (1, "maxUnavailable", Kind::IntOrString),
                            (2, "maxSurge", Kind::IntOrString),
                        ]),
                    ),
                ]),
            ),
            (5, "minReadySeconds", Kind::Int(true)),
            (6, "revisionHistoryLimit", Kind::Int(false)),
            (7, "paused", Kind::Flag),
            (9, "progressDeadlineSeconds", Kind::Int(false)),
        ]),
    ),
    STATUS,
];

const JOB_SPEC: &[Spec] = &[
    (1, "parallelism", Kind::Int(false)),
    (2, "completions", Kind::Int(false)),
    (3, "activeDeadlineSeconds", Kind::Int(false)),
    (4, "selector", Kind::Msg(LABEL_SELECTOR)),
    (5, "manualSelector", Kind::Bool),
    (6, "template", Kind::Msg(POD_TEMPLATE_SPEC)),
    (7, "backoffLimit", Kind::Int(false)),
    (8, "ttlSecondsAfterFinished", Kind::Int(false)),
    (9, "completionMode", Kind::Str),
    (10, "suspend", Kind::Bool),
];

const JOB: &[Spec] = &[META, (2, "spec", Kind::Msg(JOB_SPEC)), STATUS];

const CRON_JOB: &[Spec] = &[
    META,
    (
        2,
        "spec",
        Kind::Msg(&[
            (1, "schedule", Kind::Str),
            (2, "startingDeadlineSeconds", Kind::Int(false)),
            (3, "concurrencyPolicy", Kind::Str),
            (4, "suspend", Kind::Bool),
            (
                5,
                "jobTemplate",
                Kind::Msg(&[META, (2, "spec", Kind::Msg(JOB_SPEC))]),
            ),
            (6, "successfulJobsHistoryLimit", Kind::Int(false)),
            (7, "failedJobsHistoryLimit", Kind::Int(false)),
            (8, "timeZone", Kind::Str),
        ]),
    ),
    STATUS,
];

const SERVICE: &[Spec] = &[
    META,
    (
        2,
        "spec",
        Kind::Msg(&[
            (
                1,
                "ports",
                Kind::Msgs(&[
                    (1, "name", Kind::Str),
                    (2, "protocol", Kind::Str),
                    (3, "port", Kind::Int(true)),
                    (4, "targetPort", Kind::IntOrString),
                    (5, "nodePort", Kind::Int(true)),
                    (6, "appProtocol", Kind::Str),
                ]),
            ),
            (2, "selector", Kind::MapStr),
            (3, "clusterIP", Kind::Str),
            (4, "type", Kind::Str),
            (5, "externalIPs", Kind::Strs),
            (7, "sessionAffinity", Kind::Str),
            (8, "loadBalancerIP", Kind::Str),
            (9, "loadBalancerSourceRanges", Kind::Strs),
            (10, "externalName", Kind::Str),
            (11, "externalTrafficPolicy", Kind::Str),
            (12, "healthCheckNodePort", Kind::Int(true)),
            (13, "publishNotReadyAddresses", Kind::Flag),
            (17, "ipFamilyPolicy", Kind::Str),
            (18, "clusterIPs", Kind::Strs),
            (19, "ipFamilies", Kind::Strs),
            (20, "allocateLoadBalancerNodePorts", Kind::Bool),
            (21, "loadBalancerClass", Kind::Str),
            (22, "internalTrafficPolicy", Kind::Str),
        ]),
    ),
    STATUS,
];

const SUBJECT: &[Spec] = &[
    (1, "kind", Kind::Str),
    (2, "apiGroup", Kind::Str),
    (3, "name", Kind::Str),
    (4, "namespace", Kind::Str),
];

const ROLE_REF: &[Spec] = &[
    (1, "apiGroup", Kind::Str),
    (2, "kind", Kind::Str),
    (3, "name", Kind::Str),
];

const ROLE_BINDING: &[Spec] = &[
    META,
    (2, "subjects", Kind::Msgs(SUBJECT)),
    (3, "roleRef", Kind::Msg(ROLE_REF)),
];

/// The message layout of each supported (apiVersion, kind).
fn layout(api_version: &str, kind: &str) -> Option<&'static [Spec]> {
    Some(match (api_version, kind) {
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Service") => SERVICE,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("batch/v1", "Job") => JOB,
        ("batch/v1", "CronJob") => CRON_JOB,
        (_, "DeleteOptions") => DELETE_OPTIONS,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("authentication.k8s.io/v1", "TokenReview") => TOKEN_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => {
            SUBJECT_ACCESS_REVIEW
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => SELF_SUBJECT_RULES_REVIEW,
        ("certificates.k8s.io/v1", "CertificateSigningRequest") => CERTIFICATE_SIGNING_REQUEST,
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        _ => return None,
    })
}

fn b64(b: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(b))
}

fn push(o: &mut Map<String, Value>, name: &str, v: Value) {
    match o.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(a) => a.push(v),
        other => *other = Value::Array(vec![v]),
    }
}

fn insert_map(o: &mut Map<String, Value>, name: &str, k: String, v: Value) {
    if let Value::Object(m) = o.entry(name).or_insert_with(|| Value::Object(Map::new())) {
        m.insert(k, v);
    }
}

/// `resource.Quantity` { string = 1 } as its string form.
fn quantity(b: &[u8]) -> Result<Value, ProtobufError> {
    let mut q = String::new();
    for (n, f) in fields(b)? {
        if let (1, Field::Bytes(v)) = (n, f) {
            q = string(v);
        }
    }
    Ok(json!(q))
}

/// Decodes one message by its layout; empty unknown fields are skipped, others refused.
fn message(buf: &[u8], layout: &[Spec]) -> Result<Map<String, Value>, ProtobufError> {
    let mut o = Map::new();
    for (n, f) in fields(buf)? {
        let Some((_, name, kind)) = layout.iter().find(|(num, _, _)| *num == n) else {
            // gogo-protobuf writes unset non-pointer fields as empty values: those carry nothing.
            // Anything else the layout does not know would be silently lost, so it is refused.
            match f {
                Field::Varint(0) => continue,
                Field::Bytes([]) => continue,
                _ => return Err(ProtobufError::UnsupportedField(n)),
            }
        };
        let name = *name;
        match (*kind, f) {
            (Kind::Str, Field::Bytes(v)) => {
                if !v.is_empty() {
                    o.insert(name.into(), json!(string(v)));
                }
            }
            (Kind::Strs, Field::Bytes(v)) => push(&mut o, name, json!(string(v))),
            (Kind::Int(omit_zero), Field::Varint(v)) => {
                if !(omit_zero && v == 0) {
                    o.insert(name.into(), json!(v as i64));
                }
            }
            (Kind::Bool, Field::Varint(v)) => {
                o.insert(name.into(), json!(v != 0));
            }
            (Kind::Flag, Field::Varint(v)) => {
                if v != 0 {
                    o.insert(name.into(), json!(true));
                }
            }
            (Kind::Ignore, _) => {}
            (Kind::IntOrString, Field::Bytes(v)) => {
                let mut is_string = false;
                let mut int_val = 0i64;
                let mut str_val = String::new();
                for (fnum, ff) in fields(v)? {
                    match (fnum, ff) {
                        (1, Field::Varint(t)) => is_string = t == 1,
                        (2, Field::Varint(i)) => int_val = i64::from(i as i32),
                        (3, Field::Bytes(b)) => str_val = string(b),
                        _ => {}
                    }
                }
                let value = if is_string {
                    json!(str_val)
                } else {
                    json!(int_val)
                };
                o.insert(name.into(), value);
            }
            (Kind::Quantity, Field::Bytes(v)) => {
                o.insert(name.into(), quantity(v)?);
            }
            (Kind::MapQuantity, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                insert_map(&mut o, name, k, quantity(val)?);
            }
            (Kind::MapStr, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                insert_map(&mut o, name, k, json!(string(val)));
            }
            (Kind::Bytes, Field::Bytes(v)) => {
                o.insert(name.into(), b64(v));
            }
            (Kind::MapBytes, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                insert_map(&mut o, name, k, b64(val));
            }
            (Kind::Time, Field::Bytes(v)) => {
                if let Some(t) = time(v)? {
                    o.insert(name.into(), t);
                }
            }
            (Kind::RawJson, Field::Bytes(v)) => {
                for (fnum, ff) in fields(v)? {
                    if let (1, Field::Bytes(raw)) = (fnum, ff) {
                        let parsed: Value =
                            serde_json::from_slice(raw).map_err(|_| ProtobufError::Malformed)?;
                        o.insert(name.into(), parsed);
                    }
                }
            }
            (Kind::Inline(inner), Field::Bytes(v)) => {
                let mut inner = message(v, inner)?;
                o.append(&mut inner);
            }
            (Kind::Msg(inner), Field::Bytes(v)) => {
                o.insert(name.into(), Value::Object(message(v, inner)?));
            }
            (Kind::Msgs(inner), Field::Bytes(v)) => {
                push(&mut o, name, Value::Object(message(v, inner)?));
            }
            // A field whose wire type does not match its layout.
            _ => return Err(ProtobufError::Malformed),
        }
    }
    Ok(o)
}

/// Decodes a `k8s\0`-prefixed protobuf body into the object's wire JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoEnvelope)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(v)) => api_version = string(v),
                        (2, Field::Bytes(v)) => kind = string(v),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(v)) => raw = v,
            _ => {}
        }
    }
    let layout = layout(&api_version, &kind)
        .ok_or_else(|| ProtobufError::UnsupportedKind(format!("{api_version}, Kind={kind}")))?;
    let mut obj = message(raw, layout)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    out.append(&mut obj);
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn varint_field(n: u64, v: u64, out: &mut Vec<u8>) {
        varint(n << 3, out);
        varint(v, out);
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes_field(1, k.as_bytes(), &mut e);
        bytes_field(2, v, &mut e);
        e
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes_field(1, api_version.as_bytes(), &mut tm);
        bytes_field(2, kind.as_bytes(), &mut tm);
        let mut u = MAGIC.to_vec();
        bytes_field(1, &tm, &mut u);
        bytes_field(2, raw, &mut u);
        bytes_field(3, b"", &mut u);
        bytes_field(4, b"", &mut u);
        u
    }

    /// A Secret shaped like Helm's release record, as gogo-protobuf writes it (empty strings included).
    fn helm_secret() -> Vec<u8> {
        let mut meta = Vec::new();
        bytes_field(1, b"sh.helm.release.v1.t1.v1", &mut meta);
        bytes_field(2, b"", &mut meta);
        bytes_field(3, b"default", &mut meta);
        bytes_field(5, b"0b6f", &mut meta);
        bytes_field(6, b"42", &mut meta);
        varint_field(7, 0, &mut meta);
        let mut t = Vec::new();
        varint_field(1, 1_795_705_462, &mut t);
        bytes_field(8, &t, &mut meta);
        bytes_field(11, &entry("owner", b"helm"), &mut meta);
        bytes_field(11, &entry("name", b"t1"), &mut meta);
        let mut mf = Vec::new();
        bytes_field(1, b"helm", &mut mf);
        bytes_field(2, b"Update", &mut mf);
        bytes_field(3, b"v1", &mut mf);
        bytes_field(6, b"FieldsV1", &mut mf);
        let mut fv1 = Vec::new();
        bytes_field(1, br#"{"f:data":{".":{}}}"#, &mut fv1);
        bytes_field(7, &fv1, &mut mf);
        bytes_field(8, b"", &mut mf);
        bytes_field(17, &mf, &mut meta);
        let mut s = Vec::new();
        bytes_field(1, &meta, &mut s);
        bytes_field(2, &entry("release", b"H4sI\x00\xff"), &mut s);
        bytes_field(3, b"helm.sh/release.v1", &mut s);
        envelope("v1", "Secret", &s)
    }

    #[test]
    fn decodes_a_helm_release_secret() {
        let v = decode(&helm_secret()).expect("decodes");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["type"], "helm.sh/release.v1");
        let m = &v["metadata"];
        assert_eq!(m["name"], "sh.helm.release.v1.t1.v1");
        assert_eq!(m["namespace"], "default");
        assert_eq!(m["resourceVersion"], "42");
        assert!(m.get("generateName").is_none(), "empty strings are omitted");
        assert!(m.get("generation").is_none(), "zero numbers are omitted");
        assert_eq!(m["creationTimestamp"], "2026-11-26T15:04:22Z");
        assert_eq!(m["labels"], json!({ "owner": "helm", "name": "t1" }));
        assert_eq!(m["managedFields"][0]["manager"], "helm");
        assert_eq!(
            m["managedFields"][0]["fieldsV1"],
            json!({ "f:data": { ".": {} } })
        );
        assert!(m["managedFields"][0].get("subresource").is_none());
        assert_eq!(v["data"]["release"], "SDRzSQD/");
    }

    #[test]
    fn decodes_config_maps_and_delete_options() {
        let mut meta = Vec::new();
        bytes_field(1, b"cm", &mut meta);
        let mut owner = Vec::new();
        bytes_field(1, b"Deployment", &mut owner);
        bytes_field(3, b"web", &mut owner);
        bytes_field(4, b"u-1", &mut owner);
        bytes_field(5, b"apps/v1", &mut owner);
        varint_field(6, 1, &mut owner);
        bytes_field(13, &owner, &mut meta);
        bytes_field(14, b"example.com/keep", &mut meta);
        let mut cm = Vec::new();
        bytes_field(1, &meta, &mut cm);
        bytes_field(2, &entry("mode", b"fast"), &mut cm);
        bytes_field(3, &entry("blob", b"\x01\x02"), &mut cm);
        let v = decode(&envelope("v1", "ConfigMap", &cm)).expect("decodes");
        assert_eq!(v["data"]["mode"], "fast");
        assert_eq!(v["binaryData"]["blob"], "AQI=");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(v["metadata"]["finalizers"], json!(["example.com/keep"]));

        let mut d = Vec::new();
        varint_field(1, 0, &mut d);
        bytes_field(4, b"Background", &mut d);
        let v = decode(&envelope("meta.k8s.io/v1", "DeleteOptions", &d)).expect("decodes");
        assert_eq!(v["propagationPolicy"], "Background");
        assert_eq!(v["gracePeriodSeconds"], 0);
    }

    /// Bodies captured from kubectl 1.32 (`create token`, `auth can-i`, `create namespace`, `create role`).
    #[test]
    fn decodes_bodies_captured_from_kubectl() {
        let token = b"k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12#\n\x10\n\x00\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\t\n\x04aud1 \xb0\t\x1a\x04\n\x00\x12\x00\x1a\x00\"\x00";
        let v = decode(token).expect("token request");
        assert_eq!(v["kind"], "TokenRequest");
        assert_eq!(v["spec"]["audiences"], json!(["aud1"]));
        assert_eq!(v["spec"]["expirationSeconds"], 1200);
        assert!(
            v["spec"].get("boundObjectRef").is_none(),
            "status and unset refs are not decoded"
        );
        assert_eq!(v["metadata"], json!({}));

        let ssar = b"k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12A\n\x10\n\x00\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12#\n!\n\x0bkube-system\x12\x04list\x1a\x00\"\x00*\x04pods2\x00:\x00\x1a\x08\x08\x00\x12\x00\x1a\x00\"\x00";
        let v = decode(ssar).expect("access review");
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({ "namespace": "kube-system", "verb": "list", "resource": "pods" })
        );

        let ns = b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x1a\n\x12\n\x02n1\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\x00\x1a\x02\n\x00\x1a\x00\"\x00";
        let v = decode(ns).expect("namespace");
        assert_eq!(v["metadata"], json!({ "name": "n1" }));

        let role = b"k8s\x00\n$\n\x1crbac.authorization.k8s.io/v1\x12\x04Role\x12#\n\x12\n\x02r1\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\r\n\x03get\x12\x00\x1a\x04pods\x1a\x00\"\x00";
        let v = decode(role).expect("role");
        assert_eq!(
            v["rules"],
            json!([{ "verbs": ["get"], "apiGroups": [""], "resources": ["pods"] }])
        );
    }

    /// `kubectl create deployment|job|cronjob|service` bodies, compared with `--dry-run=client -o json`.
    #[test]
    fn decodes_workloads_from_kubectl_create() {
        let dep = decode(b"k8s\x00\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment\x12\xb2\x01\x0a\x1d\x0a\x02d1\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00Z\x09\x0a\x03app\x12\x02d1\x12\x82\x01\x08\x02\x12\x0b\x0a\x09\x0a\x03app\x12\x02d1\x1ai\x0a\x1b\x0a\x00\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00Z\x09\x0a\x03app\x12\x02d1\x12J\x12,\x0a\x03img\x12\x05img:2*\x002\x0a\x0a\x00\x10\x00\x18P\"\x00*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\"\x02\x0a\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\x18\x00 \x00(\x008\x00\x1a\x00\"\x00").expect("deployment");
        assert_eq!(
            dep["spec"],
            json!({
                "replicas": 2,
                "selector": { "matchLabels": { "app": "d1" } },
                "template": {
                    "metadata": { "labels": { "app": "d1" } },
                    "spec": { "containers": [{
                        "name": "img", "image": "img:2",
                        "ports": [{ "containerPort": 80 }], "resources": {}
                    }] }
                },
                "strategy": {}
            })
        );
        assert_eq!(
            dep["metadata"],
            json!({ "name": "d1", "labels": { "app": "d1" } })
        );
        assert!(dep.get("status").is_none());

        let job = decode(b"k8s\x00\x0a\x0f\x0a\x08batch/v1\x12\x03Job\x12\x82\x01\x0a\x12\x0a\x02j1\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12b2`\x0a\x10\x0a\x00\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12L\x12)\x0a\x02j1\x12\x05img:3\x1a\x04echo\x1a\x02hi*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x05Never2\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x1a\x08 \x00(\x000\x00:\x00\x1a\x00\"\x00").expect("job");
        assert_eq!(
            job["spec"]["template"]["spec"],
            json!({
                "containers": [{ "name": "j1", "image": "img:3", "command": ["echo", "hi"], "resources": {} }],
                "restartPolicy": "Never"
            })
        );

        let cron = decode(b"k8s\x00\x0a\x13\x0a\x08batch/v1\x12\x07CronJob\x12\xa6\x01\x0a\x12\x0a\x02c1\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\x8d\x01\x0a\x0b*/5 * * * *\x1a\x00*|\x0a\x12\x0a\x02c1\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12f2d\x0a\x10\x0a\x00\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12P\x12)\x0a\x02c1\x12\x05img:4\x1a\x04echo\x1a\x02hi*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x09OnFailure2\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x1a\x00\x1a\x00\"\x00").expect("cronjob");
        assert_eq!(cron["spec"]["schedule"], "*/5 * * * *");
        assert_eq!(cron["spec"]["jobTemplate"]["metadata"]["name"], "c1");
        assert_eq!(
            cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
            "OnFailure"
        );

        let svc = decode(b"k8s\x00\x0a\x0d\x0a\x02v1\x12\x07Service\x12f\x0a\x1d\x0a\x02s1\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00Z\x09\x0a\x03app\x12\x02s1\x12A\x0a\x1b\x0a\x0780-8080\x12\x03TCP\x18P\"\x07\x08\x00\x10\x90?\x1a\x00(\x00\x12\x09\x0a\x03app\x12\x02s1\x1a\x00\"\x09ClusterIP:\x00B\x00R\x00Z\x00`\x00h\x00\x1a\x02\x0a\x00\x1a\x00\"\x00").expect("service");
        assert_eq!(
            svc["spec"],
            json!({
                "ports": [{ "name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080 }],
                "selector": { "app": "s1" },
                "type": "ClusterIP"
            })
        );
    }

    #[test]
    fn refuses_non_empty_fields_it_cannot_decode() {
        // A Pod template spec with `volumes` (PodSpec field 1), which the layouts do not cover.
        let mut volume = Vec::new();
        bytes_field(1, b"data", &mut volume);
        let mut pod_spec = Vec::new();
        bytes_field(1, &volume, &mut pod_spec);
        let mut template = Vec::new();
        bytes_field(2, &pod_spec, &mut template);
        let mut spec = Vec::new();
        bytes_field(3, &template, &mut spec);
        let mut dep = Vec::new();
        bytes_field(2, &spec, &mut dep);
        assert_eq!(
            decode(&envelope("apps/v1", "Deployment", &dep)),
            Err(ProtobufError::UnsupportedField(1))
        );
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert_eq!(
            decode(b"{\"kind\":\"Secret\"}"),
            Err(ProtobufError::NoEnvelope)
        );
        let full = helm_secret();
        for cut in [5, 20, full.len() / 2, full.len() - 1] {
            assert!(decode(&full[..cut]).is_err(), "truncated at {cut}");
        }
        let mut pod = Vec::new();
        bytes_field(1, b"", &mut pod);
        assert!(matches!(
            decode(&envelope("v1", "Pod", &pod)),
            Err(ProtobufError::UnsupportedKind(_))
        ));
        assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(is_protobuf(
            "application/vnd.kubernetes.protobuf; charset=utf-8"
        ));
        assert!(!is_protobuf("application/json"));
    }
}
