//! Hostile requests to every service's gRPC API (issue #17): each is
//! refused with INVALID_ARGUMENT (or NOT_FOUND when well-formed but naming
//! nothing) and a message that names the field; an over-size request gets a
//! prompt error; afterwards every service still answers a good request.
//!
//! Every case is run and the failures are collected, so one run lists all
//! of them.
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use mesh_e2e::{config, events, publish_grpc, start, Servers};
use mesh_proto::catalog::v1 as cpb;
use mesh_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use mesh_proto::churn::v1 as chpb;
use mesh_proto::churn::v1::churn_service_client::ChurnServiceClient;
use mesh_proto::engage::v1 as epb;
use mesh_proto::engage::v1::engage_service_client::EngageServiceClient;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_proto::fraud::v1 as fpb;
use mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient;
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::logistics::v1 as lpb;
use mesh_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use mesh_proto::profile::v1 as ppb;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_proto::recommend::v1 as rpb;
use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
use mesh_proto::support::v1 as spb;
use mesh_proto::support::v1::support_service_client::SupportServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

/// Longest any one call may take before it counts as a hang.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
const T: &str = "bad-rpc";

fn big(n: usize) -> String {
    "x".repeat(n)
}

/// 100 KB: over every id and text limit.
fn oversize() -> String {
    big(100 << 10)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const FAR_FUTURE_MS: i64 = 4_102_444_800_000; // 2100-01-01

/// Runs the cases and collects what went wrong.
#[derive(Default)]
struct Cases {
    failures: Vec<String>,
    run: usize,
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

impl Cases {
    async fn call<T: Debug>(
        &mut self,
        what: &str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Option<Result<T, Status>> {
        self.run += 1;
        let t = Instant::now();
        match tokio::time::timeout(CALL_DEADLINE, call).await {
            Ok(r) => Some(r.map(Response::into_inner)),
            Err(_) => {
                self.failures
                    .push(format!("{what}: no answer in {:?} (hang)", t.elapsed()));
                None
            }
        }
    }

    /// Expects `code` and a message naming `field`.
    async fn refused<T: Debug>(
        &mut self,
        what: &str,
        code: Code,
        field: &str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) {
        match self.call(what, call).await {
            None => {}
            Some(Ok(v)) => self.failures.push(format!(
                "{what}: accepted, expected {code:?} naming {field:?}: {}",
                short(&format!("{v:?}"))
            )),
            Some(Err(s)) if s.code() != code || !s.message().contains(field) => {
                self.failures.push(format!(
                    "{what}: got {:?} {:?}, expected {code:?} naming {field:?}",
                    s.code(),
                    short(s.message())
                ))
            }
            Some(Err(_)) => {}
        }
    }

    async fn invalid<T: Debug>(
        &mut self,
        what: &str,
        field: &str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) {
        self.refused(what, Code::InvalidArgument, field, call).await
    }

    /// Expects an answer (a clamped or defaulted request is not an error).
    async fn answered<T: Debug>(
        &mut self,
        what: &str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Option<T> {
        match self.call(what, call).await? {
            Ok(v) => Some(v),
            Err(s) => {
                self.failures.push(format!(
                    "{what}: {:?} {:?}, expected an answer",
                    s.code(),
                    short(s.message())
                ));
                None
            }
        }
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn an_order(evs: &[Envelope]) -> Envelope {
    evs.iter()
        .find(|e| matches!(e.body, Some(Body::OrderPlaced(_))))
        .expect("the generator places orders")
        .clone()
}

fn with_order(
    env: &Envelope,
    f: impl FnOnce(&mut mesh_proto::events::v1::OrderPlaced),
) -> fpb::ScoreOrderRequest {
    let mut env = env.clone();
    if let Some(Body::OrderPlaced(o)) = &mut env.body {
        f(o);
    }
    fpb::ScoreOrderRequest {
        envelope: Some(env),
    }
}

fn score(env: Envelope) -> fpb::ScoreOrderRequest {
    fpb::ScoreOrderRequest {
        envelope: Some(env),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_refuses_hostile_input_and_names_the_field() {
    let _e2e = mesh_e2e::shared().await;
    let started = Instant::now();
    let cfg = config(Servers::Real, "badrpc");
    let (mesh, shutdown) = start(&cfg).await;

    // A few real users, so the final good requests find something.
    let evs = events(T, 3, 60);
    publish_grpc(&mesh, &evs, 60).await;
    let order = an_order(&evs);
    let (tenant, user) = (order.tenant_id.clone(), order.user_id.clone());

    let mut profile = ProfileServiceClient::new(channel(mesh.profile.grpc_addr).await);
    let mut churn = ChurnServiceClient::new(channel(mesh.churn.grpc_addr).await);
    let mut fraud = FraudServiceClient::new(channel(mesh.fraud.grpc_addr).await);
    let mut ingest = IngestServiceClient::new(channel(mesh.ingest.grpc_addr).await);
    let mut recommend = RecommendServiceClient::new(channel(mesh.recommend.grpc_addr).await);
    let mut engage = EngageServiceClient::new(channel(mesh.engage.grpc_addr).await);
    let mut support = SupportServiceClient::new(channel(mesh.support.grpc_addr).await);
    let mut catalog = CatalogServiceClient::new(channel(mesh.support.grpc_addr).await);
    let mut logistics = LogisticsServiceClient::new(channel(mesh.logistics.grpc_addr).await);
    let mut c = Cases::default();
    let huge = oversize();

    // ---- profile
    let gp = |t: &str, u: &str| ppb::GetProfileRequest {
        tenant_id: t.into(),
        user_id: u.into(),
    };
    c.invalid(
        "GetProfile tenant_id empty",
        "tenant_id",
        profile.get_profile(gp("", "u")),
    )
    .await;
    c.invalid(
        "GetProfile user_id empty",
        "user_id",
        profile.get_profile(gp(T, "")),
    )
    .await;
    c.invalid(
        "GetProfile user_id 100 KB",
        "user_id",
        profile.get_profile(gp(T, &huge)),
    )
    .await;
    c.refused(
        "GetProfile unknown user",
        Code::NotFound,
        "nobody",
        profile.get_profile(gp(T, "nobody")),
    )
    .await;
    c.invalid(
        "BatchGetProfiles 501 users",
        "users",
        profile.batch_get_profiles(ppb::BatchGetProfilesRequest {
            tenant_id: String::new(),
            users: vec![gp(T, "u"); 501],
        }),
    )
    .await;
    c.invalid(
        "BatchGetProfiles empty user_id",
        "users[1].user_id",
        profile.batch_get_profiles(ppb::BatchGetProfilesRequest {
            tenant_id: String::new(),
            users: vec![gp(T, "u"), gp(T, "")],
        }),
    )
    .await;
    c.invalid(
        "BatchGetProfiles user_id 100 KB",
        "users[0].user_id",
        profile.batch_get_profiles(ppb::BatchGetProfilesRequest {
            tenant_id: String::new(),
            users: vec![gp(T, &huge)],
        }),
    )
    .await;
    let lu = |filter, page_size| ppb::ListUsersRequest {
        tenant_id: T.into(),
        filter,
        page_size,
        page_token: String::new(),
    };
    use ppb::list_users_request::Filter;
    c.invalid(
        "ListUsers stage 999",
        "stage",
        profile.list_users(lu(Some(Filter::Stage(999)), 10)),
    )
    .await;
    c.invalid(
        "ListUsers no filter",
        "filter",
        profile.list_users(lu(None, 10)),
    )
    .await;
    c.invalid(
        "ListUsers page_size u32::MAX",
        "page_size",
        profile.list_users(lu(Some(Filter::Tag("vip".into())), u32::MAX)),
    )
    .await;
    c.invalid(
        "ListUsers tenant_id empty",
        "tenant_id",
        profile.list_users(ppb::ListUsersRequest {
            filter: Some(Filter::Segment(1)),
            ..Default::default()
        }),
    )
    .await;
    let funnel = |from: &str, to: &str, by: &str| ppb::GetFunnelRequest {
        tenant_id: T.into(),
        from_date: from.into(),
        to_date: to.into(),
        group_by: by.into(),
    };
    c.invalid(
        "GetFunnel from_date junk",
        "from_date",
        profile.get_funnel(funnel("yesterday", "", "")),
    )
    .await;
    c.invalid(
        "GetFunnel to_date 9999-99-99",
        "to_date",
        profile.get_funnel(funnel("", "9999-99-99", "")),
    )
    .await;
    c.invalid(
        "GetFunnel 100 years",
        "from_date",
        profile.get_funnel(funnel("1990-01-01", "2090-01-01", "")),
    )
    .await;
    c.invalid(
        "GetFunnel group_by junk",
        "group_by",
        profile.get_funnel(funnel("", "", "planet")),
    )
    .await;
    c.invalid(
        "GetActivity tenant_id empty",
        "tenant_id",
        profile.get_activity(ppb::GetActivityRequest::default()),
    )
    .await;
    c.invalid(
        "GetCohorts tenant_id empty",
        "tenant_id",
        profile.get_cohorts(ppb::GetCohortsRequest::default()),
    )
    .await;

    // ---- churn
    let risk = |u: &str, weeks: f64| chpb::GetChurnRiskRequest {
        tenant_id: T.into(),
        user_id: u.into(),
        weeks,
    };
    c.invalid(
        "GetChurnRisk user_id empty",
        "user_id",
        churn.get_churn_risk(risk("", 4.0)),
    )
    .await;
    c.invalid(
        "GetChurnRisk user_id 100 KB",
        "user_id",
        churn.get_churn_risk(risk(&huge, 4.0)),
    )
    .await;
    for w in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
        c.invalid(
            &format!("GetChurnRisk weeks {w}"),
            "weeks",
            churn.get_churn_risk(risk("u", w)),
        )
        .await;
    }
    c.refused(
        "GetChurnRisk unknown user",
        Code::NotFound,
        "nobody",
        churn.get_churn_risk(risk("nobody", 4.0)),
    )
    .await;
    for th in [f64::NAN, f64::INFINITY, -0.5, 1.5] {
        c.invalid(
            &format!("ListAtRisk threshold {th}"),
            "threshold",
            churn.list_at_risk(chpb::ListAtRiskRequest {
                threshold: th,
                ..Default::default()
            }),
        )
        .await;
    }
    c.invalid(
        "ListAtRisk page_token junk",
        "page_token",
        churn.list_at_risk(chpb::ListAtRiskRequest {
            page_token: "zz:top".into(),
            ..Default::default()
        }),
    )
    .await;
    // A huge page size is clamped (documented), not refused.
    if let Some(r) = c
        .answered(
            "ListAtRisk page_size u32::MAX",
            churn.list_at_risk(chpb::ListAtRiskRequest {
                page_size: u32::MAX,
                ..Default::default()
            }),
        )
        .await
    {
        assert!(r.users.len() <= 1000);
    }
    for conf in [f64::NAN, f64::INFINITY, -0.5, 1.0, 1.5] {
        c.invalid(
            &format!("RetentionReport confidence {conf}"),
            "confidence",
            churn.retention_report(chpb::RetentionReportRequest {
                tenant_id: String::new(),
                confidence: conf,
                method: String::new(),
            }),
        )
        .await;
    }
    c.invalid(
        "RetentionReport method junk",
        "method",
        churn.retention_report(chpb::RetentionReportRequest {
            tenant_id: String::new(),
            confidence: 0.9,
            method: "bayes".into(),
        }),
    )
    .await;

    // ---- fraud
    c.invalid(
        "ScoreOrder no envelope",
        "envelope",
        fraud.score_order(fpb::ScoreOrderRequest { envelope: None }),
    )
    .await;
    for (what, field, req) in [
        (
            "total NaN",
            "total",
            with_order(&order, |o| o.total = f64::NAN),
        ),
        (
            "total +inf",
            "total",
            with_order(&order, |o| o.total = f64::INFINITY),
        ),
        (
            "total -inf",
            "total",
            with_order(&order, |o| o.total = f64::NEG_INFINITY),
        ),
        ("total -5", "total", with_order(&order, |o| o.total = -5.0)),
        (
            "unit_price NaN",
            "items[0].unit_price",
            with_order(&order, |o| o.items[0].unit_price = f64::NAN),
        ),
        (
            "unit_price -1",
            "items[0].unit_price",
            with_order(&order, |o| o.items[0].unit_price = -1.0),
        ),
        (
            "quantity 0",
            "items[0].quantity",
            with_order(&order, |o| o.items[0].quantity = 0),
        ),
        (
            "ship_to.lat NaN",
            "ship_to.lat",
            with_order(&order, |o| {
                if let Some(s) = &mut o.ship_to {
                    s.lat = f64::NAN
                }
            }),
        ),
        (
            "order_id empty",
            "order_id",
            with_order(&order, |o| o.order_id.clear()),
        ),
        (
            "user_id empty",
            "user_id",
            score(Envelope {
                user_id: String::new(),
                ..order.clone()
            }),
        ),
        (
            "user_id 100 KB",
            "user_id",
            score(Envelope {
                user_id: huge.clone(),
                ..order.clone()
            }),
        ),
        (
            "occurred_at_ms negative",
            "occurred_at_ms",
            score(Envelope {
                occurred_at_ms: -1,
                ..order.clone()
            }),
        ),
        (
            "occurred_at_ms 2100",
            "occurred_at_ms",
            score(Envelope {
                occurred_at_ms: FAR_FUTURE_MS,
                ..order.clone()
            }),
        ),
        (
            "occurred_at_ms i64::MAX",
            "occurred_at_ms",
            score(Envelope {
                occurred_at_ms: i64::MAX,
                ..order.clone()
            }),
        ),
        (
            "not an order",
            "order_placed",
            score(Envelope {
                body: None,
                ..order.clone()
            }),
        ),
    ] {
        c.invalid(&format!("ScoreOrder {what}"), field, fraud.score_order(req))
            .await;
    }
    c.invalid(
        "GetDecision order_id empty",
        "order_id",
        fraud.get_decision(fpb::GetDecisionRequest {
            tenant_id: T.into(),
            user_id: "u".into(),
            order_id: String::new(),
        }),
    )
    .await;
    let resolve = |order_id: &str, label: i32, reviewer: &str| fpb::ResolveReviewRequest {
        tenant_id: String::new(),
        order_id: order_id.into(),
        label,
        reviewer: reviewer.into(),
    };
    c.invalid(
        "ResolveReview label 999",
        "label",
        fraud.resolve_review(resolve("o-1", 999, "ann")),
    )
    .await;
    c.invalid(
        "ResolveReview label unspecified",
        "label",
        fraud.resolve_review(resolve("o-1", 0, "ann")),
    )
    .await;
    c.invalid(
        "ResolveReview order_id empty",
        "order_id",
        fraud.resolve_review(resolve("", fpb::Label::Fraud as i32, "ann")),
    )
    .await;
    c.invalid(
        "ResolveReview reviewer 100 KB",
        "reviewer",
        fraud.resolve_review(resolve("o-1", fpb::Label::Fraud as i32, &huge)),
    )
    .await;
    c.invalid(
        "ResolveReview order_id 100 KB",
        "order_id",
        fraud.resolve_review(resolve(&huge, fpb::Label::Fraud as i32, "ann")),
    )
    .await;
    c.refused(
        "ResolveReview unknown order",
        Code::NotFound,
        "o-none",
        fraud.resolve_review(resolve("o-none", fpb::Label::Legit as i32, "ann")),
    )
    .await;
    c.invalid(
        "GetReviewQueue page_token junk",
        "page_token",
        fraud.get_review_queue(fpb::GetReviewQueueRequest {
            tenant_id: String::new(),
            page_size: 10,
            page_token: "\u{0}junk".into(),
        }),
    )
    .await;
    c.invalid(
        "ListLabels page_token junk",
        "page_token",
        fraud.list_labels(fpb::ListLabelsRequest {
            tenant_id: String::new(),
            page_size: 10,
            page_token: "\u{0}junk".into(),
        }),
    )
    .await;
    for ps in [0, u32::MAX] {
        c.answered(
            &format!("GetReviewQueue page_size {ps} (clamped)"),
            fraud.get_review_queue(fpb::GetReviewQueueRequest {
                tenant_id: String::new(),
                page_size: ps,
                page_token: String::new(),
            }),
        )
        .await;
    }

    // ---- ingest: a batch answers per event, naming each bad field.
    let base = evs[0].clone();
    let bad_events: Vec<(Envelope, &str)> = vec![
        (
            Envelope {
                event_id: String::new(),
                ..base.clone()
            },
            "event_id",
        ),
        (
            Envelope {
                event_id: "e-bad-user".into(),
                user_id: huge.clone(),
                ..base.clone()
            },
            "user_id",
        ),
        (
            Envelope {
                event_id: "e-bad-neg-time".into(),
                occurred_at_ms: -1,
                ..base.clone()
            },
            "occurred_at_ms",
        ),
        (
            Envelope {
                event_id: "e-bad-future".into(),
                occurred_at_ms: FAR_FUTURE_MS,
                ..base.clone()
            },
            "occurred_at_ms",
        ),
        (
            Envelope {
                event_id: "e-bad-max-time".into(),
                occurred_at_ms: i64::MAX,
                ..base.clone()
            },
            "occurred_at_ms",
        ),
        (
            Envelope {
                event_id: "e-bad-body".into(),
                body: None,
                ..base.clone()
            },
            "body",
        ),
    ];
    let mut bad_orders = Vec::new();
    for (i, (what, v)) in [
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("ninf", f64::NEG_INFINITY),
        ("neg", -3.0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = order.clone();
        e.event_id = format!("e-bad-total-{what}");
        if let Some(Body::OrderPlaced(o)) = &mut e.body {
            o.total = v;
        }
        bad_orders.push((e, "order_placed.total"));
        let mut e = order.clone();
        e.event_id = format!("e-bad-price-{i}");
        if let Some(Body::OrderPlaced(o)) = &mut e.body {
            o.items[0].unit_price = v;
        }
        bad_orders.push((e, "order_placed.items[0].unit_price"));
    }
    let all: Vec<(Envelope, &str)> = bad_events.into_iter().chain(bad_orders).collect();
    if let Some(r) = c
        .answered(
            "Publish hostile batch",
            ingest.publish(PublishRequest {
                events: all.iter().map(|(e, _)| e.clone()).collect(),
            }),
        )
        .await
    {
        if r.accepted != 0 {
            c.failures
                .push(format!("Publish hostile batch: {} accepted", r.accepted));
        }
        for (i, (_, field)) in all.iter().enumerate() {
            match r.rejected.iter().find(|x| x.index == i as u32) {
                Some(x) if x.field.starts_with(field) => {}
                other => c.failures.push(format!(
                    "Publish event {i}: expected rejection naming {field:?}, got {:?}",
                    other.map(|x| (&x.field, short(&x.reason)))
                )),
            }
        }
    }

    // ---- recommend
    let rec = |u: &str, n: u32| rpb::RecommendRequest {
        tenant_id: T.into(),
        user_id: u.into(),
        n,
        ..Default::default()
    };
    c.invalid(
        "Recommend user_id empty",
        "user_id",
        recommend.recommend(rec("", 5)),
    )
    .await;
    c.invalid(
        "Recommend user_id 100 KB",
        "user_id",
        recommend.recommend(rec(&huge, 5)),
    )
    .await;
    c.invalid("Recommend n 999", "n", recommend.recommend(rec("u", 999)))
        .await;
    c.invalid(
        "SimilarItems item_id empty",
        "item_id",
        recommend.similar_items(rpb::SimilarItemsRequest {
            tenant_id: T.into(),
            item_id: String::new(),
            n: 5,
        }),
    )
    .await;
    c.invalid(
        "SimilarItems item_id 100 KB",
        "item_id",
        recommend.similar_items(rpb::SimilarItemsRequest {
            tenant_id: T.into(),
            item_id: huge.clone(),
            n: 5,
        }),
    )
    .await;
    c.invalid(
        "Trending n u32::MAX",
        "n",
        recommend.trending(rpb::TrendingRequest {
            tenant_id: T.into(),
            category: String::new(),
            n: u32::MAX,
        }),
    )
    .await;
    let rank = |candidates: Vec<String>| rpb::RankItemsRequest {
        tenant_id: T.into(),
        user_id: "u".into(),
        candidates,
        ..Default::default()
    };
    c.invalid(
        "RankItems no candidates",
        "candidates",
        recommend.rank_items(rank(vec![])),
    )
    .await;
    c.invalid(
        "RankItems 501 candidates",
        "candidates",
        recommend.rank_items(rank(vec!["s".into(); 501])),
    )
    .await;
    c.invalid(
        "RankItems empty candidate",
        "candidates[1]",
        recommend.rank_items(rank(vec!["s".into(), String::new()])),
    )
    .await;
    c.invalid(
        "RankItems candidate 100 KB",
        "candidates[0]",
        recommend.rank_items(rank(vec![huge.clone()])),
    )
    .await;
    let item = rpb::CatalogItem {
        item_id: "sku-1".into(),
        category: "c".into(),
        price: 10.0,
        rating: 4.0,
        margin: 0.2,
        listed_at_ms: now_ms() - 86_400_000,
        ..Default::default()
    };
    let upsert = |f: &dyn Fn(&mut rpb::CatalogItem)| {
        let mut i = item.clone();
        f(&mut i);
        rpb::UpsertItemsRequest {
            tenant_id: T.into(),
            items: vec![i],
        }
    };
    for (what, field, req) in [
        (
            "price NaN",
            "items[0].price",
            upsert(&|i| i.price = f64::NAN),
        ),
        (
            "price +inf",
            "items[0].price",
            upsert(&|i| i.price = f64::INFINITY),
        ),
        (
            "price -inf",
            "items[0].price",
            upsert(&|i| i.price = f64::NEG_INFINITY),
        ),
        ("price -1", "items[0].price", upsert(&|i| i.price = -1.0)),
        (
            "sales NaN",
            "items[0].sales",
            upsert(&|i| i.sales = f64::NAN),
        ),
        ("rating 6", "items[0].rating", upsert(&|i| i.rating = 6.0)),
        (
            "margin -inf",
            "items[0].margin",
            upsert(&|i| i.margin = f64::NEG_INFINITY),
        ),
        (
            "item_id empty",
            "items[0].item_id",
            upsert(&|i| i.item_id.clear()),
        ),
        (
            "item_id 100 KB",
            "items[0].item_id",
            upsert(&|i| i.item_id = oversize()),
        ),
        (
            "listed_at_ms negative",
            "items[0].listed_at_ms",
            upsert(&|i| i.listed_at_ms = -1),
        ),
        (
            "listed_at_ms 2100",
            "items[0].listed_at_ms",
            upsert(&|i| i.listed_at_ms = FAR_FUTURE_MS),
        ),
    ] {
        c.invalid(
            &format!("UpsertItems {what}"),
            field,
            recommend.upsert_items(req),
        )
        .await;
    }
    c.invalid(
        "UpsertItems none",
        "items",
        recommend.upsert_items(rpb::UpsertItemsRequest {
            tenant_id: T.into(),
            items: vec![],
        }),
    )
    .await;
    c.invalid(
        "GetFeedbackStats tenant_id empty",
        "tenant_id",
        recommend.get_feedback_stats(rpb::FeedbackStatsRequest::default()),
    )
    .await;

    // ---- engage
    let price = |sku: &str| epb::GetPriceRequest {
        tenant_id: T.into(),
        sku: sku.into(),
    };
    c.invalid("GetPrice sku empty", "sku", engage.get_price(price("")))
        .await;
    c.invalid("GetPrice sku 100 KB", "sku", engage.get_price(price(&huge)))
        .await;
    c.invalid(
        "ExplainPrice sku 100 KB",
        "sku",
        engage.explain_price(price(&huge)),
    )
    .await;
    let bounds = epb::SetPriceBoundsRequest {
        tenant_id: T.into(),
        sku: "sku-1".into(),
        ..Default::default()
    };
    for (field, v) in [
        ("floor", f64::NAN),
        ("ceiling", f64::INFINITY),
        ("unit_cost", f64::NEG_INFINITY),
        ("floor", -1.0),
        ("max_change_per_day", 5.0),
        ("min_margin", f64::NAN),
    ] {
        let mut r = bounds.clone();
        match field {
            "floor" => r.floor = v,
            "ceiling" => r.ceiling = v,
            "unit_cost" => r.unit_cost = v,
            "max_change_per_day" => r.max_change_per_day = v,
            _ => r.min_margin = v,
        }
        c.invalid(
            &format!("SetPriceBounds {field} {v}"),
            field,
            engage.set_price_bounds(r),
        )
        .await;
    }
    c.invalid(
        "SetPriceBounds objective junk",
        "objective",
        engage.set_price_bounds(epb::SetPriceBoundsRequest {
            objective: "world domination".into(),
            ..bounds.clone()
        }),
    )
    .await;
    c.invalid(
        "SetPriceBounds sku 100 KB",
        "sku",
        engage.set_price_bounds(epb::SetPriceBoundsRequest {
            sku: huge.clone(),
            ..bounds.clone()
        }),
    )
    .await;
    let campaign = epb::Campaign {
        tenant_id: T.into(),
        campaign_id: "c-bad".into(),
        offers: vec!["ten-off".into(), "free-ship".into()],
        ..Default::default()
    };
    let camp = |f: &dyn Fn(&mut epb::Campaign)| {
        let mut x = campaign.clone();
        f(&mut x);
        x
    };
    for (what, field, req) in [
        (
            "campaign_id empty",
            "campaign_id",
            camp(&|x| x.campaign_id.clear()),
        ),
        (
            "campaign_id 100 KB",
            "campaign_id",
            camp(&|x| x.campaign_id = oversize()),
        ),
        ("no offers", "offers", camp(&|x| x.offers.clear())),
        (
            "control_share NaN",
            "control_share",
            camp(&|x| x.control_share = f64::NAN),
        ),
        (
            "control_share 2",
            "control_share",
            camp(&|x| x.control_share = 2.0),
        ),
        (
            "cap_window_hours inf",
            "cap_window_hours",
            camp(&|x| x.cap_window_hours = f64::INFINITY),
        ),
        (
            "attribution_days -1",
            "attribution_days",
            camp(&|x| x.attribution_days = -1.0),
        ),
        (
            "audience.min_spend NaN",
            "audience.min_spend",
            camp(&|x| {
                x.audience = Some(epb::AudienceRule {
                    min_spend: f64::NAN,
                    ..Default::default()
                })
            }),
        ),
        (
            "audience.min_churn_risk NaN",
            "audience.min_churn_risk",
            camp(&|x| {
                x.audience = Some(epb::AudienceRule {
                    min_churn_risk: f64::NAN,
                    ..Default::default()
                })
            }),
        ),
        (
            "created_at_ms negative",
            "created_at_ms",
            camp(&|x| x.created_at_ms = -5),
        ),
        (
            "created_at_ms 2100",
            "created_at_ms",
            camp(&|x| x.created_at_ms = FAR_FUTURE_MS),
        ),
    ] {
        c.invalid(
            &format!("CreateCampaign {what}"),
            field,
            engage.create_campaign(req),
        )
        .await;
    }
    let offer = |campaign: &str, user: &str| epb::ChooseOfferRequest {
        tenant_id: T.into(),
        campaign_id: campaign.into(),
        user_id: user.into(),
    };
    c.invalid(
        "ChooseOffer user_id empty",
        "user_id",
        engage.choose_offer(offer("c-bad", "")),
    )
    .await;
    c.invalid(
        "ChooseOffer user_id 100 KB",
        "user_id",
        engage.choose_offer(offer("c-bad", &huge)),
    )
    .await;
    c.refused(
        "ChooseOffer unknown campaign",
        Code::NotFound,
        "c-none",
        engage.choose_offer(offer("c-none", "u")),
    )
    .await;
    let resp = |kind: &str, revenue: f64| epb::RecordResponseRequest {
        tenant_id: T.into(),
        offer_id: "o-1".into(),
        kind: kind.into(),
        revenue,
    };
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
        c.invalid(
            &format!("RecordResponse revenue {v}"),
            "revenue",
            engage.record_response(resp("conversion", v)),
        )
        .await;
    }
    c.invalid(
        "RecordResponse offer_id 100 KB",
        "offer_id",
        engage.record_response(epb::RecordResponseRequest {
            offer_id: huge.clone(),
            ..resp("conversion", 1.0)
        }),
    )
    .await;
    c.refused(
        "CampaignReport unknown campaign",
        Code::NotFound,
        "c-none",
        engage.campaign_report(epb::CampaignReportRequest {
            tenant_id: T.into(),
            campaign_id: "c-none".into(),
        }),
    )
    .await;
    c.invalid(
        "CampaignReport campaign_id empty",
        "campaign_id",
        engage.campaign_report(epb::CampaignReportRequest {
            tenant_id: T.into(),
            campaign_id: String::new(),
        }),
    )
    .await;
    c.invalid(
        "BuildAudience size u32::MAX",
        "size",
        engage.build_audience(epb::BuildAudienceRequest {
            tenant_id: T.into(),
            seed_segment: "vip".into(),
            seeds: 10,
            size: u32::MAX,
        }),
    )
    .await;
    c.invalid(
        "ScoreCreatives placement 100 KB",
        "placement",
        engage.score_creatives(epb::ScoreCreativesRequest {
            tenant_id: T.into(),
            user_id: "u".into(),
            creative_ids: vec!["cr-1".into()],
            placement: huge.clone(),
        }),
    )
    .await;
    c.invalid(
        "ScoreCreatives user_id 100 KB",
        "user_id",
        engage.score_creatives(epb::ScoreCreativesRequest {
            tenant_id: T.into(),
            user_id: huge.clone(),
            creative_ids: vec!["cr-1".into()],
            placement: String::new(),
        }),
    )
    .await;
    for (field, budget, min_share) in [
        ("total_budget", f64::NAN, 0.0),
        ("total_budget", f64::INFINITY, 0.0),
        ("total_budget", -10.0, 0.0),
        ("min_share", 100.0, f64::NAN),
    ] {
        c.invalid(
            &format!("AllocateBudget {field} {budget}/{min_share}"),
            field,
            engage.allocate_budget(epb::AllocateBudgetRequest {
                tenant_id: T.into(),
                campaign_ids: vec!["c-a".into(), "c-b".into()],
                total_budget: budget,
                min_share,
            }),
        )
        .await;
    }
    for (field, spend, revenue) in [
        ("spend", f64::NAN, 1.0),
        ("spend", -1.0, 1.0),
        ("revenue", 1.0, f64::INFINITY),
        ("revenue", 1.0, f64::NEG_INFINITY),
    ] {
        c.invalid(
            &format!("ReportAdSpend {field} {spend}/{revenue}"),
            field,
            engage.report_ad_spend(epb::ReportAdSpendRequest {
                tenant_id: T.into(),
                report_id: "r-1".into(),
                campaign_id: "c-a".into(),
                spend,
                revenue,
            }),
        )
        .await;
    }
    c.invalid(
        "RecordAdDeliveries clicks over impressions",
        "clicks",
        engage.record_ad_deliveries(epb::RecordAdDeliveriesRequest {
            tenant_id: T.into(),
            report_id: "d-1".into(),
            deliveries: vec![epb::AdDelivery {
                creative_id: "cr-1".into(),
                impressions: 1,
                clicks: u64::MAX,
                ..Default::default()
            }],
        }),
    )
    .await;

    // ---- support and catalog
    c.invalid(
        "AnalyzeFeedback text empty",
        "text",
        support.analyze_feedback(spb::AnalyzeFeedbackRequest {
            tenant_id: T.into(),
            text: String::new(),
        }),
    )
    .await;
    c.invalid(
        "AnalyzeFeedback text 1 MB",
        "text",
        support.analyze_feedback(spb::AnalyzeFeedbackRequest {
            tenant_id: T.into(),
            text: big(1 << 20),
        }),
    )
    .await;
    c.invalid(
        "FeedbackTrends days u32::MAX",
        "days",
        support.feedback_trends(spb::FeedbackTrendsRequest {
            tenant_id: T.into(),
            subject: "delivery".into(),
            days: u32::MAX,
        }),
    )
    .await;
    let conv = |user: &str, conversation: &str, text: &str| spb::ConverseRequest {
        tenant_id: T.into(),
        user_id: user.into(),
        conversation_id: conversation.into(),
        text: text.into(),
    };
    c.invalid(
        "Converse text empty",
        "text",
        support.converse(conv("u", "", "")),
    )
    .await;
    c.invalid(
        "Converse user_id empty",
        "user_id",
        support.converse(conv("", "", "hi")),
    )
    .await;
    c.invalid(
        "Converse user_id 100 KB",
        "user_id",
        support.converse(conv(&huge, "", "hi")),
    )
    .await;
    c.invalid(
        "Converse conversation_id 100 KB",
        "conversation_id",
        support.converse(conv("u", &huge, "hi")),
    )
    .await;
    c.invalid(
        "Converse text 1 MB",
        "text",
        support.converse(conv("u", "", &big(1 << 20))),
    )
    .await;
    // Support's list sizes are documented as clamped, not refused.
    if let Some(r) = c
        .answered(
            "ListHandoffs page_size u32::MAX (clamped)",
            support.list_handoffs(spb::ListHandoffsRequest {
                tenant_id: T.into(),
                page_size: u32::MAX,
            }),
        )
        .await
    {
        assert!(r.handoffs.len() <= 500);
    }
    let product = cpb::Product {
        tenant_id: T.into(),
        sku: "sku-1".into(),
        title: "Blue kettle".into(),
        price: 20.0,
        in_stock: true,
        ..Default::default()
    };
    for (what, field, p) in [
        (
            "price NaN",
            "products[0].price",
            cpb::Product {
                price: f64::NAN,
                ..product.clone()
            },
        ),
        (
            "price +inf",
            "products[0].price",
            cpb::Product {
                price: f64::INFINITY,
                ..product.clone()
            },
        ),
        (
            "price -1",
            "products[0].price",
            cpb::Product {
                price: -1.0,
                ..product.clone()
            },
        ),
        (
            "sku empty",
            "products[0].sku",
            cpb::Product {
                sku: String::new(),
                ..product.clone()
            },
        ),
        (
            "sku 100 KB",
            "products[0].sku",
            cpb::Product {
                sku: oversize(),
                ..product.clone()
            },
        ),
    ] {
        c.invalid(
            &format!("UpsertProducts {what}"),
            field,
            catalog.upsert_products(cpb::UpsertProductsRequest {
                tenant_id: String::new(),
                products: vec![p],
            }),
        )
        .await;
    }
    let search = |f: &dyn Fn(&mut cpb::SearchRequest)| {
        let mut s = cpb::SearchRequest {
            tenant_id: T.into(),
            query: "kettle".into(),
            ..Default::default()
        };
        f(&mut s);
        s
    };
    for (what, field, req) in [
        (
            "min_price NaN",
            "min_price",
            search(&|s| s.min_price = f64::NAN),
        ),
        (
            "max_price -inf",
            "max_price",
            search(&|s| s.max_price = f64::NEG_INFINITY),
        ),
        ("min_price -1", "min_price", search(&|s| s.min_price = -1.0)),
        ("limit u32::MAX", "limit", search(&|s| s.limit = u32::MAX)),
        ("query 100 KB", "query", search(&|s| s.query = oversize())),
    ] {
        c.invalid(&format!("Search {what}"), field, catalog.search(req))
            .await;
    }
    c.invalid(
        "ClassifyProduct title empty",
        "title",
        catalog.classify_product(cpb::Product {
            title: String::new(),
            ..product.clone()
        }),
    )
    .await;
    c.answered(
        "ListLowConfidence page_size u32::MAX (clamped)",
        catalog.list_low_confidence(cpb::ListLowConfidenceRequest {
            tenant_id: T.into(),
            page_size: u32::MAX,
        }),
    )
    .await;
    c.answered(
        "ZeroResultQueries limit u32::MAX (clamped)",
        catalog.zero_result_queries(cpb::ZeroResultQueriesRequest {
            tenant_id: T.into(),
            limit: u32::MAX,
        }),
    )
    .await;

    // ---- logistics
    let fc = |key: &str, horizon: u32, level: f64| lpb::ForecastRequest {
        series_key: key.into(),
        horizon,
        level,
        ..Default::default()
    };
    for h in [0, 100_000, u32::MAX] {
        c.invalid(
            &format!("Forecast horizon {h}"),
            "horizon",
            logistics.forecast(fc("w1/sku-1", h, 0.9)),
        )
        .await;
    }
    for l in [f64::NAN, f64::INFINITY, -0.5, 1.5] {
        c.invalid(
            &format!("Forecast level {l}"),
            "level",
            logistics.forecast(fc("w1/sku-1", 7, l)),
        )
        .await;
    }
    c.invalid(
        "Forecast series_key empty",
        "series_key",
        logistics.forecast(fc("", 7, 0.9)),
    )
    .await;
    let stock = |w: &str, sku: &str, on_hand: f64, on_order: f64| lpb::SetStockRequest {
        tenant_id: String::new(),
        warehouse: w.into(),
        sku: sku.into(),
        on_hand,
        on_order,
    };
    for (what, field, req) in [
        ("on_hand NaN", "on_hand", stock("w-bad", "s", f64::NAN, 0.0)),
        (
            "on_hand +inf",
            "on_hand",
            stock("w-bad", "s", f64::INFINITY, 0.0),
        ),
        (
            "on_order -inf",
            "on_order",
            stock("w-bad", "s", 1.0, f64::NEG_INFINITY),
        ),
        ("on_order -1", "on_order", stock("w-bad", "s", 1.0, -1.0)),
        ("sku empty", "sku", stock("w-bad", "", 1.0, 0.0)),
        ("warehouse empty", "warehouse", stock("", "s", 1.0, 0.0)),
    ] {
        c.invalid(&format!("SetStock {what}"), field, logistics.set_stock(req))
            .await;
    }
    c.invalid(
        "ReorderSuggestions warehouse empty",
        "warehouse",
        logistics.reorder_suggestions(lpb::ReorderSuggestionsRequest::default()),
    )
    .await;
    c.refused(
        "ReorderSuggestions unknown warehouse",
        Code::NotFound,
        "w-none",
        logistics.reorder_suggestions(lpb::ReorderSuggestionsRequest {
            tenant_id: String::new(),
            warehouse: "w-none".into(),
            read_only: true,
        }),
    )
    .await;
    c.invalid(
        "GetPlan wave_id 100 KB",
        "wave_id",
        logistics.get_plan(lpb::GetPlanRequest {
            tenant_id: String::new(),
            wave_id: huge.clone(),
            compare_fresh: false,
        }),
    )
    .await;
    c.invalid(
        "ReorderSuggestions warehouse 100 KB",
        "warehouse",
        logistics.reorder_suggestions(lpb::ReorderSuggestionsRequest {
            tenant_id: String::new(),
            warehouse: huge.clone(),
            read_only: true,
        }),
    )
    .await;
    c.invalid(
        "Forecast series_key 100 KB",
        "series_key",
        logistics.forecast(fc(&huge, 7, 0.9)),
    )
    .await;
    c.invalid(
        "Forecast tenant_id 100 KB",
        "tenant_id",
        logistics.forecast(lpb::ForecastRequest {
            tenant_id: huge.clone(),
            ..fc("cat:x", 7, 0.9)
        }),
    )
    .await;
    // A fresh connection for the cases below.
    logistics = LogisticsServiceClient::new(channel(mesh.logistics.grpc_addr).await);
    c.invalid(
        "GetPlan wave_id empty",
        "wave_id",
        logistics.get_plan(lpb::GetPlanRequest::default()),
    )
    .await;
    c.refused(
        "GetPlan unknown wave",
        Code::NotFound,
        "wave-none",
        logistics.get_plan(lpb::GetPlanRequest {
            tenant_id: String::new(),
            wave_id: "wave-none".into(),
            compare_fresh: false,
        }),
    )
    .await;
    let stop = |id: &str, x: f64| lpb::RouteStop {
        id: id.into(),
        x,
        y: 1.0,
        demand: 1,
        ..Default::default()
    };
    let plan = |stops: Vec<lpb::RouteStop>, capacity: i64| lpb::PlanRoutesRequest {
        depot: Some(stop("depot", 0.0)),
        stops,
        vehicles: 2,
        capacity,
        time_budget_ms: 100,
    };
    for (what, field, req) in [
        (
            "stop x NaN",
            "stops[0].x",
            plan(vec![stop("a", f64::NAN)], 10),
        ),
        (
            "stop x -inf",
            "stops[0].x",
            plan(vec![stop("a", f64::NEG_INFINITY)], 10),
        ),
        (
            "stop demand -1",
            "stops[0].demand",
            plan(
                vec![lpb::RouteStop {
                    demand: -1,
                    ..stop("a", 1.0)
                }],
                10,
            ),
        ),
        (
            "stop service NaN",
            "stops[0].service",
            plan(
                vec![lpb::RouteStop {
                    service: f64::NAN,
                    ..stop("a", 1.0)
                }],
                10,
            ),
        ),
        ("capacity 0", "capacity", plan(vec![stop("a", 1.0)], 0)),
        (
            "time_budget_ms u32::MAX",
            "time_budget_ms",
            lpb::PlanRoutesRequest {
                time_budget_ms: u32::MAX,
                ..plan(vec![stop("a", 1.0)], 10)
            },
        ),
        ("no stops", "stops", plan(vec![], 10)),
        (
            "no depot",
            "depot",
            lpb::PlanRoutesRequest {
                depot: None,
                ..plan(vec![stop("a", 1.0)], 10)
            },
        ),
    ] {
        c.invalid(
            &format!("PlanRoutes {what}"),
            field,
            logistics.plan_routes(req),
        )
        .await;
    }

    // ---- a request over the gRPC maximum message size: a prompt error.
    let ten_mb = big(10 << 20);
    for (what, r) in [
        (
            "GetProfile 10 MB",
            c.call("GetProfile 10 MB", profile.get_profile(gp(T, &ten_mb)))
                .await
                .map(|r| r.map(|_| ())),
        ),
        (
            "Recommend 10 MB",
            c.call("Recommend 10 MB", recommend.recommend(rec(&ten_mb, 5)))
                .await
                .map(|r| r.map(|_| ())),
        ),
        (
            "AnalyzeFeedback 10 MB",
            c.call(
                "AnalyzeFeedback 10 MB",
                support.analyze_feedback(spb::AnalyzeFeedbackRequest {
                    tenant_id: T.into(),
                    text: ten_mb.clone(),
                }),
            )
            .await
            .map(|r| r.map(|_| ())),
        ),
    ] {
        match r {
            None => {}
            Some(Ok(())) => c.failures.push(format!("{what}: accepted")),
            Some(Err(s))
                if matches!(
                    s.code(),
                    Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
                ) => {}
            Some(Err(s)) => c.failures.push(format!(
                "{what}: {:?} {:?}, expected a size error",
                s.code(),
                short(s.message())
            )),
        }
    }

    // ---- still serving: a good request to every service (on the same
    // connections, which the hostile requests must not have broken).
    let mut deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match profile.get_profile(gp(&tenant, &user)).await {
            Ok(p) => {
                assert_eq!(p.into_inner().user_id, user);
                break;
            }
            Err(s) if s.code() == Code::NotFound && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("GetProfile after the hostile input: {s:?}"),
        }
    }
    c.answered("Recommend (good)", recommend.recommend(rec(&user, 5)))
        .await;
    c.answered("ScoreOrder (good)", fraud.score_order(score(order.clone())))
        .await;
    c.answered(
        "ListAtRisk (good)",
        churn.list_at_risk(chpb::ListAtRiskRequest::default()),
    )
    .await;
    c.answered(
        "ListSeries (good)",
        logistics.list_series(lpb::ListSeriesRequest::default()),
    )
    .await;
    c.answered(
        "SetPriceBounds (good)",
        engage.set_price_bounds(bounds.clone()),
    )
    .await;
    c.answered(
        "CreateCampaign (good)",
        engage.create_campaign(campaign.clone()),
    )
    .await;
    c.answered(
        "AnalyzeFeedback (good)",
        support.analyze_feedback(spb::AnalyzeFeedbackRequest {
            tenant_id: T.into(),
            text: "The kettle arrived broken and nobody answers".into(),
        }),
    )
    .await;
    c.answered(
        "UpsertProducts (good)",
        catalog.upsert_products(cpb::UpsertProductsRequest {
            tenant_id: String::new(),
            products: vec![product.clone()],
        }),
    )
    .await;
    deadline = Instant::now() + Duration::from_secs(5);
    let good = Envelope {
        event_id: "e-good-after".into(),
        occurred_at_ms: now_ms() - 1000,
        ..order.clone()
    };
    while let Err(s) = ingest
        .publish(PublishRequest {
            events: vec![good.clone()],
        })
        .await
    {
        assert!(Instant::now() < deadline, "Publish after: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    eprintln!(
        "{} hostile and good calls in {:?}",
        c.run,
        started.elapsed()
    );
    assert!(
        c.failures.is_empty(),
        "{} of {} calls misbehaved:\n{}",
        c.failures.len(),
        c.run,
        c.failures.join("\n")
    );
    shutdown.cancel();
}
