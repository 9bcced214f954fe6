//! One contract, three backends: every test here runs against the
//! in-memory store, a real Redis server and a real three-master Redis
//! Cluster (`MESH_TEST_REDIS_CLUSTER_URL`, started by `scripts/test.sh`).
use mesh_store::{
    Claim, HashRead, IdLedger, MemoryStore, Op, PartitionBatch, RedisStore, Slot, StateStore,
};
use std::time::Duration;

/// Seed URLs of the test Redis Cluster. Like every `MESH_TEST_*` server, a
/// missing one fails the test with how to get it, never skips it.
fn redis_cluster_url() -> String {
    match std::env::var("MESH_TEST_REDIS_CLUSTER_URL") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "MESH_TEST_REDIS_CLUSTER_URL is not set: run the tests with `scripts/test.sh`, which \
             starts a three-master Redis Cluster on free loopback ports and sets it to the seed \
             URLs (redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3)"
        ),
    }
}

async fn stores() -> Vec<(&'static str, StateStore)> {
    let prefix = mesh_testkit::unique("store");
    let redis = RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
        .await
        .expect("redis");
    let cluster = RedisStore::connect(&redis_cluster_url(), &prefix)
        .await
        .expect("redis cluster");
    assert!(cluster.is_cluster() && !redis.is_cluster());
    vec![
        ("memory", StateStore::Memory(MemoryStore::new(&prefix))),
        ("redis", StateStore::Redis(redis)),
        ("cluster", StateStore::Redis(cluster)),
    ]
}

fn hset(key: &str, field: &str, value: &str) -> Op {
    Op::HSet {
        key: key.into(),
        field: field.into(),
        value: value.into(),
    }
}

fn zset(key: &str, member: &str, score: f64) -> Op {
    Op::ZSet {
        key: key.into(),
        member: member.into(),
        score,
    }
}

fn incr(key: &str, field: &str, delta: i64) -> Op {
    Op::HIncr {
        key: key.into(),
        field: field.into(),
        delta,
    }
}

#[tokio::test]
async fn redelivered_records_change_nothing() {
    for (name, store) in stores().await {
        let mut b = PartitionBatch::new("events", 3);
        b.push(
            10,
            vec![
                incr("u:a", "n", 1),
                Op::HIncrFloat {
                    key: "u:a".into(),
                    field: "spend".into(),
                    delta: 2.5,
                },
            ],
        );
        b.push(11, vec![incr("u:a", "n", 1)]);
        let first = store.apply("svc", &b).await.unwrap();
        assert_eq!((first.applied, first.skipped), (2, 0), "{name}");
        // The same batch again, and an overlapping one with a new record.
        let again = store.apply("svc", &b).await.unwrap();
        assert_eq!((again.applied, again.skipped), (0, 2), "{name}");
        let mut overlap = PartitionBatch::new("events", 3);
        overlap.push(11, vec![incr("u:a", "n", 1)]);
        overlap.push(12, vec![incr("u:a", "n", 5)]);
        let o = store.apply("svc", &overlap).await.unwrap();
        assert_eq!((o.applied, o.skipped), (1, 1), "{name}");
        let slot = Slot {
            scope: "svc",
            partition: 3,
        };
        let h = store.hgetall(slot, "u:a").await.unwrap();
        assert_eq!(h["n"], "7", "{name}");
        assert_eq!(h["spend"].parse::<f64>().unwrap(), 2.5, "{name}");
        assert_eq!(
            store.watermark(slot, "events").await.unwrap(),
            Some(12),
            "{name}"
        );
        // Watermarks are per source topic.
        assert_eq!(
            store.watermark(slot, "orders").await.unwrap(),
            None,
            "{name}"
        );
        // The tally counts records 10, 11 and 12 once each, however often
        // they came.
        assert_eq!(
            store.applied_records(slot, "events").await.unwrap(),
            3,
            "{name}"
        );
        assert_eq!(
            store.applied_records(slot, "orders").await.unwrap(),
            0,
            "{name}"
        );
    }
}

#[tokio::test]
async fn every_op_behaves_the_same() {
    for (name, store) in stores().await {
        let k = "k".to_string();
        let mut b = PartitionBatch::new("t", 0);
        b.push(
            0,
            vec![
                Op::HSetNx {
                    key: k.clone(),
                    field: "first".into(),
                    value: "x".into(),
                },
                Op::HSetNx {
                    key: k.clone(),
                    field: "first".into(),
                    value: "y".into(),
                },
                Op::HSet {
                    key: k.clone(),
                    field: "last".into(),
                    value: "z".into(),
                },
                Op::HMax {
                    key: k.clone(),
                    field: "max".into(),
                    value: 5,
                },
                Op::HMax {
                    key: k.clone(),
                    field: "max".into(),
                    value: 3,
                },
                Op::HMin {
                    key: k.clone(),
                    field: "min".into(),
                    value: 5,
                },
                Op::HMin {
                    key: k.clone(),
                    field: "min".into(),
                    value: 3,
                },
                Op::ZIncr {
                    key: "z".into(),
                    member: "a".into(),
                    delta: 1.5,
                },
                Op::ZIncr {
                    key: "z".into(),
                    member: "a".into(),
                    delta: 1.0,
                },
                Op::ZSet {
                    key: "z".into(),
                    member: "b".into(),
                    score: 9.0,
                },
                Op::ZSet {
                    key: "z".into(),
                    member: "c".into(),
                    score: 0.5,
                },
            ],
        );
        for i in 0..5 {
            b.push(
                1 + i,
                vec![Op::LPushCapped {
                    key: "l".into(),
                    value: i.to_string(),
                    max_len: 3,
                }],
            );
        }
        store.apply("ops", &b).await.unwrap();
        let slot = Slot {
            scope: "ops",
            partition: 0,
        };
        let h = store.hgetall(slot, "k").await.unwrap();
        assert_eq!(
            (h["first"].as_str(), h["last"].as_str()),
            ("x", "z"),
            "{name}"
        );
        assert_eq!((h["max"].as_str(), h["min"].as_str()), ("5", "3"), "{name}");
        let z = store.ztop(slot, "z", 2).await.unwrap();
        assert_eq!(
            z,
            vec![("b".to_string(), 9.0), ("a".to_string(), 2.5)],
            "{name}"
        );
        assert_eq!(
            store.lrange(slot, "l", 10).await.unwrap(),
            vec!["4", "3", "2"],
            "{name}"
        );
        let many = store
            .hgetall_many(&[(slot, "k".into()), (slot, "missing".into())])
            .await
            .unwrap();
        assert_eq!(many.len(), 2);
        assert!(many[1].is_empty(), "{name}");
    }
}

#[tokio::test]
async fn clear_scope_removes_state_and_watermarks_of_that_scope_only() {
    for (name, store) in stores().await {
        for scope in ["a", "b"] {
            let mut batch = PartitionBatch::new("t", 1);
            batch.push(0, vec![incr("x", "n", 1)]);
            store.apply(scope, &batch).await.unwrap();
        }
        // A scope whose name starts with "a." (a model kept beside the
        // service's state) is not part of scope "a".
        let mut model = PartitionBatch::new("t", 0);
        model.push(0, vec![incr("m", "n", 1)]);
        store.apply("a.model", &model).await.unwrap();
        assert!(store.clear_scope("a").await.unwrap() >= 2, "{name}");
        let kept = Slot {
            scope: "a.model",
            partition: 0,
        };
        assert_eq!(store.hgetall(kept, "m").await.unwrap()["n"], "1", "{name}");
        let a = Slot {
            scope: "a",
            partition: 1,
        };
        let b = Slot {
            scope: "b",
            partition: 1,
        };
        assert!(store.hgetall(a, "x").await.unwrap().is_empty(), "{name}");
        assert_eq!(store.watermark(a, "t").await.unwrap(), None, "{name}");
        assert_eq!(store.hgetall(b, "x").await.unwrap()["n"], "1", "{name}");
    }
}

#[tokio::test]
async fn clear_scope_keeping_spares_the_named_keys() {
    for (name, store) in stores().await {
        let mut batch = PartitionBatch::new("t", 3);
        batch.push(0, vec![incr("labels:x", "n", 1), incr("queue", "n", 1)]);
        store.apply("k", &batch).await.unwrap();
        store.clear_scope_keeping("k", &["labels:"]).await.unwrap();
        let slot = Slot {
            scope: "k",
            partition: 3,
        };
        assert_eq!(
            store.hgetall(slot, "labels:x").await.unwrap()["n"],
            "1",
            "{name}"
        );
        assert!(
            store.hgetall(slot, "queue").await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(store.watermark(slot, "t").await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn unordered_batches_are_refused() {
    for (name, store) in stores().await {
        let mut b = PartitionBatch::new("t", 0);
        b.push(5, vec![]);
        b.push(4, vec![]);
        assert!(store.apply("s", &b).await.is_err(), "{name}");
    }
}

#[tokio::test]
async fn a_store_behind_the_expectation_refuses_the_batch_and_writes_nothing() {
    for (name, store) in stores().await {
        let slot = Slot {
            scope: "s",
            partition: 2,
        };
        let mut first = PartitionBatch::new("t", 2);
        first.push(0, vec![incr("u", "n", 1)]);
        first.push(1, vec![incr("u", "n", 1)]);
        // Nothing applied yet, and nothing expected: applied.
        first.expect_through = Some(-1);
        store.apply("s", &first).await.unwrap();
        // The consumer applied through 1; a batch from 2 expecting 1 goes on.
        let mut next = PartitionBatch::new("t", 2);
        next.push(2, vec![incr("u", "n", 1)]);
        next.expect_through = Some(1);
        assert_eq!(store.apply("s", &next).await.unwrap().applied, 1, "{name}");
        // A batch whose consumer believes 5 was applied finds the store at 2:
        // refused, naming the watermark, and nothing of it written.
        let mut ahead = PartitionBatch::new("t", 2);
        ahead.push(6, vec![incr("u", "n", 100)]);
        ahead.expect_through = Some(5);
        match store.apply("s", &ahead).await {
            Err(mesh_store::Error::Behind {
                watermark,
                expected,
                partition,
                ..
            }) => assert_eq!((watermark, expected, partition), (Some(2), 5, 2), "{name}"),
            other => panic!("{name}: expected Behind, got {other:?}"),
        }
        assert_eq!(store.hgetall(slot, "u").await.unwrap()["n"], "3", "{name}");
        assert_eq!(store.watermark(slot, "t").await.unwrap(), Some(2), "{name}");
        // A refused batch is not counted.
        assert_eq!(store.applied_records(slot, "t").await.unwrap(), 3, "{name}");
        // An empty store (flushed) is behind any expectation at or above 0.
        let mut other = PartitionBatch::new("t", 5);
        other.push(9, vec![incr("v", "n", 1)]);
        other.expect_through = Some(8);
        assert!(
            matches!(
                store.apply("s", &other).await,
                Err(mesh_store::Error::Behind {
                    watermark: None,
                    ..
                })
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn once_applies_a_records_ops_only_for_an_unseen_id() {
    for (name, store) in stores().await {
        let slot = Slot {
            scope: "s",
            partition: 1,
        };
        let once = |id: &str| Op::Once {
            key: "seen:d1".into(),
            field: id.into(),
            ttl_ms: 60_000,
        };
        let mut b = PartitionBatch::new("t", 1);
        b.push(0, vec![once("a"), incr("u", "n", 1), incr("u", "m", 1)]);
        // The same id again under another offset (produced twice).
        b.push(1, vec![once("a"), incr("u", "n", 1), incr("u", "m", 1)]);
        b.push(2, vec![once("b"), incr("u", "n", 10)]);
        let r = store.apply("s", &b).await.unwrap();
        assert_eq!((r.applied, r.skipped), (3, 0), "{name}");
        let mut later = PartitionBatch::new("t", 1);
        later.push(3, vec![once("b"), incr("u", "n", 100)]);
        later.push(4, vec![incr("u", "n", 1000)]);
        store.apply("s", &later).await.unwrap();
        let h = store.hgetall(slot, "u").await.unwrap();
        assert_eq!((h["n"].as_str(), h["m"].as_str()), ("1011", "1"), "{name}");
        assert_eq!(store.watermark(slot, "t").await.unwrap(), Some(4), "{name}");
    }
}

#[tokio::test]
async fn erasure_ops_delete_and_guard_later_records() {
    for (name, store) in stores().await {
        let slot = Slot {
            scope: "s",
            partition: 2,
        };
        let unless = || Op::Unless {
            key: "erased".into(),
            field: "t/u1".into(),
        };
        let mut b = PartitionBatch::new("t", 2);
        b.push(
            0,
            vec![unless(), incr("u:t/u1", "n", 1), incr("agg", "n", 1)],
        );
        b.push(
            1,
            vec![
                zset("idx", "t/u1", 5.0),
                Op::LPushCapped {
                    key: "l:t/u1".into(),
                    value: "x".into(),
                    max_len: 10,
                },
                hset("shared", "t/u1", "v"),
                hset("shared", "t/u2", "w"),
            ],
        );
        // The erasure, then in the same batch an event of the user that
        // must change nothing: the deleted hash is absent to later checks.
        b.push(
            2,
            vec![
                Op::Del {
                    key: "u:t/u1".into(),
                },
                Op::Del {
                    key: "l:t/u1".into(),
                },
                Op::ZRem {
                    key: "idx".into(),
                    member: "t/u1".into(),
                },
                Op::HDel {
                    key: "shared".into(),
                    field: "t/u1".into(),
                },
                hset("erased", "t/u1", "2"),
                incr("u:t/u1", "after_delete", 1),
            ],
        );
        b.push(
            3,
            vec![unless(), incr("u:t/u1", "n", 1), incr("agg", "n", 1)],
        );
        let r = store.apply("s", &b).await.unwrap();
        assert_eq!((r.applied, r.skipped), (4, 0), "{name}");
        let mut later = PartitionBatch::new("t", 2);
        later.push(4, vec![unless(), incr("u:t/u1", "n", 1)]);
        later.push(
            5,
            vec![
                Op::Unless {
                    key: "erased".into(),
                    field: "t/u2".into(),
                },
                incr("u:t/u2", "n", 1),
            ],
        );
        store.apply("s", &later).await.unwrap();
        let user = store.hgetall(slot, "u:t/u1").await.unwrap();
        assert_eq!(user.len(), 1, "{name}: {user:?}");
        assert_eq!(user["after_delete"], "1", "{name}");
        assert!(
            store.lrange(slot, "l:t/u1", 10).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(
            store.ztop(slot, "idx", 10).await.unwrap().is_empty(),
            "{name}"
        );
        let shared = store.hgetall(slot, "shared").await.unwrap();
        assert_eq!(shared.keys().collect::<Vec<_>>(), vec!["t/u2"], "{name}");
        assert_eq!(
            store.hgetall(slot, "agg").await.unwrap()["n"],
            "1",
            "{name}"
        );
        assert_eq!(
            store.hgetall(slot, "u:t/u2").await.unwrap()["n"],
            "1",
            "{name}"
        );
        assert_eq!(store.watermark(slot, "t").await.unwrap(), Some(5), "{name}");
    }
}

#[tokio::test]
async fn ledger_claims_once_and_releases() {
    let prefix = mesh_testkit::unique("ledger");
    let client = redis::Client::open(mesh_testkit::redis_url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    // On the cluster, through the store's connection (as `mesh up` does).
    let cluster = RedisStore::connect(&redis_cluster_url(), &prefix)
        .await
        .expect("redis cluster");
    let ttl = (Duration::from_secs(30), Duration::from_secs(300));
    for (name, ledger) in [
        ("memory", IdLedger::memory(ttl.0, ttl.1)),
        ("redis", IdLedger::redis(conn, &prefix, ttl.0, ttl.1)),
        (
            "cluster",
            IdLedger::redis(cluster.connection(), &prefix, ttl.0, ttl.1),
        ),
    ] {
        // Enough ids that the cluster's keys land on every master.
        let ids: Vec<String> = (0..20).map(|i| format!("t/id-{i}")).collect();
        let (done, rest) = ids.split_at(7);
        assert_eq!(
            ledger.claim(&ids).await.unwrap(),
            vec![Claim::New; 20],
            "{name}"
        );
        assert_eq!(
            ledger.claim(&ids).await.unwrap(),
            vec![Claim::Pending; 20],
            "{name}"
        );
        ledger.mark_done(done).await.unwrap();
        ledger.release(rest).await.unwrap();
        let mut want = vec![Claim::Done; 7];
        want.extend(vec![Claim::New; 13]);
        assert_eq!(ledger.claim(&ids).await.unwrap(), want, "{name}");
        // Nothing to claim, mark or release: nothing asked of Redis.
        assert!(ledger.claim(&[]).await.unwrap().is_empty(), "{name}");
        ledger.mark_done(&[]).await.unwrap();
        ledger.release(&[]).await.unwrap();
    }
}

/// Issue 15: an empty read or write is an empty answer, never a Redis
/// error ("empty command") that fails the consumer's batch.
#[tokio::test]
async fn empty_reads_and_writes_answer_empty() {
    for (name, store) in stores().await {
        assert!(store.hgetall_many(&[]).await.unwrap().is_empty(), "{name}");
        assert!(store.hread_many(&[]).await.unwrap().is_empty(), "{name}");
        let slot = Slot {
            scope: "svc",
            partition: 0,
        };
        assert_eq!(store.ztop(slot, "z", 0).await.unwrap(), vec![], "{name}");
        assert!(
            store.lrange(slot, "l", 0).await.unwrap().is_empty(),
            "{name}"
        );
        // A batch without records changes nothing; records without ops
        // still move the watermark.
        let empty = store.apply("svc", &PartitionBatch::new("t", 0)).await;
        assert_eq!(empty.unwrap(), Default::default(), "{name}");
        assert_eq!(store.watermark(slot, "t").await.unwrap(), None, "{name}");
        let mut no_ops = PartitionBatch::new("t", 0);
        no_ops.push(4, vec![]);
        no_ops.push(5, vec![]);
        assert_eq!(
            store.apply("svc", &no_ops).await.unwrap().applied,
            2,
            "{name}"
        );
        assert_eq!(store.watermark(slot, "t").await.unwrap(), Some(5), "{name}");
        // A compare-and-set with nothing to set only checks its guard.
        assert!(
            store.hset_if(slot, "h", &[("f", None)], &[]).await.unwrap(),
            "{name}"
        );
        assert!(store.hgetall(slot, "h").await.unwrap().is_empty(), "{name}");
        // Clearing a scope that has nothing.
        assert_eq!(
            store.clear_scope("nothing-here").await.unwrap(),
            0,
            "{name}"
        );
    }
}

/// Reads that span many slots (every partition of two scopes) come back in
/// the order asked, on the cluster split per slot and reassembled.
#[tokio::test]
async fn reads_across_slots_keep_their_order() {
    for (name, store) in stores().await {
        let parts = 16;
        for scope in ["a", "b"] {
            for p in 0..parts {
                let mut b = PartitionBatch::new("t", p);
                b.push(0, vec![incr("h", "p", i64::from(p))]);
                store.apply(scope, &b).await.unwrap();
            }
        }
        let keys: Vec<(Slot<'_>, String)> = (0..parts)
            .flat_map(|p| {
                ["b", "a"].map(|scope| {
                    (
                        Slot {
                            scope,
                            partition: p,
                        },
                        "h".to_string(),
                    )
                })
            })
            .collect();
        let hashes = store.hgetall_many(&keys).await.unwrap();
        let got: Vec<String> = hashes.iter().map(|h| h["p"].clone()).collect();
        let want: Vec<String> = (0..parts)
            .flat_map(|p| [p.to_string(), p.to_string()])
            .collect();
        assert_eq!(got, want, "{name}");
        let reads: Vec<HashRead<'_>> = keys
            .iter()
            .map(|(slot, key)| HashRead::Fields {
                slot: *slot,
                key: key.clone(),
                fields: vec!["p".into()],
            })
            .collect();
        let replies = store.hread_many(&reads).await.unwrap();
        let got: Vec<String> = replies
            .into_iter()
            .map(|r| match r {
                mesh_store::HashReply::Fields(v) => v[0].clone().unwrap(),
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        assert_eq!(got, want, "{name}");
        // Clearing one scope finds its keys on every master.
        assert_eq!(
            store.clear_scope("a").await.unwrap(),
            2 * parts as u64,
            "{name}"
        );
        assert!(store
            .hgetall_many(&keys)
            .await
            .unwrap()
            .iter()
            .enumerate()
            .all(|(i, h)| h.is_empty() == (i % 2 == 1)));
    }
}

#[tokio::test]
async fn hset_if_sets_once_per_guard() {
    for (name, store) in stores().await {
        let slot = Slot {
            scope: "svc",
            partition: 1,
        };
        // Absent guard: the first call wins, the retry changes nothing.
        let fire = [("alerted", None)];
        let set = [("alerted", "1"), ("at", "10")];
        assert!(
            store.hset_if(slot, "u:a", &fire, &set).await.unwrap(),
            "{name}"
        );
        assert!(
            !store
                .hset_if(slot, "u:a", &fire, &[("at", "11")])
                .await
                .unwrap(),
            "{name}"
        );
        let h = store.hgetall(slot, "u:a").await.unwrap();
        assert_eq!(
            (h["alerted"].as_str(), h["at"].as_str()),
            ("1", "10"),
            "{name}"
        );
        // Value guards: all must hold.
        let ok = [("alerted", Some("1")), ("at", Some("10"))];
        let bad = [("alerted", Some("1")), ("at", Some("9"))];
        assert!(
            !store
                .hset_if(slot, "u:a", &bad, &[("alerted", "0")])
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            store
                .hset_if(slot, "u:a", &ok, &[("alerted", "0")])
                .await
                .unwrap(),
            "{name}"
        );
        assert_eq!(
            store.hgetall(slot, "u:a").await.unwrap()["alerted"],
            "0",
            "{name}"
        );
        // A value guard on a missing hash fails.
        assert!(
            !store.hset_if(slot, "u:b", &ok, &set).await.unwrap(),
            "{name}"
        );
        assert!(
            store.hgetall(slot, "u:b").await.unwrap().is_empty(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn hread_many_answers_fields_and_keys_in_one_call() {
    use mesh_store::HashReply;
    for (name, store) in stores().await {
        let mut b = PartitionBatch::new("t", 1);
        b.push(
            0,
            vec![
                Op::HIncrFloat {
                    key: "h".into(),
                    field: "a".into(),
                    delta: 1.5,
                },
                Op::HSetNx {
                    key: "set".into(),
                    field: "u1".into(),
                    value: "1".into(),
                },
                Op::HSetNx {
                    key: "set".into(),
                    field: "u2".into(),
                    value: "1".into(),
                },
            ],
        );
        store.apply("svc", &b).await.unwrap();
        let s1 = Slot {
            scope: "svc",
            partition: 1,
        };
        let s2 = Slot {
            scope: "svc",
            partition: 2,
        };
        let replies = store
            .hread_many(&[
                HashRead::Fields {
                    slot: s1,
                    key: "h".into(),
                    fields: vec!["a".into(), "missing".into()],
                },
                HashRead::Keys {
                    slot: s1,
                    key: "set".into(),
                },
                HashRead::Fields {
                    slot: s2,
                    key: "h".into(),
                    fields: vec!["a".into()],
                },
                HashRead::Keys {
                    slot: s2,
                    key: "set".into(),
                },
                HashRead::Fields {
                    slot: s1,
                    key: "h".into(),
                    fields: vec![],
                },
            ])
            .await
            .unwrap();
        assert_eq!(replies.len(), 5, "{name}");
        match &replies[0] {
            HashReply::Fields(v) => {
                assert_eq!(v.len(), 2, "{name}");
                assert_eq!(
                    v[0].as_deref().map(|x| x.parse::<f64>().unwrap()),
                    Some(1.5)
                );
                assert_eq!(v[1], None, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        match &replies[1] {
            HashReply::Keys(k) => {
                let mut k = k.clone();
                k.sort();
                assert_eq!(k, vec!["u1".to_string(), "u2".to_string()], "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(replies[2], HashReply::Fields(vec![None]), "{name}");
        assert_eq!(replies[3], HashReply::Keys(vec![]), "{name}");
        assert_eq!(replies[4], HashReply::Fields(vec![]), "{name}");
    }
}

#[tokio::test]
async fn zrem_removes_a_member() {
    for (name, store) in stores().await {
        let mut b = PartitionBatch::new("t", 0);
        b.push(
            0,
            vec![
                Op::ZSet {
                    key: "z".into(),
                    member: "a".into(),
                    score: 1.0,
                },
                Op::ZSet {
                    key: "z".into(),
                    member: "b".into(),
                    score: 2.0,
                },
            ],
        );
        b.push(
            1,
            vec![
                Op::ZRem {
                    key: "z".into(),
                    member: "b".into(),
                },
                Op::ZRem {
                    key: "z".into(),
                    member: "never".into(),
                },
                Op::ZRem {
                    key: "nokey".into(),
                    member: "x".into(),
                },
            ],
        );
        store.apply("svc", &b).await.unwrap();
        let slot = Slot {
            scope: "svc",
            partition: 0,
        };
        assert_eq!(
            store.ztop(slot, "z", 10).await.unwrap(),
            vec![("a".to_string(), 1.0)],
            "{name}"
        );
    }
}

/// Redis refuses some ops (an increment of a field holding text, an op on
/// a key of another type); the apply script checks the whole batch first,
/// so a refused batch writes nothing and does not move the watermark (a
/// script error does not roll back its earlier writes, and the retried
/// batch would count them twice). The in-memory store treats such values
/// as 0 and never refuses, so this runs on Redis and the cluster only.
#[tokio::test]
async fn a_batch_redis_refuses_changes_nothing() {
    for (name, store) in stores().await {
        if name == "memory" {
            continue;
        }
        let slot = Slot {
            scope: "svc",
            partition: 2,
        };
        let mut seed = PartitionBatch::new("t", 2);
        seed.push(
            0,
            vec![
                Op::HSet {
                    key: "bad".into(),
                    field: "n".into(),
                    value: "text".into(),
                },
                Op::ZSet {
                    key: "z".into(),
                    member: "m".into(),
                    score: 1.0,
                },
            ],
        );
        store.apply("svc", &seed).await.unwrap();
        let poisons = [
            incr("bad", "n", 1),
            Op::HMax {
                key: "bad".into(),
                field: "n".into(),
                value: 3,
            },
            incr("z", "n", 1),
            Op::LPushCapped {
                key: "z".into(),
                value: "v".into(),
                max_len: 3,
            },
        ];
        for poison in poisons {
            let mut b = PartitionBatch::new("t", 2);
            b.push(1, vec![incr("u:a", "n", 1), incr("u:a", "f", 1)]);
            b.push(
                2,
                vec![Op::HSet {
                    key: "u:a".into(),
                    field: "f".into(),
                    value: "now text".into(),
                }],
            );
            b.push(3, vec![poison.clone()]);
            let err = store.apply("svc", &b).await.unwrap_err().to_string();
            assert!(err.contains("offset 3"), "{name} {poison:?}: {err}");
            assert!(
                store.hgetall(slot, "u:a").await.unwrap().is_empty(),
                "{name}"
            );
            assert_eq!(store.watermark(slot, "t").await.unwrap(), Some(0), "{name}");
        }
        // Within the batch: a field made text by an earlier record.
        let mut b = PartitionBatch::new("t", 2);
        b.push(
            1,
            vec![Op::HSet {
                key: "u:b".into(),
                field: "n".into(),
                value: "text".into(),
            }],
        );
        b.push(2, vec![incr("u:b", "n", 1)]);
        assert!(store.apply("svc", &b).await.is_err(), "{name}");
        assert!(
            store.hgetall(slot, "u:b").await.unwrap().is_empty(),
            "{name}"
        );
        // And the ordinary mixes still apply.
        let mut ok = PartitionBatch::new("t", 2);
        ok.push(1, vec![incr("u:c", "n", 1), incr("u:c", "n", 2)]);
        ok.push(
            2,
            vec![
                Op::HIncrFloat {
                    key: "u:c".into(),
                    field: "s".into(),
                    delta: 1.5,
                },
                Op::HMax {
                    key: "u:c".into(),
                    field: "n".into(),
                    value: 10,
                },
                Op::HSetNx {
                    key: "u:c".into(),
                    field: "n".into(),
                    value: "ignored".into(),
                },
                incr("u:c", "n", 1),
            ],
        );
        store.apply("svc", &ok).await.unwrap();
        assert_eq!(
            store.hgetall(slot, "u:c").await.unwrap()["n"],
            "11",
            "{name}"
        );
    }
}

/// The Redis ledger's generations: an id marked done is found for at
/// least `done_ttl` (into the next generation), not after the generation
/// past that; a pending claim expires after `pending_ttl` whatever the
/// generation; and the ids cost small hash fields, not a key each.
#[tokio::test]
async fn ledger_generations_keep_done_ids_for_done_ttl_and_cost_little() {
    let prefix = mesh_testkit::unique("ledger-gen");
    let client = redis::Client::open(mesh_testkit::redis_url()).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let day_ms: u64 = 86_400_000;
    let ledger = IdLedger::redis(
        conn.clone(),
        &prefix,
        Duration::from_secs(30),
        Duration::from_millis(day_ms),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // One second before a generation ends (and after now, so the hashes'
    // expiry is in the future).
    let t0 = (now / day_ms + 1) * day_ms - 1_000;
    let ids: Vec<String> = (0..50).map(|i| format!("t/e-{i}")).collect();
    let (done, pending) = ids.split_at(25);
    assert_eq!(
        ledger.claim_at(&ids, t0).await.unwrap(),
        vec![Claim::New; 50]
    );
    ledger.mark_done_at(done, t0 + 500).await.unwrap();
    // The next generation sees both.
    let mut want = vec![Claim::Done; 25];
    want.extend(vec![Claim::Pending; 25]);
    assert_eq!(ledger.claim_at(&ids, t0 + 2_000).await.unwrap(), want);
    // Pending claims expire: claimed anew (in the new generation).
    assert_eq!(
        ledger.claim_at(pending, t0 + 31_000).await.unwrap(),
        vec![Claim::New; 25]
    );
    // Done ids are still done a whole done_ttl after they were marked ...
    assert_eq!(
        ledger.claim_at(done, t0 + 500 + day_ms - 1).await.unwrap(),
        vec![Claim::Done; 25]
    );
    // ... and forgotten two generations on.
    assert_eq!(
        ledger.claim_at(done, t0 + 1_000 + day_ms).await.unwrap(),
        vec![Claim::New; 25]
    );
    // Released claims are gone from either generation.
    ledger.release_at(pending, t0 + 31_500).await.unwrap();
    assert_eq!(
        ledger.claim_at(pending, t0 + 32_000).await.unwrap(),
        vec![Claim::New; 25]
    );

    // An id twice in one call: the second copy finds the first's claim.
    let twice = vec![
        "t/dup".to_string(),
        "t/other".to_string(),
        "t/dup".to_string(),
    ];
    assert_eq!(
        ledger.claim_at(&twice, t0).await.unwrap(),
        [Claim::New, Claim::New, Claim::Pending]
    );

    // Memory: 20,000 ids claimed and marked in one generation.
    let many: Vec<String> = (0..20_000).map(|i| format!("t/m-{i}")).collect();
    for chunk in many.chunks(500) {
        ledger.claim_at(chunk, now).await.unwrap();
        ledger.mark_done_at(chunk, now).await.unwrap();
    }
    let gen = now / day_ms;
    let mut bytes = 0u64;
    let mut keys = 0u64;
    for b in 0..mesh_store::ledger::BUCKETS {
        let key = format!("{prefix}:ids:{{{b}}}:{gen}");
        let size: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(s) = size {
            bytes += s;
            keys += 1;
        }
    }
    let per_id = bytes as f64 / many.len() as f64;
    eprintln!("ledger: {keys} hashes, {bytes} bytes, {per_id:.1} bytes per id");
    assert!(
        keys > 4_000 && keys <= u64::from(mesh_store::ledger::BUCKETS),
        "{keys}"
    );
    // A key per id cost ~120 bytes.
    assert!(per_id < 60.0, "{per_id:.1} bytes per id");
    // Leave nothing behind (the hashes would live three days).
    let mut scan_conn = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:ids:*"))
        .query_async(&mut scan_conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// `zcap` keeps each long set's highest-scored members with their exact
/// scores (ties: the greater member), leaves short sets, absent keys and
/// keys of another type alone, and on Redis leaves the cut set in the
/// compact listpack encoding (a trim in place would leave a skiplist).
#[tokio::test]
async fn zcap_keeps_the_top_members_exactly_and_compact() {
    let slot = Slot {
        scope: "svc",
        partition: 3,
    };
    // 300 members with scores that are not short decimals, and a tie at
    // the cut (m150 and m151 score the same).
    let score = |i: usize| {
        if i == 151 {
            150.0 / 3.0
        } else {
            i as f64 / 3.0
        }
    };
    let mut want: Vec<(String, f64)> = (0..300).map(|i| (format!("m{i}"), score(i))).collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    want.truncate(100);
    for (name, store) in stores().await {
        let mut b = PartitionBatch::new("t", slot.partition);
        b.push(
            0,
            (0..300)
                .map(|i| zset("big", &format!("m{i}"), score(i)))
                .collect(),
        );
        b.push(
            1,
            (0..5)
                .map(|i| zset("small", &format!("s{i}"), i as f64))
                .collect(),
        );
        b.push(2, vec![hset("h", "f", "v")]);
        store.apply("svc", &b).await.unwrap();
        let keys = ["big", "small", "missing", "h"];
        assert_eq!(
            store.zcap(slot, &keys, 100, 128).await.unwrap(),
            1,
            "{name}"
        );
        assert_eq!(store.ztop(slot, "big", 1000).await.unwrap(), want, "{name}");
        assert_eq!(
            store.ztop(slot, "small", 10).await.unwrap().len(),
            5,
            "{name}"
        );
        assert!(
            store.ztop(slot, "missing", 10).await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(
            store
                .hgetall(slot, "h")
                .await
                .unwrap()
                .get("f")
                .map(String::as_str),
            Some("v"),
            "{name}"
        );
        // Nothing above the bound: nothing to cut.
        assert_eq!(
            store.zcap(slot, &keys, 100, 128).await.unwrap(),
            0,
            "{name}"
        );
        // A member cut and incremented again starts from its increment.
        let mut b = PartitionBatch::new("t", slot.partition);
        b.push(
            3,
            vec![Op::ZIncr {
                key: "big".into(),
                member: "m0".into(),
                delta: 1000.0,
            }],
        );
        store.apply("svc", &b).await.unwrap();
        assert_eq!(
            store.ztop(slot, "big", 1).await.unwrap(),
            vec![("m0".to_string(), 1000.0)],
            "{name}"
        );
        for (keep, above) in [(0, 10), (10, 9)] {
            let err = store.zcap(slot, &keys, keep, above).await.unwrap_err();
            assert!(
                err.to_string().contains("keep must be at least 1"),
                "{name}: {err}"
            );
        }
    }
    // The encoding Redis keeps for the cut set.
    let prefix = mesh_testkit::unique("zcap");
    let store = StateStore::Redis(
        RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let mut b = PartitionBatch::new("t", slot.partition);
    b.push(
        0,
        (0..300)
            .map(|i| zset("big", &format!("m{i}"), score(i)))
            .collect(),
    );
    store.apply("svc", &b).await.unwrap();
    let client = redis::Client::open(mesh_testkit::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let full = format!("{prefix}:{{svc.3}}:big");
    let encoding = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        let full = full.clone();
        async move {
            redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(&full)
                .query_async::<String>(&mut c)
                .await
                .unwrap()
        }
    };
    assert_eq!(encoding(&mut conn).await, "skiplist");
    store.zcap(slot, &["big"], 100, 128).await.unwrap();
    assert_eq!(encoding(&mut conn).await, "listpack");
}

/// `SCRIPT FLUSH` on every server behind `store` (each master of a cluster).
async fn flush_scripts(name: &str) {
    let urls = match name {
        "redis" => vec![mesh_testkit::redis_url()],
        _ => redis_cluster_url().split(',').map(str::to_string).collect(),
    };
    for url in urls {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

/// A server that lost its scripts (restart, failover, `SCRIPT FLUSH`) gets
/// each one loaded again by the call that needs it: the batch fold's
/// commit, the apply script and the compare-and-set all still apply, once.
#[tokio::test]
async fn scripts_a_server_lost_are_loaded_again() {
    for (name, store) in stores().await {
        if name == "memory" {
            continue;
        }
        let slot = Slot {
            scope: "svc",
            partition: 3,
        };
        let mut b = PartitionBatch::new("events", 3);
        b.push(0, vec![incr("u:a", "n", 2), hset("u:a", "s", "x")]);
        flush_scripts(name).await;
        let a = store.apply("svc", &b).await.unwrap();
        assert_eq!((a.applied, a.skipped), (1, 0), "{name}: the fold's commit");
        // A key deletion goes through the apply script.
        let mut b = PartitionBatch::new("events", 3);
        b.push(
            1,
            vec![
                Op::Del {
                    key: "u:gone".into(),
                },
                incr("u:a", "n", 3),
            ],
        );
        flush_scripts(name).await;
        let a = store.apply("svc", &b).await.unwrap();
        assert_eq!((a.applied, a.skipped), (1, 0), "{name}: the apply script");
        flush_scripts(name).await;
        assert!(
            store
                .hset_if(slot, "u:a", &[("s", Some("x"))], &[("s", "y")])
                .await
                .unwrap(),
            "{name}: the compare-and-set"
        );
        let h = store.hgetall(slot, "u:a").await.unwrap();
        assert_eq!((h["n"].as_str(), h["s"].as_str()), ("5", "y"), "{name}");
        // Redelivered: nothing changes.
        let a = store.apply("svc", &b).await.unwrap();
        assert_eq!((a.applied, a.skipped), (0, 1), "{name}");
    }
}
