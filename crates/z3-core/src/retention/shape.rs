//! [`shape`]: a backup plan's bases, decided by the policy's tree ([`choose_base`]) or, without
//! a policy, by the rebase rule ([`linear_base`]).
//!
//! [`plan_backup`](crate::plan_backup) decides *which* snapshots to upload (everything after the
//! newest one backed up) and what each upload does to its key; this decides what each is sent
//! as. A base must exist on this host (`zfs send -i` reads it) with the guid its object records;
//! a base the policy wants that is gone here makes the step a full, never an incremental on
//! something else. A step whose time is unknown keeps the plan's own base (the previous
//! snapshot), as before policies existed.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::names::FullSnapshotName;
use crate::plan::{BackupPlan, StepKind};
use crate::remote::RemoteIndex;
use crate::retention::calendar::{Calendar, Timeframe};
use crate::retention::linear::{ChainTip, RebaseRule, linear_base};
use crate::retention::policy::Policy;
use crate::retention::tree::{Backup, Base, choose_base};
use crate::snapshot::LocalChain;

/// What shapes the bases of a backup plan.
#[derive(Debug, Clone, Copy)]
pub enum Shaping<'a> {
    /// A policy's tree.
    Tree {
        /// The policy.
        policy: &'a Policy,
        /// Its time zone and week start.
        calendar: &'a Calendar,
    },
    /// One chain, restarted by the rule.
    Linear(RebaseRule),
}

/// What [`shape`] needs to know.
#[derive(Debug, Clone, Copy)]
pub struct ShapeInput<'a> {
    /// Tree or linear.
    pub shaping: Shaping<'a>,
    /// The bucket's objects of the dataset.
    pub remote: &'a RemoteIndex,
    /// The local snapshots that take part.
    pub local: &'a LocalChain,
    /// A snapshot's time by its full name (`ds@snap`), if known: from its name format, its
    /// `creation`, or an object's `created` metadata.
    pub times: &'a HashMap<String, Timestamp>,
    /// `--full`: the plan is one full step, as asked; it is left alone.
    pub full_requested: bool,
}

/// Why one step is sent the way it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReason {
    /// The step's snapshot.
    pub snapshot: FullSnapshotName,
    /// The decision, in words.
    pub reason: String,
    /// The snapshot's time, when known.
    pub time: Option<Timestamp>,
    /// With a policy: the longest timeframe whose interval the backup is the first of (`None`:
    /// a plain leaf, or no policy). What its storage class and Object Lock retention follow.
    pub represents: Option<Timeframe>,
}

/// Rewrites the bases of `plan`'s steps, oldest first, each seeing the ones before it as
/// backed up. A `--full` plan stays as it is (its steps still learn what they represent).
/// Returns the reason of every step.
#[must_use]
pub fn shape(mut plan: BackupPlan, input: &ShapeInput<'_>) -> (BackupPlan, Vec<StepReason>) {
    // The backups a new one may build on: healthy objects whose snapshot is on this host with
    // the same guid, then the plan's own steps as they are decided.
    let mut backups: Vec<Candidate> = input
        .remote
        .iter()
        .filter(|o| input.remote.health(&o.name).is_some_and(|h| h.is_healthy()))
        .map(|o| Candidate {
            name: o.name.clone(),
            parent: if o.meta.is_full {
                None
            } else {
                o.meta.parent.clone()
            },
            time: input.times.get(&o.name).copied(),
            here: input
                .local
                .find(&o.name)
                .is_some_and(|entry| o.meta.guid.is_none_or(|guid| guid == entry.snapshot.guid)),
        })
        .collect();
    let mut index: HashMap<String, usize> = backups
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.clone(), i))
        .collect();
    let mut reasons = Vec::with_capacity(plan.steps.len());
    for step in &mut plan.steps {
        let name = step.snapshot.to_string();
        let time = input.times.get(&name).copied();
        let (kind, reason, represents) = match (step.kind.clone(), time) {
            (kind, None) => (
                kind,
                "time unknown: on the previous snapshot, as without a policy".to_owned(),
                None,
            ),
            (kind, Some(time)) => decide(&input.shaping, &backups, &index, &name, time, &kind),
        };
        // A `--full` plan stays as it is; the policy still says what the backup represents.
        let (kind, reason) = if input.full_requested {
            (StepKind::Full, "full, as asked".to_owned())
        } else {
            (kind, reason)
        };
        step.kind = kind;
        index.insert(name.clone(), backups.len());
        backups.push(Candidate {
            name: name.clone(),
            parent: step.parent().map(ToString::to_string),
            time,
            here: true,
        });
        reasons.push(StepReason {
            snapshot: step.snapshot.clone(),
            reason,
            time,
            represents,
        });
    }
    (plan, reasons)
}

/// A backup a step may build on.
#[derive(Debug, Clone)]
struct Candidate {
    name: String,
    parent: Option<String>,
    time: Option<Timestamp>,
    /// Its snapshot is on this host (same guid).
    here: bool,
}

fn decide(
    shaping: &Shaping<'_>,
    backups: &[Candidate],
    index: &HashMap<String, usize>,
    name: &str,
    time: Timestamp,
    planned: &StepKind,
) -> (StepKind, String, Option<Timeframe>) {
    let mut represents = None;
    let base = match shaping {
        Shaping::Tree { policy, calendar } => {
            let timed: Vec<Backup> = backups
                .iter()
                .filter_map(|b| {
                    Some(Backup {
                        name: b.name.clone(),
                        time: b.time?,
                        parent: b.parent.clone(),
                    })
                })
                .collect();
            let decision = choose_base(policy, &timed, name, time, calendar);
            represents = decision.represents;
            (decision.base, decision.reason)
        }
        Shaping::Linear(rule) => {
            let Some(parent) = planned_parent(planned) else {
                return (
                    StepKind::Full,
                    "no backup to build on: full".to_owned(),
                    None,
                );
            };
            let (links, full) = chain(backups, index, &parent);
            let full_time = full.and_then(|full| full.time);
            let tip = ChainTip {
                name: &parent,
                links,
                full_time,
            };
            let decision = linear_base(rule, Some(&tip), time);
            (decision.base, decision.reason)
        }
    };
    let (kind, reason) = match base {
        (Base::Full, reason) => (StepKind::Full, reason),
        (Base::Incremental { parent }, reason) => {
            let usable = index.get(&parent).is_some_and(|&i| backups[i].here);
            match FullSnapshotName::parse(&parent) {
                Ok(parent) if usable => (StepKind::Incremental { parent }, reason),
                _ => (
                    StepKind::Full,
                    format!("{reason}; but {parent} is not on this host: full"),
                ),
            }
        }
    };
    (kind, reason, represents)
}

fn planned_parent(kind: &StepKind) -> Option<String> {
    match kind {
        StepKind::Full => None,
        StepKind::Incremental { parent } => Some(parent.to_string()),
    }
}

/// How many objects a restore of `name` receives, following parents among `backups` (a base
/// outside them, e.g. pruned, ends the walk), and the full the chain starts with, if listed.
fn chain<'a>(
    backups: &'a [Candidate],
    index: &HashMap<String, usize>,
    name: &str,
) -> (usize, Option<&'a Candidate>) {
    let mut count = 1;
    let Some(mut current) = index.get(name).map(|&i| &backups[i]) else {
        return (count, None);
    };
    loop {
        let Some(parent) = &current.parent else {
            return (count, Some(current));
        };
        let Some(&next) = index.get(parent) else {
            return (count, None);
        };
        count += 1;
        if count > backups.len() {
            // A loop: no full to find, and the chain is as long as it can get.
            return (count, None);
        }
        current = &backups[next];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::DatasetName;
    use crate::plan::{BackupRequest, plan_backup};
    use crate::remote::{ObjectMeta, RemoteSnapshot};
    use crate::snapshot::LocalSnapshot;

    fn at(date: &str) -> Timestamp {
        format!("{date}T12:00:00Z").parse().unwrap()
    }

    /// Local snapshots `pool/fs@<date>` (guid = position + 1) and their times.
    fn local(dates: &[&str]) -> (Vec<LocalSnapshot>, HashMap<String, Timestamp>) {
        let snapshots: Vec<LocalSnapshot> = dates
            .iter()
            .zip(1..)
            .map(|(date, n)| LocalSnapshot {
                name: FullSnapshotName::parse(&format!("pool/fs@{date}")).unwrap(),
                guid: n,
                createtxg: n,
                creation: Some(at(date).as_second()),
            })
            .collect();
        let times = dates
            .iter()
            .map(|d| (format!("pool/fs@{d}"), at(d)))
            .collect();
        (snapshots, times)
    }

    fn object(date: &str, parent: Option<&str>, guid: u64) -> RemoteSnapshot {
        RemoteSnapshot {
            key: format!("z3/pool/fs@{date}"),
            name: format!("pool/fs@{date}"),
            object_size: 1,
            meta: ObjectMeta {
                is_full: parent.is_none(),
                parent: parent.map(|p| format!("pool/fs@{p}")),
                guid: Some(guid),
                ..ObjectMeta::default()
            },
            etag: None,
        }
    }

    /// `date <- parent` for each step, or `date full`.
    fn shaped(
        shaping: Shaping<'_>,
        snapshots: &[LocalSnapshot],
        times: &HashMap<String, Timestamp>,
        remote: &RemoteIndex,
    ) -> Vec<String> {
        shaped_with(shaping, snapshots, times, remote, false)
            .into_iter()
            .map(|(step, _)| step)
            .collect()
    }

    /// As [`shaped`], with what each step represents, and `--full` as asked.
    fn shaped_with(
        shaping: Shaping<'_>,
        snapshots: &[LocalSnapshot],
        times: &HashMap<String, Timestamp>,
        remote: &RemoteIndex,
        full: bool,
    ) -> Vec<(String, Option<Timeframe>)> {
        let dataset = DatasetName::new("pool/fs").unwrap();
        let chain = LocalChain::new(snapshots, "");
        let plan = plan_backup(&BackupRequest {
            dataset: &dataset,
            snapshot_prefix: "",
            local: &chain,
            remote,
            target: None,
            full,
            overwrite_other: false,
        })
        .unwrap();
        let (plan, reasons) = shape(
            plan,
            &ShapeInput {
                shaping,
                remote,
                local: &chain,
                times,
                full_requested: full,
            },
        );
        assert_eq!(reasons.len(), plan.steps.len());
        plan.steps
            .iter()
            .zip(&reasons)
            .map(|(s, reason)| {
                assert_eq!(reason.snapshot, s.snapshot);
                assert_eq!(reason.time, times.get(&s.snapshot.to_string()).copied());
                let step = match s.parent() {
                    Some(p) => format!("{} <- {}", s.snapshot.snapshot(), p.snapshot()),
                    None => format!("{} full", s.snapshot.snapshot()),
                };
                (step, reason.represents)
            })
            .collect()
    }

    #[test]
    fn each_step_learns_the_timeframe_it_represents_even_as_a_requested_full() {
        let policy = Policy::parse("1y 1m 2d").unwrap();
        let calendar = Calendar::default();
        let (snapshots, times) = local(&["2026-01-01", "2026-01-02", "2026-02-01", "2026-02-02"]);
        let tree = Shaping::Tree {
            policy: &policy,
            calendar: &calendar,
        };
        let empty = RemoteIndex::new(Vec::new());
        let represents: Vec<Option<Timeframe>> =
            shaped_with(tree, &snapshots, &times, &empty, false)
                .into_iter()
                .map(|(_, r)| r)
                .collect();
        assert_eq!(
            represents,
            [
                Some(Timeframe::Yearly),
                Some(Timeframe::Daily),
                Some(Timeframe::Monthly),
                Some(Timeframe::Daily),
            ]
        );
        // `--full` of the newest, with the others backed up: still the first of its day.
        let remote = RemoteIndex::new(vec![
            object("2026-01-01", None, 1),
            object("2026-01-02", Some("2026-01-01"), 2),
            object("2026-02-01", Some("2026-01-01"), 3),
        ]);
        assert_eq!(
            shaped_with(tree, &snapshots, &times, &remote, true),
            [("2026-02-02 full".to_owned(), Some(Timeframe::Daily))]
        );
        // Without a policy nothing represents anything.
        let linear = Shaping::Linear(RebaseRule::default());
        assert!(
            shaped_with(linear, &snapshots, &times, &empty, false)
                .iter()
                .all(|(_, r)| r.is_none())
        );
    }

    #[test]
    fn a_policy_shapes_a_first_backup_run_into_its_tree() {
        let policy = Policy::parse("1y 1m 2d").unwrap();
        let calendar = Calendar::default();
        let (snapshots, times) = local(&["2026-01-01", "2026-01-02", "2026-02-01", "2026-02-02"]);
        let tree = Shaping::Tree {
            policy: &policy,
            calendar: &calendar,
        };
        assert_eq!(
            shaped(tree, &snapshots, &times, &RemoteIndex::new(Vec::new())),
            [
                "2026-01-01 full",
                "2026-01-02 <- 2026-01-01",
                "2026-02-01 <- 2026-01-01",
                "2026-02-02 <- 2026-02-01",
            ]
        );
    }

    #[test]
    fn without_a_policy_chains_restart_after_max_chain_links() {
        let rule = RebaseRule {
            max_chain: std::num::NonZeroUsize::new(3),
            full_every: None,
        };
        let dates = [
            "2026-01-01",
            "2026-01-02",
            "2026-01-03",
            "2026-01-04",
            "2026-01-05",
        ];
        let (snapshots, times) = local(&dates);
        assert_eq!(
            shaped(
                Shaping::Linear(rule),
                &snapshots,
                &times,
                &RemoteIndex::new(Vec::new())
            ),
            [
                "2026-01-01 full",
                "2026-01-02 <- 2026-01-01",
                "2026-01-03 <- 2026-01-02",
                "2026-01-04 full",
                "2026-01-05 <- 2026-01-04",
            ]
        );
        // FULL_EVERY: a chain whose full is 3 days old restarts.
        let rule = RebaseRule {
            max_chain: None,
            full_every: Some(std::time::Duration::from_hours(72)),
        };
        assert_eq!(
            shaped(
                Shaping::Linear(rule),
                &snapshots,
                &times,
                &RemoteIndex::new(Vec::new())
            )[3],
            "2026-01-04 full"
        );
    }

    #[test]
    fn a_base_gone_from_this_host_makes_a_full_and_unknown_times_keep_the_plan() {
        let policy = Policy::parse("1y 1m 1d").unwrap();
        let calendar = Calendar::default();
        let tree = Shaping::Tree {
            policy: &policy,
            calendar: &calendar,
        };
        // The yearly full 2026-01-01 is backed up but destroyed here.
        let (snapshots, times) = local(&["2026-01-02", "2026-02-01"]);
        let remote = RemoteIndex::new(vec![
            object("2026-01-01", None, 100),
            object("2026-01-02", Some("2026-01-01"), 1),
        ]);
        let mut times = times;
        times.insert("pool/fs@2026-01-01".into(), at("2026-01-01"));
        assert_eq!(
            shaped(tree, &snapshots, &times, &remote),
            ["2026-02-01 full"],
            "the monthly would build on the yearly, which is not here"
        );
        // Without a time for the new snapshot, the plan's own base stays.
        let mut unknown = times.clone();
        unknown.remove("pool/fs@2026-02-01");
        assert_eq!(
            shaped(tree, &snapshots, &unknown, &remote),
            ["2026-02-01 <- 2026-01-02"]
        );
    }
}
