//! When the bench saw each AgentNode reach each step (seconds since the bench started), and the
//! latency summaries (p50 / p90 / max) computed from them.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// A step of a node's life as the bench sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The bench's create request returned.
    Created,
    /// A watch event first showed `status.phase: Running`.
    Running,
    /// The agent's status patch (objective met) returned.
    Reported,
    /// A watch event first showed `status.phase: Succeeded`.
    Succeeded,
    /// A watch event showed the node deleted.
    Gone,
}

#[derive(Clone, Copy, Debug, Default)]
struct Times {
    created: Option<f64>,
    running: Option<f64>,
    reported: Option<f64>,
    succeeded: Option<f64>,
    gone: Option<f64>,
}

impl Times {
    fn slot(&mut self, step: Step) -> &mut Option<f64> {
        match step {
            Step::Created => &mut self.created,
            Step::Running => &mut self.running,
            Step::Reported => &mut self.reported,
            Step::Succeeded => &mut self.succeeded,
            Step::Gone => &mut self.gone,
        }
    }

    fn get(&self, step: Step) -> Option<f64> {
        match step {
            Step::Created => self.created,
            Step::Running => self.running,
            Step::Reported => self.reported,
            Step::Succeeded => self.succeeded,
            Step::Gone => self.gone,
        }
    }
}

/// Per-node times, first sighting of each step wins, and each live node's last seen phase.
#[derive(Debug, Default)]
pub struct Timeline {
    nodes: HashMap<String, Times>,
    phases: HashMap<String, String>,
}

impl Timeline {
    /// The node's phase as last seen; `None` once it is gone.
    pub fn set_phase(&mut self, node: &str, phase: Option<&str>) {
        match phase {
            Some(p) => {
                self.phases.insert(node.to_string(), p.to_string());
            }
            None => {
                self.phases.remove(node);
            }
        }
    }

    /// How many live nodes are in each phase.
    pub fn phases(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for p in self.phases.values() {
            *out.entry(p.clone()).or_default() += 1;
        }
        out
    }

    /// Records `step` for `node` at `at` unless it was already seen.
    pub fn mark(&mut self, node: &str, step: Step, at: f64) {
        let slot = match self.nodes.get_mut(node) {
            Some(t) => t.slot(step),
            None => self.nodes.entry(node.to_string()).or_default().slot(step),
        };
        if slot.is_none() {
            *slot = Some(at);
        }
    }

    /// How many nodes reached `step`.
    pub fn count(&self, step: Step) -> usize {
        self.nodes
            .values()
            .filter(|t| t.get(step).is_some())
            .count()
    }

    /// Seconds from `from` to `to` for every node that saw both.
    pub fn latencies(&self, from: Step, to: Step) -> Vec<f64> {
        self.nodes
            .values()
            .filter_map(|t| Some(t.get(to)? - t.get(from)?))
            .collect()
    }

    /// The latest time any node reached `step`.
    pub fn last(&self, step: Step) -> Option<f64> {
        self.nodes
            .values()
            .filter_map(|t| t.get(step))
            .max_by(f64::total_cmp)
    }
}

/// Count, p50, p90 and max of a set of durations in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

impl Summary {
    /// Nearest-rank percentiles; `None` for no samples.
    pub fn of(mut samples: Vec<f64>) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = (p * samples.len() as f64).ceil() as usize;
            samples[i.clamp(1, samples.len()) - 1]
        };
        Some(Summary {
            count: samples.len(),
            p50: rank(0.5),
            p90: rank(0.9),
            max: samples[samples.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sighting_wins_and_latencies_need_both_steps() {
        let mut t = Timeline::default();
        t.mark("a", Step::Created, 1.0);
        t.mark("a", Step::Running, 4.0);
        t.mark("a", Step::Running, 9.0);
        t.mark("b", Step::Created, 2.0);
        t.mark("c", Step::Running, 3.0);
        assert_eq!(t.count(Step::Created), 2);
        assert_eq!(t.count(Step::Running), 2);
        assert_eq!(t.latencies(Step::Created, Step::Running), vec![3.0]);
        assert_eq!(t.last(Step::Running), Some(4.0));
        assert_eq!(t.last(Step::Gone), None);
        t.set_phase("a", Some("Running"));
        t.set_phase("b", Some("Provisioning"));
        t.set_phase("c", Some("Running"));
        t.set_phase("c", None);
        assert_eq!(
            t.phases(),
            BTreeMap::from([("Provisioning".into(), 1), ("Running".into(), 1)])
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of((1..=10).rev().map(f64::from).collect()).expect("samples");
        assert_eq!((s.count, s.p50, s.p90, s.max), (10, 5.0, 9.0, 10.0));
        let one = Summary::of(vec![2.5]).expect("one sample");
        assert_eq!((one.p50, one.p90, one.max), (2.5, 2.5, 2.5));
        assert_eq!(Summary::of(Vec::new()), None);
    }
}
