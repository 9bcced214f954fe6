//! One contract, two implementations: every test here runs against the
//! in-memory store and against a real Redis server.
use mesh_store::{Claim, IdLedger, MemoryStore, Op, PartitionBatch, RedisStore, Slot, StateStore};
use std::time::Duration;

async fn stores() -> Vec<(&'static str, StateStore)> {
    let prefix = mesh_testkit::unique("store");
    let redis = RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
        .await
        .expect("redis");
    vec![
        ("memory", StateStore::Memory(MemoryStore::new(&prefix))),
        ("redis", StateStore::Redis(redis)),
    ]
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
        assert!(store.clear_scope("a").await.unwrap() >= 2, "{name}");
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
async fn unordered_batches_are_refused() {
    for (name, store) in stores().await {
        let mut b = PartitionBatch::new("t", 0);
        b.push(5, vec![]);
        b.push(4, vec![]);
        assert!(store.apply("s", &b).await.is_err(), "{name}");
    }
}

#[tokio::test]
async fn ledger_claims_once_and_releases() {
    let prefix = mesh_testkit::unique("ledger");
    let client = redis::Client::open(mesh_testkit::redis_url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let ttl = (Duration::from_secs(30), Duration::from_secs(300));
    for ledger in [
        IdLedger::memory(ttl.0, ttl.1),
        IdLedger::redis(conn, &prefix, ttl.0, ttl.1),
    ] {
        let ids: Vec<String> = vec!["a".into(), "b".into()];
        assert_eq!(
            ledger.claim(&ids).await.unwrap(),
            vec![Claim::New, Claim::New]
        );
        assert_eq!(
            ledger.claim(&ids).await.unwrap(),
            vec![Claim::Pending, Claim::Pending]
        );
        ledger.mark_done(&ids[..1]).await.unwrap();
        ledger.release(&ids[1..]).await.unwrap();
        assert_eq!(
            ledger.claim(&ids).await.unwrap(),
            vec![Claim::Done, Claim::New]
        );
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
    use mesh_store::{HashRead, HashReply};
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
