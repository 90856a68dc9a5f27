//! Replica placement for new partitions, as Kafka's `AdminUtils.assignReplicasToBrokers` does
//! it: partition leaders round-robin over the brokers from a start index; followers follow the
//! leader at a shift that grows each time the partitions wrap around the brokers, so replica
//! sets differ; when every broker has a rack, brokers are first arranged alternating racks and a
//! follower is skipped while its rack (or broker) already holds a replica and others do not.
//!
//! Pure: the start index and shift are inputs (Kafka draws them at random; the controller does
//! too), so the layout is testable.

use std::collections::{BTreeMap, BTreeSet};

use super::records::BrokerId;

/// Where replicas may go: the registered, unfenced brokers with their racks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub broker_id: BrokerId,
    pub rack: Option<String>,
}

/// Replicas (leader first) for partitions `first_partition..first_partition + count`.
/// `start` and `shift` are Kafka's random start index and replica shift.
pub fn assign(
    candidates: &[Candidate],
    count: u32,
    replication_factor: usize,
    first_partition: u32,
    start: usize,
    shift: usize,
) -> Result<Vec<Vec<BrokerId>>, String> {
    if replication_factor == 0 {
        return Err("replication factor must be at least 1".to_string());
    }
    if replication_factor > candidates.len() {
        // Kafka's wording, so tools and people recognise it.
        return Err(format!(
            "Unable to replicate the partition {replication_factor} time(s): The target \
             replication factor of {replication_factor} cannot be reached because only {} \
             broker(s) are registered.",
            candidates.len()
        ));
    }
    let every_broker_has_a_rack = candidates.iter().all(|c| c.rack.is_some());
    let brokers: Vec<(BrokerId, String)> = if every_broker_has_a_rack {
        rack_alternated(candidates)
    } else {
        // Without racks every broker is its own "rack", which makes the rack rule a no-op.
        let mut sorted: Vec<BrokerId> = candidates.iter().map(|c| c.broker_id).collect();
        sorted.sort_unstable();
        sorted.into_iter().map(|id| (id, id.to_string())).collect()
    };
    let count_brokers = brokers.len();
    let count_racks = brokers
        .iter()
        .map(|(_, rack)| rack)
        .collect::<BTreeSet<_>>()
        .len();
    let start = start % count_brokers;
    let mut shift = shift % count_brokers;
    let mut assignments = Vec::with_capacity(count as usize);
    for partition in first_partition..first_partition + count {
        let partition = partition as usize;
        if partition > 0 && partition.is_multiple_of(count_brokers) {
            shift += 1;
        }
        let first = (partition + start) % count_brokers;
        let (leader, leader_rack) = &brokers[first];
        let mut replicas = vec![*leader];
        let mut racks: BTreeSet<&str> = BTreeSet::from([leader_rack.as_str()]);
        let mut k = 0;
        while replicas.len() < replication_factor {
            let (broker, rack) =
                &brokers[follower_index(first, shift * count_racks, k, count_brokers)];
            k += 1;
            let rack_ok = !racks.contains(rack.as_str()) || racks.len() == count_racks;
            let broker_ok = !replicas.contains(broker);
            if rack_ok && broker_ok {
                replicas.push(*broker);
                racks.insert(rack);
            }
        }
        assignments.push(replicas);
    }
    Ok(assignments)
}

/// Kafka's `replicaIndex`: the k-th follower of the leader at `first`.
fn follower_index(first: usize, shift: usize, k: usize, count: usize) -> usize {
    let step = 1 + (shift + k) % (count - 1);
    (first + step) % count
}

/// Brokers ordered so consecutive ones are on different racks: one from each rack in rack
/// order, then the next from each, ... (Kafka's `getRackAlternatedBrokerList`).
fn rack_alternated(candidates: &[Candidate]) -> Vec<(BrokerId, String)> {
    let mut by_rack: BTreeMap<&str, Vec<BrokerId>> = BTreeMap::new();
    for candidate in candidates {
        by_rack
            .entry(candidate.rack.as_deref().unwrap_or_default())
            .or_default()
            .push(candidate.broker_id);
    }
    for brokers in by_rack.values_mut() {
        brokers.sort_unstable();
        brokers.reverse();
    }
    let mut arranged = Vec::with_capacity(candidates.len());
    while arranged.len() < candidates.len() {
        for (rack, brokers) in by_rack.iter_mut() {
            if let Some(broker) = brokers.pop() {
                arranged.push((broker, rack.to_string()));
            }
        }
    }
    arranged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(index, rack)| Candidate {
                broker_id: index as BrokerId + 1,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn leaders_round_robin_and_followers_shift_when_partitions_wrap() {
        let layout = assign(&brokers(&[None, None, None]), 6, 2, 0, 0, 0).expect("fits");
        assert_eq!(
            layout,
            vec![
                vec![1, 2],
                vec![2, 3],
                vec![3, 1],
                // Wrapped: the follower shift grows, so the pairs differ from the first round.
                vec![1, 3],
                vec![2, 1],
                vec![3, 2],
            ]
        );
    }

    #[test]
    fn replicas_of_a_partition_span_the_racks() {
        let candidates = brokers(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        let rack_of = |id: BrokerId| candidates[id as usize - 1].rack.clone();
        for start in 0..6 {
            for shift in 0..6 {
                let layout = assign(&candidates, 12, 3, 0, start, shift).expect("fits");
                for replicas in layout {
                    let racks: BTreeSet<_> = replicas.iter().map(|id| rack_of(*id)).collect();
                    assert_eq!(racks.len(), 3, "{replicas:?} start {start} shift {shift}");
                }
            }
        }
    }

    #[test]
    fn leaders_spread_evenly_and_replicas_are_distinct() {
        let layout = assign(&brokers(&[None; 5]), 10, 3, 0, 2, 4).expect("fits");
        let mut leaders = BTreeMap::new();
        for replicas in &layout {
            assert_eq!(
                replicas.iter().collect::<BTreeSet<_>>().len(),
                3,
                "{replicas:?}"
            );
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert!(leaders.values().all(|count| *count == 2), "{leaders:?}");
    }

    #[test]
    fn too_few_brokers_is_refused() {
        let error = assign(&brokers(&[None, None]), 1, 3, 0, 0, 0).expect_err("3 of 2");
        assert!(error.contains("only 2 broker(s) are registered"), "{error}");
        assert!(assign(&brokers(&[None]), 3, 1, 0, 0, 0).is_ok());
    }
}
