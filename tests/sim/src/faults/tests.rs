//! Unit tests of the fault grammar, the decisions and the counters.

use super::*;

const SPEC: &str =
    "seed=42,get=0.05:500,list=0.1:429,patch=0.02:409,latency=5ms..20ms,watch-drop=0.01";

fn req<'a>(verb: &'a str, resource: &'a str) -> RequestInfo<'a> {
    RequestInfo {
        verb,
        resource,
        ..RequestInfo::default()
    }
}

fn any_watch() -> RequestInfo<'static> {
    req("watch", "pods")
}

#[test]
fn parses_the_documented_example() {
    let c = FaultConfig::parse(SPEC).unwrap();
    assert_eq!(c.seed, 42);
    assert_eq!(c.rules.len(), 3);
    assert_eq!(
        c.rules[1],
        FaultRule {
            verb: "list".into(),
            target: Target::default(),
            rate: 0.1,
            action: FaultAction::Error(429),
        }
    );
    let l = c.latency.clone().unwrap();
    assert_eq!(
        (l.min, l.max, l.rate),
        (Duration::from_millis(5), Duration::from_millis(20), 1.0)
    );
    assert_eq!(
        c.watch_rules,
        vec![WatchRule {
            fault: WatchFault::Drop,
            target: Target::default(),
            rate: 0.01
        }]
    );
    assert_eq!(c.to_string(), SPEC);
    assert_eq!(FaultConfig::parse(&c.to_string()).unwrap(), c);
}

#[test]
fn parses_the_new_faults_and_scopes() {
    let spec = "seed=1,patch/agentnodes/status{ua=hypersync-operator;user=system:serviceaccount:hs:op}=0.2:409,\
                create{ns=team-a;name=web}=0.1:applied-504,update=0.1:applied-drop,delete=0.1:applied-hang,\
                get=0.1:drop,list=0.1:hang,watch=0.05:410,watch-gone/pods{ua=kubectl}=0.01,\
                hang-for=250ms,retry-after=3";
    let c = FaultConfig::parse(spec).unwrap();
    assert_eq!(c.rules.len(), 7);
    assert_eq!(
        c.rules[0].target,
        Target {
            resource: Some("agentnodes/status".into()),
            scope: Scope {
                user_agent: Some("hypersync-operator".into()),
                user: Some("system:serviceaccount:hs:op".into()),
                ..Scope::default()
            }
        }
    );
    let actions: Vec<FaultAction> = c.rules.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        vec![
            FaultAction::Error(409),
            FaultAction::AppliedTimeout,
            FaultAction::AppliedDrop,
            FaultAction::AppliedHang,
            FaultAction::Drop,
            FaultAction::Hang,
            FaultAction::Gone,
        ]
    );
    assert_eq!(c.watch_rules[0].fault, WatchFault::Gone);
    assert_eq!(c.hang_for, Duration::from_millis(250));
    assert!(c.names_objects());
    // Canonical form round-trips, through the string and through the structured JSON.
    assert_eq!(FaultConfig::parse(&c.to_string()).unwrap(), c);
    let mut j = c.to_json();
    j.as_object_mut().unwrap().remove("spec");
    assert_eq!(FaultConfig::from_json(&j).unwrap(), c);
    // Commas inside a scope separate scope fields too.
    let c2 = FaultConfig::parse("get{ua=a,user=b}=1:500").unwrap();
    assert_eq!(c2.rules[0].target.scope.user.as_deref(), Some("b"));
    assert_eq!(c2.to_string(), "seed=0,get{ua=a;user=b}=1:500");
}

#[test]
fn empty_and_off_are_noop() {
    for s in ["", "off", "  ", "seed=3", "get=0:500"] {
        let c = FaultConfig::parse(s).unwrap();
        assert!(c.is_noop(), "{s}");
    }
    let f = Faults::disabled();
    assert!(!f.is_enabled());
    for _ in 0..100 {
        assert_eq!(f.decide(&req("get", "pods")), None);
        assert_eq!(f.latency(), None);
        assert_eq!(f.watch_event(&any_watch()), None);
    }
}

#[test]
fn parse_errors() {
    let bad = [
        "get=0.5",
        "get=2:500",
        "get=0.1:404",
        "get=0.1:frob",
        "frob=0.1:500",
        "latency=5",
        "latency=20ms..5ms",
        "seed=x",
        "get/=0.1:500",
        "get/a/b/c=0.1:500",
        "nokey",
        "get=0.7:500,get=0.5:429",
        "get=0.1:410",
        "*=0.1:410",
        "get{ua=}=0.1:500",
        "get{agent=x}=0.1:500",
        "get{ua=x=0.1:500",
        "get{}=0.1:500",
        "get{ua=a;ua=b}=0.1:500",
        "watch-drop=2",
        "watch-drop=0.7,watch-gone=0.5",
        "hang-for=5",
    ];
    for s in bad {
        assert!(FaultConfig::parse(s).is_err(), "{s}");
    }
    assert_eq!(
        FaultConfig::parse("get=0.1:404").unwrap_err().to_string(),
        "failed to parse fault item \"get=0.1:404\": status code 404 is not one of 409, 410, 429, \
         500, 503, 504, drop, hang, applied-504, applied-drop or applied-hang"
    );
    assert_eq!(
        FaultConfig::parse("get{agent=x}=0.1:500")
            .unwrap_err()
            .to_string(),
        "failed to parse fault item \"get{agent=x}=0.1:500\": unknown scope \"agent\" (expected \
         ua, user, ns or name)"
    );
}

#[test]
fn same_seed_same_sequence() {
    let run = |spec: &str| {
        let f = Faults::new(FaultConfig::parse(spec).unwrap());
        (0..2000)
            .map(|i| {
                let verb = ["get", "list", "patch", "create"][i % 4];
                (
                    f.decide(&req(verb, "pods")),
                    f.latency(),
                    f.watch_event(&any_watch()),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(SPEC), run(SPEC));
    assert_ne!(run(SPEC), run(&SPEC.replace("seed=42", "seed=43")));
}

#[test]
fn rates_are_roughly_honoured() {
    let f = Faults::new(FaultConfig::parse("seed=7,get=0.25:500,get=0.25:applied-504").unwrap());
    let n = 20_000;
    let mut c500 = 0;
    let mut c504 = 0;
    for _ in 0..n {
        match f.decide(&req("get", "pods")) {
            Some(FaultAction::Error(500)) => c500 += 1,
            Some(FaultAction::AppliedTimeout) => c504 += 1,
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    for c in [c500, c504] {
        let p = c as f64 / n as f64;
        assert!((0.23..0.27).contains(&p), "rate {p}");
    }
    assert_eq!(f.decide(&req("list", "pods")), None);
    assert_eq!(f.stats()["get:500"], c500 as u64);
    assert_eq!(f.stats()["get:applied-504"], c504 as u64);
}

#[test]
fn most_specific_target_wins() {
    let f = Faults::new(
        FaultConfig::parse(
            "patch/agentnodes=1:409,patch=1:500,*/pods=1:503,*=1:429,patch/agentnodes/status=1:drop",
        )
        .unwrap(),
    );
    let d = |verb, resource, sub| {
        f.decide(&RequestInfo {
            verb,
            resource,
            subresource: sub,
            ..RequestInfo::default()
        })
    };
    assert_eq!(d("patch", "agentnodes", ""), Some(FaultAction::Error(409)));
    assert_eq!(d("patch", "agentnodes", "status"), Some(FaultAction::Drop));
    assert_eq!(
        d("patch", "agentnodes", "scale"),
        Some(FaultAction::Error(409))
    );
    assert_eq!(d("patch", "deployments", ""), Some(FaultAction::Error(500)));
    assert_eq!(d("get", "pods", ""), Some(FaultAction::Error(503)));
    assert_eq!(d("get", "nodes", ""), Some(FaultAction::Error(429)));
    assert_eq!(d("delete", "", ""), Some(FaultAction::Error(429)));
}

#[test]
fn scoped_rules_hit_only_their_client_or_object() {
    let f = Faults::new(
        FaultConfig::parse(
            "*{ua=hypersync-operator}=1:503,get{user=system:serviceaccount:ops:*}=1:500,\
             delete/configmaps{ns=a;name=x}=1:applied-504",
        )
        .unwrap(),
    );
    let base = RequestInfo {
        verb: "get",
        resource: "configmaps",
        namespace: "a",
        name: "x",
        user_agent: "kubectl/v1.33.1 (linux/amd64)",
        user: "admin",
        ..RequestInfo::default()
    };
    assert_eq!(f.decide(&base), None);
    let op = RequestInfo {
        user_agent: "hypersync-operator/0.1.0",
        ..base
    };
    assert_eq!(f.decide(&op), Some(FaultAction::Error(503)));
    let sa = RequestInfo {
        user: "system:serviceaccount:ops:agent",
        ..base
    };
    assert_eq!(f.decide(&sa), Some(FaultAction::Error(500)));
    let other_sa = RequestInfo {
        user: "system:serviceaccount:dev:agent",
        ..base
    };
    assert_eq!(f.decide(&other_sa), None);
    let del = RequestInfo {
        verb: "delete",
        ..base
    };
    assert_eq!(f.decide(&del), Some(FaultAction::AppliedTimeout));
    assert_eq!(f.decide(&RequestInfo { name: "y", ..del }), None);
    assert_eq!(
        f.decide(&RequestInfo {
            namespace: "b",
            ..del
        }),
        None
    );
    // The operator's delete of the aimed object: two scope fields beat one.
    assert_eq!(
        f.decide(&RequestInfo {
            user_agent: "hypersync-operator",
            ..del
        }),
        Some(FaultAction::AppliedTimeout)
    );
    let c = f.counters_json();
    assert_eq!(c["total"], 4);
    assert_eq!(c["byKind"]["503"], 1);
    assert_eq!(c["byKind"]["applied-504"], 2);
    assert_eq!(c["byVerb"]["get"]["500"], 1);
    assert_eq!(
        c["byRule"]["delete/configmaps{ns=a;name=x}=1:applied-504"],
        2
    );
    f.reset_counters();
    assert_eq!(f.counters_json()["total"], 0);
    assert!(f.is_enabled());
}

#[test]
fn gone_only_hits_watches_from_a_resource_version() {
    let f = Faults::new(FaultConfig::parse("watch=1:410").unwrap());
    assert_eq!(f.decide(&any_watch()), None);
    let resumed = RequestInfo {
        resource_version: 12,
        ..any_watch()
    };
    assert_eq!(f.decide(&resumed), Some(FaultAction::Gone));
    assert_eq!(f.decide(&req("list", "pods")), None);
    assert_eq!(f.stats()["watch:410"], 1);
}

#[test]
fn latency_in_range_and_fixed() {
    let f = Faults::new(FaultConfig::parse("latency=5ms..20ms").unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..500 {
        let d = f.latency().unwrap();
        assert!(
            d >= Duration::from_millis(5) && d <= Duration::from_millis(20),
            "{d:?}"
        );
        seen.insert(d);
    }
    assert!(seen.len() > 50);
    let f = Faults::new(FaultConfig::parse("latency=1.5s").unwrap());
    assert_eq!(f.latency(), Some(Duration::from_millis(1500)));
    let f = Faults::new(FaultConfig::parse("seed=1,latency=10ms@0.5").unwrap());
    let hits = (0..1000).filter(|_| f.latency().is_some()).count();
    assert!((400..600).contains(&hits), "{hits}");
    assert_eq!(f.stats()["latency"], hits as u64);
}

#[test]
fn watch_faults_rates_and_targets() {
    let f = Faults::new(FaultConfig::parse("seed=9,watch-drop=0.1,watch-gone=0.05").unwrap());
    let mut drops = 0;
    let mut gones = 0;
    for _ in 0..10_000 {
        match f.watch_event(&any_watch()) {
            Some(WatchFault::Drop) => drops += 1,
            Some(WatchFault::Gone) => gones += 1,
            None => {}
        }
    }
    assert!((800..1200).contains(&drops), "{drops}");
    assert!((350..650).contains(&gones), "{gones}");
    assert_eq!(f.stats()["watch-gone"], gones);
    let f = Faults::new(FaultConfig::parse("watch-gone/agentnodes{ua=op}=1").unwrap());
    let w = WatchTarget {
        resource: "agentnodes".into(),
        user_agent: "op/1".into(),
        ..WatchTarget::default()
    };
    assert_eq!(f.watch_event(&w.info()), Some(WatchFault::Gone));
    let other = WatchTarget {
        user_agent: "kubectl".into(),
        ..w.clone()
    };
    assert_eq!(f.watch_event(&other.info()), None);
    assert_eq!(f.watch_event(&any_watch()), None);
}

#[test]
fn set_at_runtime_reseeds() {
    let f = Faults::disabled();
    let get = req("get", "pods");
    assert_eq!(f.decide(&get), None);
    f.set(FaultConfig::parse("seed=5,get=0.5:500").unwrap());
    let first: Vec<_> = (0..50).map(|_| f.decide(&get)).collect();
    assert!(first.contains(&Some(FaultAction::Error(500))) && first.contains(&None));
    f.set(FaultConfig::parse("seed=5,get=0.5:500").unwrap());
    let again: Vec<_> = (0..50).map(|_| f.decide(&get)).collect();
    assert_eq!(first, again);
    assert!(f.is_enabled());
    f.set(FaultConfig::parse("off").unwrap());
    assert!(!f.is_enabled());
}

#[test]
fn json_forms() {
    let a = FaultConfig::from_json(&json!(SPEC)).unwrap();
    let b = FaultConfig::from_json(&json!({"spec": SPEC})).unwrap();
    assert_eq!(a, b);
    let c = FaultConfig::from_json(&json!({
        "seed": 42,
        "rules": [
            {"verb": "get", "rate": 0.05, "code": 500},
            {"verb": "list", "rate": 0.1, "code": 429},
            {"verb": "patch", "rate": 0.02, "code": 409}
        ],
        "latency": {"min": "5ms", "max": "20ms"},
        "watchDrop": 0.01
    }))
    .unwrap();
    assert_eq!(a, c);
    // to_json round-trips through the structured form.
    let mut j = a.to_json();
    assert_eq!(j["spec"], SPEC);
    j.as_object_mut().unwrap().remove("spec");
    assert_eq!(FaultConfig::from_json(&j).unwrap(), a);
    let scoped = FaultConfig::from_json(&json!({"rules": [
        {"verb": "create", "userAgent": "op", "rate": 1, "action": "applied-504"}
    ]}))
    .unwrap();
    assert_eq!(scoped.to_string(), "seed=0,create{ua=op}=1:applied-504");
    for bad in [
        json!({"rules": [{"verb": "get", "rate": 0.1, "code": 418}]}),
        json!({"rules": [{"verb": "get", "rate": 0.1}]}),
        json!({"rules": [{"verb": "get", "rate": 0.1, "code": 500, "action": "drop"}]}),
        json!({"rules": [{"verb": "get", "rate": 0.1, "userAgent": "a;b", "code": 500}]}),
        json!({"watchRules": [{"fault": "explode", "rate": 0.1}]}),
        json!({"bogus": 1}),
        json!(5),
    ] {
        assert!(FaultConfig::from_json(&bad).is_err(), "{bad}");
    }
}

#[test]
fn random_seed_is_reported() {
    let c = FaultConfig::parse("seed=random,get=0.1:500").unwrap();
    assert!(c.to_string().starts_with(&format!("seed={},", c.seed)));
}

#[test]
fn status_bodies() {
    let s = status_body(409, "hypersync.io", "agentnodes", Some("n1"), 1);
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(s["code"], 409);
    assert_eq!(
        s["message"],
        "Operation cannot be fulfilled on agentnodes.hypersync.io \"n1\": the object has been \
         modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        s["details"],
        json!({"name": "n1", "group": "hypersync.io", "kind": "agentnodes"})
    );
    let s = Faults::new(FaultConfig::parse("retry-after=3").unwrap())
        .status_body(429, "", "pods", None);
    assert_eq!(s["reason"], "TooManyRequests");
    assert_eq!(
        s["details"],
        json!({"kind": "pods", "retryAfterSeconds": 3})
    );
    let s = status_body(500, "", "pods", None, 1);
    assert_eq!(s["reason"], "InternalError");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with("Internal error occurred: ")
    );
    assert_eq!(
        status_body(503, "", "pods", None, 1)["reason"],
        "ServiceUnavailable"
    );
    let t = status_body(504, "", "pods", None, 1);
    assert_eq!(t["reason"], "Timeout");
    assert_eq!(
        t["message"],
        "the server was unable to return a response in the time allotted, but may still be \
         processing the request"
    );
}
