//! Features read from the store (user counters in the user's slot, entity
//! counters in their home slots, plus the consumer's overlay of unapplied
//! ops) equal the core's reference in-memory state, on a simulated stream,
//! also when batches are redelivered after a crash between the user slot
//! and the home slots. A batch's orders fetched in one round trip, each
//! with its own overlay, read the same.
use std::collections::HashMap;

use mesh_fraud::sim::{simulate, SimParams};
use mesh_fraud::state::{entity_key, EntityKind};
use mesh_fraud::{features, features_from, reads_for, updates, Event, MemoryFeatures, StateOp};
use mesh_fraud_svc::state::{BatchWrite, FeatureReader, ReadSet, SCOPE};
use mesh_store::{RedisStore, StateStore};

const PARTITIONS: i32 = 4;

fn user_of(e: &Event) -> &str {
    match e {
        Event::Order(o) => &o.user_id,
        Event::Payment(p) => &p.user_id,
        Event::Account(a) => &a.user_id,
    }
}

#[tokio::test]
async fn merged_reads_match_the_reference_state() {
    let prefix = mesh_testkit::unique("fraud-state");
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .expect("redis"),
    );
    let reader = FeatureReader {
        store: store.clone(),
        partitions: PARTITIONS,
    };
    let params = SimParams {
        users: 80,
        days: 3,
        card_testing_rate: 20.0,
        promo_abuse_rate: 20.0,
        ..SimParams::default()
    };
    let mut reference = MemoryFeatures::new();
    // Per partition: unapplied records (offset, core ops), as a consumer
    // holds them while it works through a batch.
    let mut pending: HashMap<i32, Vec<(i64, Vec<StateOp>)>> = HashMap::new();
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    let mut orders = 0;
    // Orders since the last flush with their overlay and expected features:
    // fetched together, as a consumer batch fetches its orders, before the
    // flush applies anything.
    let mut unflushed = Vec::new();
    let mut fetched_together = 0;
    let mut flushes = 0u32;
    for (n, ev) in simulate(&params).expect("simulate").take(1500).enumerate() {
        let p = mesh_bus::partition::partition_for(user_of(&ev.event), PARTITIONS);
        if let Event::Order(o) = &ev.event {
            let expected = features(o, &reference, o.ts).expect("reference");
            let overlay: Vec<StateOp> = pending
                .get(&p)
                .into_iter()
                .flatten()
                .flat_map(|(_, ops)| ops.iter().cloned())
                .collect();
            let user = entity_key(EntityKind::User, &o.user_id);
            let res = reader
                .read(reads_for(o, o.ts), &user, p, &overlay)
                .await
                .expect("read");
            let got = features_from(o, &res, o.ts).expect("features");
            for ((name, a), b) in expected.named().zip(&got.0) {
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    "order {} feature {name}: reference {a}, store {b}",
                    o.order_id
                );
            }
            unflushed.push((o.clone(), overlay, expected));
            orders += 1;
        }
        let ops = updates(&ev.event);
        reference.apply(&ops);
        let off = offsets.entry(p).or_insert(0);
        *off += 1;
        pending.entry(p).or_default().push((*off, ops));
        // Flush every partition's pending records now and then. Every third
        // flush "crashes" after the user slot and is redelivered: the
        // redelivery must add the missing entity ops and nothing twice.
        if n % 7 == 6 {
            flushes += 1;
            let sets = unflushed
                .iter()
                .map(|(o, _, _)| ReadSet {
                    reqs: reads_for(o, o.ts),
                    owner_key: entity_key(EntityKind::User, &o.user_id),
                    owner_partition: mesh_bus::partition::partition_for(&o.user_id, PARTITIONS),
                })
                .collect();
            let fetched = reader.fetch(sets).await.expect("fetch");
            assert_eq!(fetched.len(), unflushed.len());
            for ((o, overlay, expected), f) in unflushed.drain(..).zip(fetched) {
                let got = features_from(&o, &f.with_overlay(&overlay), o.ts).expect("features");
                for ((name, a), b) in expected.named().zip(&got.0) {
                    assert!(
                        (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                        "order {} fetched with its batch, feature {name}: reference {a}, store {b}",
                        o.order_id
                    );
                }
                fetched_together += 1;
            }
            for (part, recs) in pending.drain() {
                let write = |wm: i64| {
                    let mut w = BatchWrite::new("orders", part, PARTITIONS);
                    for (o, ops) in &recs {
                        if *o > wm {
                            w.push(*o, ops, Vec::new());
                        } else {
                            w.push_entity_only(*o, ops);
                        }
                    }
                    w
                };
                let slot = mesh_store::Slot {
                    scope: SCOPE,
                    partition: part,
                };
                let wm = store.watermark(slot, "orders").await.expect("wm");
                let first = write(wm.unwrap_or(-1));
                if flushes.is_multiple_of(3) {
                    first.apply_own_only(&store).await.expect("apply own");
                    let wm = store.watermark(slot, "orders").await.expect("wm");
                    write(wm.unwrap_or(-1))
                        .apply(&store)
                        .await
                        .expect("redeliver");
                } else {
                    first.apply(&store).await.expect("apply");
                    // A plain redelivery of an applied batch changes nothing.
                    if flushes.is_multiple_of(5) {
                        write(-1).apply(&store).await.expect("redeliver");
                    }
                }
            }
        }
    }
    assert!(orders > 50, "only {orders} orders simulated");
    assert!(
        fetched_together > 40,
        "only {fetched_together} orders fetched in batches"
    );
    store.clear_scope(SCOPE).await.expect("clear");
}
