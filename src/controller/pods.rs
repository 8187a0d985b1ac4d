//! What an agent's pods say about its container, for the node's `AgentReady` condition. A container
//! that crash-loops is reported with one stable message, also in the seconds it runs between two
//! back-offs, until it has run for [`STEADY`]: a crash loop costs no status write or Event per
//! restart.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ContainerStatus;
use k8s_openapi::jiff::Timestamp;

use super::cached::Pod;

/// How long a restarted container must run after a failed exit before it counts as recovered.
pub const STEADY: Duration = Duration::from_secs(120);

/// Waiting reasons that mean the container cannot run as it is.
const STUCK: [&str; 4] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// The problem of the first failing container of `pods`, if any, and when to look again because a
/// restarted container will count as recovered then (no pod event marks that moment).
pub fn agent_problem(pods: &[Arc<Pod>], now: Timestamp) -> (Option<String>, Option<Duration>) {
    for pod in pods {
        for (message, steady_at) in pod_problems(pod) {
            match steady_at {
                None => return (Some(message), None),
                // Running again after a failed exit: still crash-looping until it has run for
                // STEADY.
                Some(at) if at > now => {
                    let wait = at
                        .duration_since(now)
                        .try_into()
                        .unwrap_or(STEADY)
                        .max(Duration::from_secs(1));
                    return (Some(message), Some(wait));
                }
                Some(_) => {}
            }
        }
    }
    (None, None)
}

/// What each container of `pod` says, in order, whatever the time: a problem, or one that holds
/// until the given moment (a container running again after a failed exit). [`agent_problem`] is a
/// function of these and the time only, so a pod event that leaves them unchanged changes nothing
/// the node's reconcile decides (the index triggers the node only when they change).
pub fn pod_problems(pod: &Pod) -> Vec<(String, Option<Timestamp>)> {
    let mut out = Vec::new();
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    for cs in statuses.into_iter().flatten() {
        let state = cs.state.as_ref();
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if reason == "CrashLoopBackOff" {
                out.push((crash_message(cs), None));
                continue;
            }
            if STUCK.contains(&reason) {
                let message = waiting.message.as_deref().unwrap_or_default();
                out.push((format!("{reason}: {message}"), None));
                continue;
            }
        }
        if state
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
            && cs.restart_count > 0
        {
            out.push((crash_message(cs), None));
            continue;
        }
        let Some(started) = state
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
        else {
            continue;
        };
        let failed_before = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0);
        if failed_before {
            out.push((crash_message(cs), Some(started.0 + STEADY)));
        }
    }
    out
}

/// One message for a crash-looping container whatever moment of the loop it is seen in (waiting in
/// back-off, just exited, or running between two exits): the restart count and the back-off, which
/// change with every restart, stay out of it.
fn crash_message(cs: &ContainerStatus) -> String {
    let last = cs
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
    match last {
        Some(t) => format!(
            "CrashLoopBackOff: container {} keeps exiting with code {}{}",
            cs.name,
            t.exit_code,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        None => format!("CrashLoopBackOff: container {} keeps exiting", cs.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(statuses: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"containerStatuses": statuses}
            }))
            .expect("pod parses"),
        )
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    const EXITED: &str = "2026-01-01T00:00:10Z";

    #[test]
    fn a_crash_loop_reads_the_same_in_every_state() {
        let now = at(1_767_225_615); // 2026-01-01T00:00:15Z
        let waiting = pod(json!([{
            "name": "agent", "image": "i", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container=agent pod=p_ns(u)"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": EXITED}}
        }]));
        let running = pod(json!([{
            "name": "agent", "image": "i", "ready": true, "restartCount": 4,
            "state": {"running": {"startedAt": "2026-01-01T00:00:12Z"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": EXITED}}
        }]));
        let exited = pod(json!([{
            "name": "agent", "image": "i", "ready": false, "restartCount": 4,
            "state": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": EXITED}}
        }]));
        let (a, _) = agent_problem(&[waiting], now);
        let (b, recheck) = agent_problem(&[running], now);
        let (c, _) = agent_problem(&[exited], now);
        let expected = "CrashLoopBackOff: container agent keeps exiting with code 1 (Error)";
        assert_eq!(a.as_deref(), Some(expected));
        assert_eq!(b.as_deref(), Some(expected));
        assert_eq!(c.as_deref(), Some(expected));
        // It counts as recovered 120 s after its last start (12 s), looked at again then.
        assert_eq!(recheck, Some(Duration::from_secs(117)));
    }

    #[test]
    fn a_container_running_steadily_is_fine() {
        let running = pod(json!([{
            "name": "agent", "image": "i", "ready": true, "restartCount": 4,
            "state": {"running": {"startedAt": "2026-01-01T00:00:12Z"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": EXITED}}
        }]));
        let later = at(1_767_225_612 + 120);
        assert_eq!(agent_problem(&[running], later), (None, None));
        // A clean earlier exit (exit code 0) was no crash.
        let clean = pod(json!([{
            "name": "agent", "image": "i", "ready": true, "restartCount": 1,
            "state": {"running": {"startedAt": "2026-01-01T00:00:12Z"}},
            "lastState": {"terminated": {"exitCode": 0, "finishedAt": EXITED}}
        }]));
        assert_eq!(agent_problem(&[clean], at(1_767_225_615)), (None, None));
    }

    #[test]
    fn a_container_that_cannot_start_says_why() {
        let stuck = pod(json!([{
            "name": "agent", "image": "i", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"k\" not found"}}
        }]));
        let (p, recheck) = agent_problem(&[stuck], at(0));
        assert_eq!(
            p.as_deref(),
            Some("CreateContainerConfigError: secret \"k\" not found")
        );
        assert_eq!(recheck, None);
        let creating = pod(json!([{
            "name": "agent", "image": "i", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}
        }]));
        assert_eq!(agent_problem(&[creating], at(0)), (None, None));
    }
}
