//! A store that goes back while the fraud consumer runs (restored from an
//! older snapshot, or emptied) loses nothing: the consumer re-reads what
//! the store forgot, and every feature counter, in the user slots and in
//! the home slots of shared entities, ends up as the events give it, each
//! event counted once; erasures hold through the re-read. So it does when
//! one slot goes back alone, with home-slot counters of another partition
//! in it. Also: a snapshot
//! taken between a batch's user-slot step and its home-slot steps is
//! re-read from the done watermark, so the home slots get that batch once.
mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use mesh_bus::{Handler, Record, Watermark};
use mesh_fraud::{features, updates, MemoryFeatures, StateOp};
use mesh_fraud_svc::state::{self, BatchWrite};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Context, Envelope, PaymentFailed, UserErased};
use mesh_proto::fraud::v1 as pb;
use mesh_store::StateStore;
use prost::Message;

use common::{now_ms, PARTITIONS};

/// A user id of tenant `shop` whose partition is `partition`.
fn user_in(partition: i32, stem: &str) -> String {
    (0..)
        .map(|i| format!("{stem}-{i}"))
        .find(|u| mesh_bus::partition::partition_for(&format!("shop/{u}"), PARTITIONS) == partition)
        .unwrap()
}

/// A user and the device (with its IP and card) all their events use.
#[derive(Clone)]
struct Buyer {
    user: String,
    device: String,
}

impl Buyer {
    fn new(partition: i32, stem: &str, device: &str) -> Self {
        Buyer {
            user: user_in(partition, stem),
            device: device.to_string(),
        }
    }

    fn member(&self) -> String {
        format!("shop/{}", self.user)
    }

    fn context(&self) -> Context {
        Context {
            device_hash: self.device.clone(),
            ip_hash: format!("ip-of-{}", self.device),
            ..Context::default()
        }
    }

    fn order(&self, id: &str, amount: f64, at: i64) -> Envelope {
        let mut e = common::order(&self.user, id, amount, at);
        e.context = Some(self.context());
        if let Some(Body::OrderPlaced(o)) = &mut e.body {
            o.payment_hash = format!("card-of-{}", self.device);
        }
        e
    }

    fn payment_failed(&self, order_id: &str, amount: f64, at: i64) -> Envelope {
        Envelope {
            event_id: format!("pf-{order_id}-{at}"),
            tenant_id: "shop".into(),
            user_id: self.user.clone(),
            occurred_at_ms: at,
            source: "checkout".into(),
            context: Some(self.context()),
            body: Some(Body::PaymentFailed(PaymentFailed {
                order_id: order_id.into(),
                amount,
                currency: "EUR".into(),
                payment_hash: format!("card-of-{}", self.device),
                ..Default::default()
            })),
        }
    }

    fn erased(&self, at: i64) -> Envelope {
        Envelope {
            event_id: format!("erase-{}-{at}", self.user),
            tenant_id: "shop".into(),
            user_id: self.user.clone(),
            occurred_at_ms: at,
            source: "test".into(),
            context: None,
            body: Some(Body::UserErased(UserErased {
                reason: "asked".into(),
            })),
        }
    }
}

/// What the accepted events give: the core's ops per user in publish
/// order (each user's events are in one partition, in order), minus what
/// an erasure takes (see `mesh_fraud_svc::erasure`): the user's own hash
/// and their membership of shared distinct-account sets go, the shared
/// counters stay; their later events count nothing.
#[derive(Default)]
struct Fold {
    ops: Vec<(String, Vec<StateOp>)>,
    erased: HashSet<String>,
    /// Orders decided (order id → user), and those of erased users.
    decided: BTreeMap<String, String>,
    forgotten: BTreeMap<String, String>,
}

impl Fold {
    fn apply(&mut self, e: &Envelope) {
        let member = e.user_key();
        if matches!(e.body, Some(Body::UserErased(_))) {
            self.erased.insert(member);
            let gone: Vec<String> = self
                .decided
                .iter()
                .filter(|(_, u)| format!("shop/{u}") == e.user_key())
                .map(|(o, _)| o.clone())
                .collect();
            for o in gone {
                let u = self.decided.remove(&o).unwrap();
                self.forgotten.insert(o, u);
            }
            return;
        }
        let ev = mesh_fraud_svc::convert::event_from(e)
            .expect("valid")
            .expect("a fraud event");
        if self.erased.contains(&member) {
            if let Some(Body::OrderPlaced(o)) = &e.body {
                self.forgotten.insert(o.order_id.clone(), e.user_id.clone());
            }
            return;
        }
        if let Some(Body::OrderPlaced(o)) = &e.body {
            self.decided.insert(o.order_id.clone(), e.user_id.clone());
        }
        self.ops.push((member, updates(&ev)));
    }

    fn reference(&self) -> MemoryFeatures {
        let mut m = MemoryFeatures::new();
        for (member, ops) in &self.ops {
            let kept: Vec<StateOp> = ops
                .iter()
                .filter(|op| {
                    !self.erased.contains(member)
                        || match op {
                            StateOp::Incr { key, .. } => !state::is_user_key(key),
                            StateOp::SetIfAbsent { key, field, .. } => {
                                !state::is_user_key(key) && field != member
                            }
                        }
                })
                .cloned()
                .collect();
            m.apply(&kept);
        }
        m
    }
}

/// The first feature of a probe order of each buyer at `at` where the
/// service and the fold differ.
async fn mismatch(
    scorer: &mesh_fraud_svc::Scorer,
    reference: &MemoryFeatures,
    buyers: &[Buyer],
    at: i64,
) -> Option<String> {
    for b in buyers {
        let probe = b.order(&format!("probe-{}-{at}", b.user), 50.0, at);
        let order = mesh_fraud_svc::convert::order_from(&probe).expect("probe");
        let want = features(&order, reference, order.ts).expect("reference");
        let got = scorer
            .score(&order, &[], "test")
            .await
            .expect("score")
            .features;
        for ((name, a), b_) in want.named().zip(&got.0) {
            if (a - b_).abs() > 1e-6 * a.abs().max(1.0) {
                return Some(format!(
                    "{} feature {name}: events give {a}, the service has {b_}",
                    b.user
                ));
            }
        }
    }
    None
}

/// The features the service computes for a probe order of each buyer at
/// `at` come to those of the fold (within 60 s: a partition may still be
/// re-reading) and stay there: every user and entity counter holds each
/// accepted event once.
async fn assert_features(scorer: &mesh_fraud_svc::Scorer, fold: &Fold, buyers: &[Buyer], at: i64) {
    let reference = fold.reference();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(m) = mismatch(scorer, &reference, buyers, at).await {
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(m) = mismatch(scorer, &reference, buyers, at).await {
        panic!("{m}");
    }
}

/// The stored decisions: one for every order of a user not erased, none
/// for an erased user's.
async fn assert_decisions(h: &common::Harness, fold: &Fold) {
    let mut client = h.client.clone();
    for (orders, found) in [(&fold.decided, true), (&fold.forgotten, false)] {
        for (order_id, user) in orders {
            let d = client
                .get_decision(pb::GetDecisionRequest {
                    tenant_id: "shop".into(),
                    user_id: user.clone(),
                    order_id: order_id.clone(),
                })
                .await
                .expect("get decision")
                .into_inner();
            assert_eq!(d.found, found, "decision of {user}'s order {order_id}");
        }
    }
}

/// Every key under `prefix`, by SCAN.
async fn keys(c: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await
            .expect("scan");
        out.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out.dedup();
    out
}

/// Deletes every key under `prefix` in one `DEL`: a store restored empty,
/// all at once, as a Redis restarted without its data.
async fn flush(c: &mut redis::aio::MultiplexedConnection, prefix: &str) -> usize {
    let all = keys(c, prefix).await;
    if !all.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&all)
            .query_async(c)
            .await
            .expect("del");
    }
    all.len()
}

/// A snapshot of every key under the prefix: name, DUMP, PTTL.
type Snapshot = Vec<(String, Vec<u8>, i64)>;

async fn snapshot(c: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Snapshot {
    // One MULTI: a point-in-time copy, as an RDB snapshot is.
    let all = keys(c, prefix).await;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for k in &all {
        pipe.cmd("DUMP").arg(k).cmd("PTTL").arg(k);
    }
    let replies: Vec<(Option<Vec<u8>>, i64)> = pipe.query_async(c).await.expect("dump");
    all.into_iter()
        .zip(replies)
        .filter_map(|(k, (dump, ttl))| dump.map(|d| (k, d, ttl.max(0))))
        .collect()
}

/// Replaces every key of `gone` with the snapshot's keys in one MULTI: a
/// Redis restarted from an older snapshot (or a failover to a replica that
/// missed writes) goes back all at once. A key-by-key restore would let
/// the running consumer see (and write into) a store that is half old,
/// half empty: a state no real fault produces.
async fn replace(c: &mut redis::aio::MultiplexedConnection, gone: &[String], snap: &Snapshot) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    if !gone.is_empty() {
        pipe.cmd("DEL").arg(gone).ignore();
    }
    for (k, dump, ttl) in snap {
        pipe.cmd("RESTORE")
            .arg(k)
            .arg(*ttl)
            .arg(dump.as_slice())
            .ignore();
    }
    let () = pipe.query_async(c).await.expect("restore");
}

/// The store as `snap` had it: every key deleted, the snapshot's restored.
async fn restore(c: &mut redis::aio::MultiplexedConnection, prefix: &str, snap: &Snapshot) {
    let all = keys(c, prefix).await;
    replace(c, &all, snap).await;
}

/// Publishes `events` on the order topic, folds them, and remembers the
/// last offset of each partition.
async fn publish(
    h: &common::Harness,
    fold: &mut Fold,
    last: &mut BTreeMap<i32, i64>,
    events: &[Envelope],
) {
    for e in events {
        let at = h.publish(e).await;
        let l = last.entry(at.partition).or_insert(at.offset);
        *l = (*l).max(at.offset);
        fold.apply(e);
    }
}

/// Waits (at most 90 s) until the store applied, every step included,
/// every partition through its last published offset.
async fn settled(h: &common::Harness, last: &BTreeMap<i32, i64>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    for (&p, &offset) in last {
        loop {
            let applied = state::applied(&h.store, &h.topics.order_events, p)
                .await
                .expect("watermarks")
                .all;
            if applied >= Some(offset) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {p} not applied through {offset} within 90 s (store at {applied:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Event times, a second apart.
struct Ticks(i64);

impl Ticks {
    fn next(&mut self) -> i64 {
        self.0 += 1_000;
        self.0
    }
}

fn prefix_of(store: &StateStore) -> String {
    match store {
        StateStore::Redis(r) => r.prefix().to_string(),
        StateStore::Memory(_) => unreachable!("the tests run on Redis"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_restored_from_a_snapshot_or_emptied_is_rebuilt_by_the_running_consumer() {
    let h = common::start(None).await;
    let prefix = prefix_of(&h.store);
    let mut redis = mesh_testkit::redis_connection(&mesh_testkit::redis_url()).await;
    // Two buyers per partition; one device shared across the partitions
    // (its home slot gets entity ops of both); the erased user shares it.
    let a0 = Buyer::new(0, "a", "dev-a0");
    let b0 = Buyer::new(0, "b", "dev-shared");
    let a1 = Buyer::new(1, "a", "dev-shared");
    let b1 = Buyer::new(1, "b", "dev-b1");
    let x = Buyer::new(0, "x", "dev-shared");
    let kept = [a0.clone(), b0.clone(), a1.clone(), b1.clone()];
    let everyone = [a0.clone(), b0.clone(), a1.clone(), b1.clone(), x.clone()];
    let mut t = Ticks(now_ms() - 1_800_000);
    // Each phase has events of every buyer in both partitions: a partition
    // notices its store went back with its next batch.
    let phase = |n: usize, t: &mut Ticks, extra: Vec<Envelope>| {
        let mut evs = Vec::new();
        for b in &kept {
            evs.push(b.order(&format!("{}-p{n}-o1", b.user), 40.0 + n as f64, t.next()));
            evs.push(b.order(&format!("{}-p{n}-o2", b.user), 90.0 * n as f64, t.next()));
        }
        evs.push(a1.payment_failed(&format!("{}-p{n}-o2", a1.user), 30.0, t.next()));
        evs.extend(extra);
        evs
    };
    let mut fold = Fold::default();
    let mut last = BTreeMap::new();

    // Phase 1, then a snapshot.
    let extra = vec![x.order(&format!("{}-p1", x.user), 70.0, t.next())];
    let p1 = phase(1, &mut t, extra);
    publish(&h, &mut fold, &mut last, &p1).await;
    settled(&h, &last).await;
    let snap = snapshot(&mut redis, &prefix).await;
    assert!(snap.len() > 10, "{} keys in the snapshot", snap.len());

    // Phase 2 (x orders again, then asks to be erased), then the store is
    // restored from the snapshot while the consumer runs.
    let mut extra = vec![x.order(&format!("{}-p2", x.user), 75.0, t.next())];
    extra.push(x.erased(t.next()));
    let p2 = phase(2, &mut t, extra);
    publish(&h, &mut fold, &mut last, &p2).await;
    settled(&h, &last).await;
    assert_features(&h.running.scorer, &fold, &everyone, t.next()).await;
    restore(&mut redis, &prefix, &snap).await;

    // Phase 3: the consumer finds the store behind and re-reads phase 2;
    // x's late order changes nothing.
    let extra = vec![x.order(&format!("{}-p3", x.user), 80.0, t.next())];
    let p3 = phase(3, &mut t, extra);
    publish(&h, &mut fold, &mut last, &p3).await;
    settled(&h, &last).await;
    assert_features(&h.running.scorer, &fold, &everyone, t.next()).await;
    assert_decisions(&h, &fold).await;

    // The store is emptied; phase 4 makes the consumer re-read everything.
    assert!(flush(&mut redis, &prefix).await > 10);
    let p4 = phase(4, &mut t, Vec::new());
    publish(&h, &mut fold, &mut last, &p4).await;
    settled(&h, &last).await;
    assert_features(&h.running.scorer, &fold, &everyone, t.next()).await;
    assert_decisions(&h, &fold).await;

    // One slot goes back alone (on a Redis Cluster, the node of hash tag
    // `{fraud.1}` failing over to a replica that missed phase 5): the user
    // slot of partition 1, and the home slot of entities that partition 0's
    // orders count in too. Partition 1 finds its own slot behind; partition
    // 0 finds the home slot behind what it wrote there, and re-reads its
    // records for their entity ops.
    let tag = format!("{prefix}:{{{}.1}}:", state::SCOPE);
    let slot_snap: Snapshot = snapshot(&mut redis, &prefix)
        .await
        .into_iter()
        .filter(|(k, _, _)| k.starts_with(&tag))
        .collect();
    let p5 = phase(5, &mut t, Vec::new());
    publish(&h, &mut fold, &mut last, &p5).await;
    settled(&h, &last).await;
    let gone: Vec<String> = keys(&mut redis, &prefix)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&tag))
        .collect();
    replace(&mut redis, &gone, &slot_snap).await;
    let p6 = phase(6, &mut t, Vec::new());
    publish(&h, &mut fold, &mut last, &p6).await;
    settled(&h, &last).await;
    assert_features(&h.running.scorer, &fold, &everyone, t.next()).await;
    assert_decisions(&h, &fold).await;
    // Every probe above read the erased user as a new one.
    assert!(fold.erased.contains(&x.member()));
}

/// One record per event of `topic[partition]`, from `first_offset` on.
fn records(topic: &str, partition: i32, events: &[Envelope], first_offset: i64) -> Vec<Record> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            topic: topic.to_string(),
            partition,
            offset: first_offset + i as i64,
            key: Some(e.user_key().into_bytes()),
            payload: e.encode_to_vec(),
            headers: Default::default(),
            timestamp_ms: Some(e.occurred_at_ms),
        })
        .collect()
}

/// A store snapshot taken after a batch's user-slot step and before its
/// home-slot steps (or a store that came back as such) is applied through
/// the batch before it: the consumer re-reads the batch, whose records
/// hand their entity ops on, and every entity counter holds each event
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_home_slots_missed_is_re_read_from_the_done_watermark() {
    let d = common::direct("fraud-behind", mesh_fraud::rules::DEFAULT_RULES).await;
    let partition = 1;
    let b = Buyer::new(partition, "gap", "dev-gap");
    let c = Buyer::new(partition, "gap-shared", "dev-gap");
    let t0 = now_ms() - 600_000;
    let first: Vec<Envelope> = (0..4)
        .map(|i| [&b, &c][i % 2].order(&format!("gap-a{i}"), 60.0 + i as f64, t0 + i as i64))
        .collect();
    let second: Vec<Envelope> = (0..4)
        .map(|i| [&b, &c][i % 2].order(&format!("gap-b{i}"), 80.0 + i as f64, t0 + 100 + i as i64))
        .collect();
    let batch_a = records(&d.topic, partition, &first, 0);
    let batch_b = records(&d.topic, partition, &second, 4);
    d.handler.handle(&batch_a).await.expect("first batch");
    // The second batch's user-slot step only, as the handler writes it.
    let mut w = BatchWrite::new(&d.topic, partition, PARTITIONS);
    for (r, e) in batch_b.iter().zip(&second) {
        let ev = mesh_fraud_svc::convert::event_from(e).unwrap().unwrap();
        w.push_user(
            r.offset,
            &e.user_key(),
            Vec::new(),
            &updates(&ev),
            Vec::new(),
        );
    }
    w.apply_own_only(&d.store).await.expect("user slot step");
    // The consumer asks what was applied, and re-reads from there.
    let mark = d
        .handler
        .applied_through(&d.topic, partition)
        .await
        .expect("applied");
    let from = match mark {
        Watermark::At(w) => w + 1,
        Watermark::Empty => 0,
        // Kafka's committed offset: after the second batch.
        Watermark::Untracked => 8,
    };
    let again: Vec<Record> = batch_a
        .iter()
        .chain(&batch_b)
        .filter(|r| r.offset >= from)
        .cloned()
        .collect();
    d.handler.handle(&again).await.expect("re-read");
    let mut fold = Fold::default();
    for e in first.iter().chain(&second) {
        fold.apply(e);
    }
    assert_features(&d.handler.scorer, &fold, &[b, c], t0 + 1_000).await;
    assert_eq!(
        mark,
        Watermark::At(3),
        "applied through the first batch only"
    );
    assert_eq!(
        d.handler
            .applied_through(&d.topic, partition)
            .await
            .unwrap(),
        Watermark::At(7)
    );
    d.store.clear_scope(state::SCOPE).await.expect("clear");
}
