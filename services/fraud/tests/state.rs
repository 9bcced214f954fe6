//! Features read from the store (counters spread over partition slots,
//! merged on read, plus the consumer's overlay of unapplied ops) equal the
//! core's reference in-memory state, on a simulated stream.
use std::collections::HashMap;

use mesh_fraud::sim::{simulate, SimParams};
use mesh_fraud::state::{entity_key, EntityKind};
use mesh_fraud::{features, features_from, reads_for, updates, Event, MemoryFeatures, StateOp};
use mesh_fraud_svc::state::{store_ops, FeatureReader, SCOPE};
use mesh_store::{PartitionBatch, RedisStore, StateStore};

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
                .read(&reads_for(o, o.ts), &user, p, &overlay)
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
            orders += 1;
        }
        let ops = updates(&ev.event);
        reference.apply(&ops);
        let off = offsets.entry(p).or_insert(0);
        *off += 1;
        pending.entry(p).or_default().push((*off, ops));
        // Flush every partition's pending records now and then.
        if n % 7 == 6 {
            for (part, recs) in pending.drain() {
                let mut b = PartitionBatch::new("orders", part);
                for (o, ops) in recs {
                    b.push(o, store_ops(&ops));
                }
                store.apply(SCOPE, &b).await.expect("apply");
            }
        }
    }
    assert!(orders > 50, "only {orders} orders simulated");
    store.clear_scope(SCOPE).await.expect("clear");
}
