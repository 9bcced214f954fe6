//! Property tests of the apply step (issue #17, item 2): for random
//! records of every op, (1) applying them once, or in pieces with
//! redeliveries of already-applied ranges in between (a restarted
//! consumer, a zombie after a rebalance), gives the same state; (2) the
//! in-memory store and a real Redis agree on that state. The ops are drawn
//! so that no op meets a value of the wrong kind (the store refuses those
//! batches; `contract.rs` tests that), over few keys and fields, so ops
//! collide often. `PROPTEST_CASES` sets the number of cases (default 48).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use mesh_store::{MemoryStore, Op, PartitionBatch, RedisStore, Slot, StateStore};
use proptest::prelude::*;

const HASHES: [&str; 2] = ["h0", "h1"];
const INT_FIELDS: [&str; 2] = ["i0", "i1"];
const ZSETS: [&str; 2] = ["z0", "z1"];
const LIST: &str = "l0";
const SEEN: &str = "seen";
const ERASED: &str = "erased";

fn op() -> impl Strategy<Value = Op> {
    let h = prop::sample::select(HASHES.to_vec()).prop_map(str::to_string);
    let f = prop::sample::select(INT_FIELDS.to_vec()).prop_map(str::to_string);
    let z = prop::sample::select(ZSETS.to_vec()).prop_map(str::to_string);
    let member = prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_string);
    let any_key = prop::sample::select(vec!["h0", "h1", "z0", "z1", LIST]).prop_map(str::to_string);
    prop_oneof![
        (h.clone(), f.clone(), -5i64..=5).prop_map(|(key, field, delta)| Op::HIncr {
            key,
            field,
            delta
        }),
        // Quarters add exactly in binary, so both backends print the same.
        (h.clone(), -8i32..=8).prop_map(|(key, q)| Op::HIncrFloat {
            key,
            field: "f".into(),
            delta: f64::from(q) * 0.25
        }),
        (h.clone(), f.clone(), 0u8..10).prop_map(|(key, field, v)| Op::HSet {
            key,
            field,
            value: v.to_string()
        }),
        (h.clone(), f.clone(), 0u8..10).prop_map(|(key, field, v)| Op::HSetNx {
            key,
            field,
            value: v.to_string()
        }),
        (h.clone(), f.clone(), -10i64..=10).prop_map(|(key, field, value)| Op::HMax {
            key,
            field,
            value
        }),
        (h.clone(), f.clone(), -10i64..=10).prop_map(|(key, field, value)| Op::HMin {
            key,
            field,
            value
        }),
        (h.clone(), f).prop_map(|(key, field)| Op::HDel { key, field }),
        (z.clone(), member.clone(), -4i32..=4).prop_map(|(key, member, q)| Op::ZIncr {
            key,
            member,
            delta: f64::from(q) * 0.5
        }),
        (z.clone(), member.clone(), -4i32..=4).prop_map(|(key, member, q)| Op::ZSet {
            key,
            member,
            score: f64::from(q)
        }),
        (z, member.clone()).prop_map(|(key, member)| Op::ZRem { key, member }),
        (member.clone(), 1u32..4).prop_map(|(value, max_len)| Op::LPushCapped {
            key: LIST.into(),
            value,
            max_len
        }),
        member.clone().prop_map(|field| Op::Once {
            key: SEEN.into(),
            field,
            ttl_ms: 600_000
        }),
        member.clone().prop_map(|field| Op::Unless {
            key: ERASED.into(),
            field
        }),
        member.prop_map(|field| Op::HSet {
            key: ERASED.into(),
            field,
            value: "1".into()
        }),
        any_key.prop_map(|key| Op::Del { key }),
    ]
}

/// Records (ops per offset), cut points splitting them into batches, and
/// a redelivered range before each batch.
type Plan = (Vec<Vec<Op>>, Vec<usize>, Vec<(usize, usize)>);

fn plan() -> impl Strategy<Value = Plan> {
    plan_of(op().boxed())
}

/// Records without `Del`: the Redis store folds these batches in memory
/// instead of handing them to the apply script (`src/fold.rs`), so this
/// strategy tests the fold against the in-memory store.
fn plan_without_del() -> impl Strategy<Value = Plan> {
    plan_of(
        op().prop_filter("no Del", |o| !matches!(o, Op::Del { .. }))
            .boxed(),
    )
}

fn plan_of(op: BoxedStrategy<Op>) -> impl Strategy<Value = Plan> {
    prop::collection::vec(prop::collection::vec(op, 0..5), 1..14).prop_flat_map(|records| {
        let n = records.len();
        (
            Just(records),
            prop::collection::vec(0..n, 0..4),
            prop::collection::vec((0..n, 0..n), 4),
        )
    })
}

fn batch(records: &[Vec<Op>], from: usize, to: usize) -> PartitionBatch {
    let mut b = PartitionBatch::new("events", 0);
    for (i, ops) in records.iter().enumerate().take(to).skip(from) {
        b.push(i as i64, ops.clone());
    }
    b
}

/// Everything the ops can touch in `scope`, with numbers printed one way
/// (backends print floats differently).
async fn dump(store: &StateStore, scope: &str) -> BTreeMap<String, String> {
    let slot = Slot {
        scope,
        partition: 0,
    };
    let num = |v: &str| match v.parse::<f64>() {
        Ok(x) => format!("{x:.4}"),
        Err(_) => v.to_string(),
    };
    let mut out = BTreeMap::new();
    for key in HASHES.iter().chain([SEEN, ERASED, "_wm"].iter()) {
        let mut h: Vec<(String, String)> = store
            .hgetall(slot, key)
            .await
            .unwrap()
            .into_iter()
            .map(|(f, v)| (f, num(&v)))
            .collect();
        h.sort();
        out.insert(key.to_string(), format!("{h:?}"));
    }
    for key in ZSETS {
        let mut z: Vec<(String, String)> = store
            .ztop(slot, key, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(m, s)| (m, format!("{s:.4}")))
            .collect();
        z.sort();
        out.insert(key.to_string(), format!("{z:?}"));
    }
    out.insert(
        LIST.into(),
        format!("{:?}", store.lrange(slot, LIST, 100).await.unwrap()),
    );
    out
}

static CASE: AtomicU64 = AtomicU64::new(0);

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn redelivery_changes_nothing_and_backends_agree((records, cuts, redeliver) in plan()) {
        check(records, cuts, redeliver, false)?;
    }

    #[test]
    fn folded_batches_agree_with_the_memory_store((records, cuts, redeliver) in plan_without_del()) {
        check(records, cuts, redeliver, true)?;
    }
}

/// The fold, not the apply script, applies a batch without `Del`, the
/// commit's checks of hash fields and sorted-set scores (present and
/// absent) pass when nothing else wrote; a batch with a `Del` goes to the
/// script.
#[tokio::test]
async fn batches_without_del_are_folded() {
    let redis = RedisStore::connect(&mesh_testkit::redis_url(), &mesh_testkit::unique("props"))
        .await
        .expect("redis")
        .with_fold(true);
    let store = StateStore::Redis(redis.clone());
    let mut b = PartitionBatch::new("events", 0);
    b.push(
        0,
        vec![
            Op::HIncr {
                key: "h0".into(),
                field: "i0".into(),
                delta: 2,
            },
            Op::ZIncr {
                key: "z0".into(),
                member: "m".into(),
                delta: 0.1,
            },
        ],
    );
    store.apply("fold", &b).await.unwrap();
    b.records[0].0 = 1; // both values now present: checked as read
    store.apply("fold", &b).await.unwrap();
    let paths = redis.apply_paths();
    assert_eq!((paths.folded, paths.scripted, paths.refolded), (2, 0, 0));
    b.records[0].1.push(Op::Del { key: "h1".into() });
    b.records[0].0 = 2;
    store.apply("fold", &b).await.unwrap();
    assert_eq!(redis.apply_paths().scripted, 1);
    let slot = Slot {
        scope: "fold",
        partition: 0,
    };
    assert_eq!(store.hgetall(slot, "h0").await.unwrap()["i0"], "6");
    let z = store.ztop(slot, "z0", 1).await.unwrap();
    assert!((z[0].1 - 0.3).abs() < 1e-9, "{z:?}");
}

/// Float increments end as the same text on both paths (Redis prints the
/// sum of `HINCRBYFLOAT`s its own way: `3`, not `3.0`), so state does not
/// depend on which path applied which batch (a replay cuts batches
/// differently from the live run).
#[tokio::test]
async fn float_fields_read_the_same_whichever_path_applied_them() {
    let prefix = mesh_testkit::unique("props");
    let url = mesh_testkit::redis_url();
    let fold = RedisStore::connect(&url, &prefix)
        .await
        .unwrap()
        .with_fold(true);
    let script = RedisStore::connect(&url, &prefix)
        .await
        .unwrap()
        .with_fold(false);
    let deltas = [1.0, 0.1, 0.2, 19.99, 5.01, -2.5, 1e-7, 3.0];
    let mut texts = Vec::new();
    for (scope, store) in [("viafold", fold), ("viascript", script)] {
        let store = StateStore::Redis(store);
        for (i, d) in deltas.iter().enumerate() {
            let mut b = PartitionBatch::new("events", 0);
            b.push(
                i as i64,
                vec![
                    Op::HIncrFloat {
                        key: "h".into(),
                        field: "f".into(),
                        delta: *d,
                    },
                    Op::HIncrFloat {
                        key: "h".into(),
                        field: "g".into(),
                        delta: 2.0,
                    },
                ],
            );
            store.apply(scope, &b).await.unwrap();
        }
        let slot = Slot {
            scope,
            partition: 0,
        };
        texts.push(store.hgetall(slot, "h").await.unwrap());
    }
    assert_eq!(texts[0], texts[1]);
    assert_eq!(texts[0]["g"], "16");
}

/// Writes from outside the consumer (a key-by-key restore, an operator's
/// fix, a compare-and-set) between the fold's read and its commit are not
/// lost: the commit checks every value it read and folds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_between_the_folds_read_and_commit_are_kept() {
    let prefix = mesh_testkit::unique("props");
    let url = mesh_testkit::redis_url();
    let redis = RedisStore::connect(&url, &prefix)
        .await
        .unwrap()
        .with_fold(true);
    let store = StateStore::Redis(redis.clone());
    let slot = Slot {
        scope: "race",
        partition: 0,
    };
    let fields = ["a", "b", "c"];
    let (batches, per, outside) = (200i64, 10i64, 3000i64);
    let key = format!("{prefix}:{{race.0}}:h");
    let writer = {
        let url = url.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            for i in 0..outside {
                let f = fields[i as usize % fields.len()];
                let _: i64 = redis::cmd("HINCRBY")
                    .arg(&key)
                    .arg(f)
                    .arg(1)
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        })
    };
    for b in 0..batches {
        let mut batch = PartitionBatch::new("events", 0);
        for r in 0..per {
            let ops = fields
                .iter()
                .map(|f| Op::HIncr {
                    key: "h".into(),
                    field: f.to_string(),
                    delta: 1000,
                })
                .collect();
            batch.push(b * per + r, ops);
        }
        store.apply("race", &batch).await.unwrap();
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let paths = redis.apply_paths();
    let h = store.hgetall(slot, "h").await.unwrap();
    let total: i64 = fields.iter().map(|f| h[*f].parse::<i64>().unwrap()).sum();
    assert_eq!(
        total,
        batches * per * 1000 * fields.len() as i64 + outside,
        "{h:?}; {paths:?}"
    );
    eprintln!("{paths:?}");
}

fn check(
    records: Vec<Vec<Op>>,
    cuts: Vec<usize>,
    redeliver: Vec<(usize, usize)>,
    fold: bool,
) -> Result<(), TestCaseError> {
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let prefix = mesh_testkit::unique("props");
            let stores = [
                StateStore::Memory(MemoryStore::new(&prefix)),
                StateStore::Redis(
                    RedisStore::connect(&mesh_testkit::redis_url(), &prefix)
                        .await
                        .expect("redis")
                        .with_fold(fold),
                ),
            ];
            let case = CASE.fetch_add(1, Ordering::Relaxed);
            let (once, pieces) = (format!("once{case}"), format!("pieces{case}"));
            let n = records.len();
            let mut bounds: Vec<usize> = cuts.iter().copied().chain([0, n]).collect();
            bounds.sort_unstable();
            bounds.dedup();
            let mut dumps = Vec::new();
            for store in &stores {
                store.apply(&once, &batch(&records, 0, n)).await.unwrap();
                for (j, w) in bounds.windows(2).enumerate() {
                    // Redeliver a range the store already applied.
                    let (a, b) = redeliver[j % redeliver.len()];
                    let (a, b) = (a.min(b).min(w[0]), a.max(b).min(w[0]));
                    if a < b {
                        let again = store.apply(&pieces, &batch(&records, a, b)).await.unwrap();
                        prop_assert_eq!(again.applied, 0);
                    }
                    store
                        .apply(&pieces, &batch(&records, w[0], w[1]))
                        .await
                        .unwrap();
                }
                // And everything again at the end.
                store.apply(&pieces, &batch(&records, 0, n)).await.unwrap();
                let (x, y) = (dump(store, &once).await, dump(store, &pieces).await);
                prop_assert_eq!(&x, &y, "pieces with redeliveries differ from one batch");
                dumps.push(x);
            }
            prop_assert_eq!(&dumps[0], &dumps[1], "memory and Redis differ");
            Ok(())
        })?;
    }
    Ok(())
}
