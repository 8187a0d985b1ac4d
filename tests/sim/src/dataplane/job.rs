//! The Job controller: creates pods from the template (NonIndexed and Indexed), counts
//! successes and failures, retries up to `backoffLimit`, enforces `activeDeadlineSeconds`,
//! honours `suspend`, writes the real conditions (`SuccessCriteriaMet`/`Complete`,
//! `FailureTarget`/`Failed`, `Suspended`) and deletes finished Jobs after
//! `ttlSecondsAfterFinished`.
//!
//! Simplifications: failed pods are replaced at once (no exponential back-off delay), and
//! `podFailurePolicy`, `successPolicy` and `backoffLimitPerIndex` are not evaluated.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value, json};

use super::events;
use super::replicaset::{OwnedIndex, create_pod_from_template};
use super::util::{
    CondStyle, add_secs, at, condition, condition_true, conditions_of, i64_at, is_terminating,
    name, namespace, parse_time, pod_active, pod_phase, pod_ready, set, set_condition, str_at, uid,
};
use super::{Ctx, K, ResourceRef};

const COMPONENT: &str = "job-controller";
const INDEX_LABEL: &str = "batch.kubernetes.io/job-completion-index";

/// Syncs the Jobs that changed, whose pods changed, or whose timer is due.
pub(crate) fn sync_all(ctx: &Ctx<'_>) {
    let jobs = ctx.cached(K::Job, &ctx.work_of(K::Job));
    if jobs.is_empty() {
        return;
    }
    let pods: Vec<std::sync::Arc<Value>> = ctx.with_cache(|c, _| {
        jobs.iter()
            .flat_map(|j| c.pods_owned_by(uid(j)))
            .cloned()
            .collect()
    });
    let mut names: HashSet<String> = pods.iter().map(|p| name(p).to_string()).collect();
    let index = OwnedIndex::new(&pods);
    for job in &jobs {
        if is_terminating(job) {
            continue;
        }
        ctx.focus(K::Job, job);
        sync_one(ctx, job, &index, &mut names);
    }
}

fn with_kind(job: &Value) -> Value {
    events::subject(job, "batch/v1", "Job")
}

fn pod_index(p: &Value) -> Option<i64> {
    str_at(p, &["metadata", "labels", INDEX_LABEL])
        .or_else(|| str_at(p, &["metadata", "annotations", INDEX_LABEL]))
        .and_then(|s| s.parse().ok())
}

/// `1,3-5` style rendering of a set of indexes, as `status.completedIndexes`.
fn format_indexes(set: &BTreeSet<i64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

fn finished_at(job: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Some(t) = str_at(job, &["status", "completionTime"]).and_then(parse_time) {
        return Some(t);
    }
    condition(job, "Failed")
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(parse_time)
}

fn delete_pods(ctx: &Ctx<'_>, job: &Value, pods: &[&Value]) {
    for p in pods {
        if ctx
            .delete(&ResourceRef::pods(), Some(namespace(p)), name(p))
            .is_ok()
        {
            events::record(
                ctx,
                &with_kind(job),
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {}", name(p)),
                COMPONENT,
            );
        }
    }
}

fn sync_one(ctx: &Ctx<'_>, job: &Value, index: &OwnedIndex<'_>, names: &mut HashSet<String>) {
    let mine = index.of(job);
    if condition_true(job, "Complete") || condition_true(job, "Failed") {
        if let (Some(ttl), Some(done)) = (
            i64_at(job, &["spec", "ttlSecondsAfterFinished"]),
            finished_at(job),
        ) {
            let due = add_secs(done, ttl.max(0) as f64);
            if ctx.now >= due {
                // The TTL controller deletes with foreground propagation; do the pods ourselves.
                for p in &mine {
                    let _ = ctx.delete(&ResourceRef::pods(), Some(namespace(p)), name(p));
                }
                let _ = ctx.delete(&ResourceRef::jobs(), Some(namespace(job)), name(job));
            } else {
                ctx.wake_at(due);
            }
        }
        return;
    }
    let spec = |k: &str| i64_at(job, &["spec", k]);
    let suspended = at(job, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true);
    let parallelism = spec("parallelism").unwrap_or(1).max(0);
    let completions = spec("completions").map(|c| c.max(0));
    let backoff_limit = spec("backoffLimit").unwrap_or(6).max(0);
    let indexed = str_at(job, &["spec", "completionMode"]) == Some("Indexed");
    let on_failure =
        str_at(job, &["spec", "template", "spec", "restartPolicy"]) == Some("OnFailure");

    let active: Vec<&Value> = mine.iter().copied().filter(|p| pod_active(p)).collect();
    let succeeded_pods: Vec<&Value> = mine
        .iter()
        .copied()
        .filter(|p| pod_phase(p) == "Succeeded")
        .collect();
    let failed_pods = mine.iter().filter(|p| pod_phase(p) == "Failed").count() as i64;
    let old_status = job
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let old_n = |k: &str| i64_at(&old_status, &[k]).unwrap_or(0);
    let completed_indexes: BTreeSet<i64> = succeeded_pods
        .iter()
        .filter_map(|p| pod_index(p))
        .filter(|i| completions.is_none_or(|c| *i < c))
        .collect();
    let succeeded = old_n("succeeded").max(succeeded_pods.len() as i64);
    let failed = old_n("failed").max(failed_pods);
    let restarts: i64 = active
        .iter()
        .flat_map(|p| {
            at(p, &["status", "containerStatuses"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum();

    let mut status = old_status.clone();
    let mut conds = conditions_of(job);
    let now = ctx.now_s.clone();
    let start = if suspended {
        None
    } else {
        Some(
            status
                .get("startTime")
                .and_then(Value::as_str)
                .and_then(parse_time)
                .unwrap_or(ctx.now),
        )
    };
    if !suspended && status.get("startTime").is_none() {
        set(&mut status, &["startTime"], json!(now));
    }

    let past_backoff = failed > backoff_limit
        || (on_failure
            && if backoff_limit == 0 {
                restarts > 0
            } else {
                restarts >= backoff_limit
            });
    let deadline =
        spec("activeDeadlineSeconds").and_then(|ads| start.map(|s| add_secs(s, ads.max(0) as f64)));
    let complete = if indexed {
        completions.is_some_and(|c| completed_indexes.len() as i64 >= c)
    } else {
        match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        }
    };

    let active_after;
    let mut ready = active.iter().filter(|p| pod_ready(p)).count() as i64;
    let mut finished_event: Option<(&str, &str, &str)> = None;
    let fail = if past_backoff {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| ctx.now >= d) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    if let Some((reason, message)) = fail {
        delete_pods(ctx, job, &active);
        active_after = 0;
        ready = 0;
        set_condition(
            &mut conds,
            "FailureTarget",
            "True",
            reason,
            message,
            &now,
            CondStyle::Job,
            false,
        );
        set_condition(
            &mut conds,
            "Failed",
            "True",
            reason,
            message,
            &now,
            CondStyle::Job,
            false,
        );
        finished_event = Some(("Warning", reason, message));
    } else if complete {
        delete_pods(ctx, job, &active);
        active_after = 0;
        ready = 0;
        let msg = "Reached expected number of succeeded pods";
        set_condition(
            &mut conds,
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            msg,
            &now,
            CondStyle::Job,
            false,
        );
        set_condition(
            &mut conds,
            "Complete",
            "True",
            "CompletionsReached",
            msg,
            &now,
            CondStyle::Job,
            false,
        );
        set(&mut status, &["completionTime"], json!(now));
        finished_event = Some(("Normal", "Completed", "Job completed"));
    } else if suspended {
        delete_pods(ctx, job, &active);
        active_after = 0;
        ready = 0;
        set_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &now,
            CondStyle::Job,
            false,
        );
    } else {
        if condition_true(job, "Suspended") {
            set_condition(
                &mut conds,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                &now,
                CondStyle::Job,
                false,
            );
        }
        if let Some(d) = deadline {
            ctx.wake_at(d);
        }
        active_after = create_missing(
            ctx,
            job,
            &active,
            &completed_indexes,
            names,
            parallelism,
            completions,
            succeeded,
            indexed,
        );
    }

    set_count(&mut status, "active", active_after);
    set_count(&mut status, "succeeded", succeeded);
    set_count(&mut status, "failed", failed);
    set(&mut status, &["ready"], json!(ready));
    set(&mut status, &["terminating"], json!(0));
    set(&mut status, &["uncountedTerminatedPods"], json!({}));
    if indexed && !completed_indexes.is_empty() {
        set(
            &mut status,
            &["completedIndexes"],
            json!(format_indexes(&completed_indexes)),
        );
    }
    if !conds.is_empty() {
        set(&mut status, &["conditions"], Value::Array(conds));
    }
    if job.get("status") != Some(&status)
        && ctx.write_status(&ResourceRef::jobs(), job, status).is_ok()
    {
        if let Some((type_, reason, message)) = finished_event {
            events::record(ctx, &with_kind(job), type_, reason, message, COMPONENT);
        }
        if let (Some(ttl), true) = (
            i64_at(job, &["spec", "ttlSecondsAfterFinished"]),
            finished_event.is_some(),
        ) {
            ctx.wake_at(add_secs(ctx.now, ttl.max(0) as f64));
        }
    }
}

fn set_count(status: &mut Value, key: &str, n: i64) {
    if n > 0 {
        set(status, &[key], json!(n));
    } else if let Some(m) = status.as_object_mut() {
        m.remove(key);
    }
}

/// Creates pods up to parallelism (and the remaining completions); returns the active count.
#[allow(clippy::too_many_arguments)]
fn create_missing(
    ctx: &Ctx<'_>,
    job: &Value,
    active: &[&Value],
    completed: &BTreeSet<i64>,
    names: &mut HashSet<String>,
    parallelism: i64,
    completions: Option<i64>,
    succeeded: i64,
    indexed: bool,
) -> i64 {
    let empty = json!({});
    let template = at(job, &["spec", "template"]).unwrap_or(&empty);
    let mut extra = Map::new();
    for k in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
        extra.insert(k.into(), json!(uid(job)));
    }
    for k in ["batch.kubernetes.io/job-name", "job-name"] {
        extra.insert(k.into(), json!(name(job)));
    }
    let mut count = active.len() as i64;
    let job_obj = with_kind(job);
    let created = |tmpl: &Value,
                   prefix: &str,
                   extra: &Map<String, Value>,
                   names: &mut HashSet<String>|
     -> bool {
        match create_pod_from_template(ctx, job, "batch/v1", "Job", prefix, tmpl, extra, names) {
            Ok(p) => {
                events::record(
                    ctx,
                    &job_obj,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", name(&p)),
                    COMPONENT,
                );
                true
            }
            Err(e) => {
                events::record(
                    ctx,
                    &job_obj,
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating: {e}"),
                    COMPONENT,
                );
                false
            }
        }
    };
    if indexed {
        let Some(c) = completions else { return count };
        let running: HashSet<i64> = active.iter().filter_map(|p| pod_index(p)).collect();
        for idx in 0..c {
            if count >= parallelism {
                break;
            }
            if completed.contains(&idx) || running.contains(&idx) {
                continue;
            }
            let mut t = template.clone();
            set(
                &mut t,
                &["metadata", "labels", INDEX_LABEL],
                json!(idx.to_string()),
            );
            set(
                &mut t,
                &["metadata", "annotations", INDEX_LABEL],
                json!(idx.to_string()),
            );
            set(
                &mut t,
                &["spec", "hostname"],
                json!(format!("{}-{idx}", name(job))),
            );
            if let Some(cs) = t
                .pointer_mut("/spec/containers")
                .and_then(Value::as_array_mut)
            {
                for c in cs {
                    let env = c
                        .as_object_mut()
                        .map(|m| m.entry("env").or_insert_with(|| json!([])));
                    if let Some(Value::Array(env)) = env {
                        env.push(json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.labels['{INDEX_LABEL}']")}}}));
                    }
                }
            }
            if created(&t, &format!("{}-{idx}-", name(job)), &extra, names) {
                count += 1;
            } else {
                break;
            }
        }
        return count;
    }
    let want = match completions {
        Some(c) => parallelism.min((c - succeeded).max(0)),
        None if succeeded > 0 => 0,
        None => parallelism,
    };
    while count < want {
        if !created(template, &format!("{}-", name(job)), &extra, names) {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::Harness;
    use crate::dataplane::{ANN_EXIT_CODE, ANN_RESTART_BACKOFF, ANN_RUN_SECONDS, ClusterApi};

    fn job(name: &str, annotations: Value, spec: Value) -> Value {
        let mut j = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "train", "image": "trainer:1"}]}
            }}
        });
        crate::dataplane::util::merge(&mut j, &json!({"spec": spec}));
        j
    }

    fn get(h: &Harness, n: &str) -> Value {
        h.api.must_get(&ResourceRef::jobs(), "default", n)
    }

    fn cond<'a>(j: &'a Value, t: &str) -> &'a Value {
        condition(j, t).unwrap_or(&Value::Null)
    }

    #[test]
    fn job_runs_and_completes() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::jobs(),
                job("train", json!({ANN_RUN_SECONDS: "2"}), json!({})),
            )
            .unwrap();
        h.run(0.5);
        let j = get(&h, "train");
        assert_eq!(j["status"]["active"], 1);
        assert_eq!(j["status"]["ready"], 1);
        assert!(j["status"]["startTime"].is_string());
        let pods = h.pods("default");
        assert_eq!(pods.len(), 1);
        let l = &pods[0]["metadata"]["labels"];
        assert_eq!(l["batch.kubernetes.io/job-name"], "train");
        assert_eq!(
            l["batch.kubernetes.io/controller-uid"],
            j["metadata"]["uid"]
        );
        assert_eq!(pods[0]["metadata"]["ownerReferences"][0]["kind"], "Job");
        h.run(2.0);
        let j = get(&h, "train");
        assert_eq!(j["status"]["succeeded"], 1);
        assert!(j["status"].get("active").is_none());
        assert_eq!(cond(&j, "SuccessCriteriaMet")["status"], "True");
        assert_eq!(cond(&j, "Complete")["status"], "True");
        assert_eq!(cond(&j, "Complete")["reason"], "CompletionsReached");
        assert!(j["status"]["completionTime"].is_string());
        assert!(h.events().iter().any(|e| e["reason"] == "Completed"));
        let w = h.api.writes();
        h.run(1.0);
        assert_eq!(h.api.writes(), w, "finished job must not write");
    }

    #[test]
    fn failing_job_retries_until_backoff_limit() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::jobs(),
                job(
                    "bad",
                    json!({ANN_EXIT_CODE: "2"}),
                    json!({"backoffLimit": 2}),
                ),
            )
            .unwrap();
        h.run(6.0);
        let j = get(&h, "bad");
        assert_eq!(j["status"]["failed"], 3);
        assert_eq!(cond(&j, "FailureTarget")["reason"], "BackoffLimitExceeded");
        assert_eq!(cond(&j, "Failed")["status"], "True");
        assert_eq!(cond(&j, "Failed")["reason"], "BackoffLimitExceeded");
        assert_eq!(
            cond(&j, "Failed")["message"],
            "Job has reached the specified backoff limit"
        );
        assert!(cond(&j, "Complete").is_null());
        assert_eq!(h.pods("default").len(), 3, "failed pods are kept");
        assert!(
            h.events()
                .iter()
                .any(|e| e["reason"] == "BackoffLimitExceeded" && e["type"] == "Warning")
        );
    }

    #[test]
    fn on_failure_restarts_count_toward_backoff_limit() {
        let mut h = Harness::new("cpu=1");
        let mut j = job(
            "of",
            json!({ANN_EXIT_CODE: "1", ANN_RUN_SECONDS: "0.5", ANN_RESTART_BACKOFF: "0.2"}),
            json!({"backoffLimit": 2}),
        );
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        h.api.create(&ResourceRef::jobs(), j).unwrap();
        h.run(3.0);
        let j = get(&h, "of");
        assert_eq!(cond(&j, "Failed")["reason"], "BackoffLimitExceeded");
        assert!(
            h.pods("default").is_empty(),
            "the restarting pod is deleted"
        );
    }

    #[test]
    fn active_deadline_kills_pods() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::jobs(),
                job(
                    "slow",
                    json!({ANN_RUN_SECONDS: "100"}),
                    json!({"activeDeadlineSeconds": 2}),
                ),
            )
            .unwrap();
        h.run(1.0);
        assert_eq!(h.pods("default").len(), 1);
        h.run(2.0);
        let j = get(&h, "slow");
        assert_eq!(cond(&j, "Failed")["reason"], "DeadlineExceeded");
        assert_eq!(
            cond(&j, "Failed")["message"],
            "Job was active longer than specified deadline"
        );
        assert!(h.pods("default").is_empty());
    }

    #[test]
    fn parallel_completions_and_ttl() {
        let mut h = Harness::new("cpu=2");
        h.api
            .create(
                &ResourceRef::jobs(),
                job(
                    "par",
                    json!({}),
                    json!({"completions": 5, "parallelism": 2, "ttlSecondsAfterFinished": 3}),
                ),
            )
            .unwrap();
        h.run(0.3);
        assert_eq!(get(&h, "par")["status"]["active"], 2);
        h.run(4.0);
        let j = get(&h, "par");
        assert_eq!(j["status"]["succeeded"], 5);
        assert_eq!(cond(&j, "Complete")["status"], "True");
        assert_eq!(h.pods("default").len(), 5);
        h.run(3.5);
        assert!(
            h.api
                .get(&ResourceRef::jobs(), Some("default"), "par")
                .is_none()
        );
        assert!(h.pods("default").is_empty());
    }

    #[test]
    fn indexed_job_tracks_completed_indexes() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::jobs(),
                job(
                    "idx",
                    json!({}),
                    json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
                ),
            )
            .unwrap();
        h.tick();
        let mut idx: Vec<String> = h
            .pods("default")
            .iter()
            .map(|p| {
                p["metadata"]["labels"][INDEX_LABEL]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        idx.sort();
        assert_eq!(idx, ["0", "1", "2"]);
        h.run(2.0);
        let j = get(&h, "idx");
        assert_eq!(j["status"]["completedIndexes"], "0-2");
        assert_eq!(cond(&j, "Complete")["status"], "True");
    }

    #[test]
    fn suspend_deletes_pods_and_resume_recreates() {
        let mut h = Harness::new("cpu=1");
        h.api
            .create(
                &ResourceRef::jobs(),
                job("s", json!({ANN_RUN_SECONDS: "100"}), json!({})),
            )
            .unwrap();
        h.run(0.3);
        let mut j = get(&h, "s");
        j["spec"]["suspend"] = json!(true);
        h.api.update(&ResourceRef::jobs(), j).unwrap();
        h.run(0.3);
        assert!(h.pods("default").is_empty());
        assert_eq!(cond(&get(&h, "s"), "Suspended")["status"], "True");
        let mut j = get(&h, "s");
        j["spec"]["suspend"] = json!(false);
        h.api.update(&ResourceRef::jobs(), j).unwrap();
        h.run(0.3);
        assert_eq!(h.pods("default").len(), 1);
        assert_eq!(cond(&get(&h, "s"), "Suspended")["reason"], "JobResumed");
    }

    #[test]
    fn pods_match_the_job_selector_even_if_the_store_replaced_the_uid() {
        let mut h = Harness::new("cpu=1");
        let created = h
            .api
            .create(&ResourceRef::jobs(), job("sel", json!({}), json!({})))
            .unwrap();
        // Simulate a store that assigned a different uid after defaulting.
        let mut j = created.clone();
        j["metadata"]["uid"] = json!("store-uid");
        h.api
            .delete(&ResourceRef::jobs(), Some("default"), "sel")
            .unwrap();
        let j = h.api.create(&ResourceRef::jobs(), j).unwrap();
        assert_eq!(j["metadata"]["uid"], "store-uid");
        h.tick();
        let pods = h.pods("default");
        assert_eq!(pods.len(), 1);
        let sel = crate::selector::LabelSelector::from_object(&j["spec"]["selector"]).unwrap();
        assert!(sel.matches(&crate::dataplane::util::labels(&pods[0])));
        assert_eq!(
            pods[0]["metadata"]["ownerReferences"][0]["uid"],
            "store-uid"
        );
    }

    #[test]
    fn formats_index_ranges() {
        let s: BTreeSet<i64> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&s), "0-2,4,6-7");
    }
}
