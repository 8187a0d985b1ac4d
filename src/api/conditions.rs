//! metav1-style conditions: computing a new condition list from the old one so that
//! `lastTransitionTime` moves only on a real status transition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Insert or replace the condition of `new.type_`. `lastTransitionTime` is carried over from the old
/// condition of that type when its status did not change. Returns true when anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            let changed = *old != new;
            *old = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Build a condition stamped `now` for the given generation.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// The condition of the given type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut list = Vec::new();
        assert!(set_condition(
            &mut list,
            condition("Ready", false, "Provisioning", "waiting", Some(1), at(10))
        ));
        // Same status, new message: time stays.
        assert!(set_condition(
            &mut list,
            condition(
                "Ready",
                false,
                "Provisioning",
                "still waiting",
                Some(1),
                at(20)
            )
        ));
        assert_eq!(list[0].last_transition_time, at(10));
        assert_eq!(list[0].message, "still waiting");
        // Identical: no change reported.
        assert!(!set_condition(
            &mut list,
            condition(
                "Ready",
                false,
                "Provisioning",
                "still waiting",
                Some(1),
                at(30)
            )
        ));
        // Real transition: time moves.
        assert!(set_condition(
            &mut list,
            condition("Ready", true, "Available", "ok", Some(1), at(40))
        ));
        assert_eq!(list[0].last_transition_time, at(40));
        assert_eq!(list.len(), 1);
        assert_eq!(
            find(&list, "Ready").map(|c| c.status.as_str()),
            Some("True")
        );
    }
}
