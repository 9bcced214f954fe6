use super::*;

fn catalog() -> HashMap<ItemId, ItemMeta> {
    let mut items = vec![
        ItemMeta::new("shoe1", "shoes", 50.0),
        ItemMeta::new("shoe2", "shoes", 60.0),
        ItemMeta::new("shoe3", "shoes", 55.0),
        ItemMeta::new("shoe4", "shoes", 45.0),
        ItemMeta::new("hat1", "hats", 20.0),
        ItemMeta::new("bag1", "bags", 80.0),
    ];
    let mut promo = ItemMeta::new("promo1", "shoes", 30.0);
    promo.promotional = true;
    let mut gone = ItemMeta::new("gone1", "hats", 25.0);
    gone.in_stock = false;
    let mut offer = ItemMeta::new("offer1", "gifts", 10.0);
    offer.retention_offer = true;
    items.extend([promo, gone, offer]);
    items.into_iter().map(|m| (m.id.clone(), m)).collect()
}

fn cands(ids: &[(&str, f64)]) -> Vec<Candidate> {
    ids.iter()
        .map(|&(i, s)| Candidate {
            item: i.into(),
            score: s,
            source: Source::Model,
        })
        .collect()
}

fn ids(r: &[Ranked]) -> Vec<&str> {
    r.iter().map(|x| x.item.as_str()).collect()
}

#[test]
fn business_rules_remove_items() {
    let cat = catalog();
    let ctx = UserContext {
        purchased: ["shoe1".to_string()].into(),
        in_cart: ["shoe2".to_string()].into(),
        recently_shown: ["hat1".to_string()].into(),
        promo_abuse: true,
        ..UserContext::default()
    };
    let c = cands(&[
        ("shoe1", 9.0),
        ("shoe2", 8.0),
        ("hat1", 7.0),
        ("gone1", 6.0),
        ("promo1", 5.0),
        ("bag1", 1.0),
        ("nope", 9.0),
    ]);
    let r = rank(&ctx, &c, &cat, &RankConfig::default());
    assert_eq!(ids(&r), vec!["bag1"]);
    assert_eq!(
        drop_reason(&ctx, "promo1", cat.get("promo1")),
        Some(DropReason::PromoSuppressed)
    );
    assert_eq!(
        drop_reason(&ctx, "gone1", cat.get("gone1")),
        Some(DropReason::OutOfStock)
    );
    assert_eq!(
        drop_reason(&ctx, "nope", None),
        Some(DropReason::UnknownItem)
    );
    // Without the fraud flag the promotional item is allowed.
    let ok = UserContext::default();
    assert_eq!(drop_reason(&ok, "promo1", cat.get("promo1")), None);
}

#[test]
fn category_cap_and_diversity() {
    let cat = catalog();
    let ctx = UserContext::default();
    let c = cands(&[
        ("shoe1", 1.0),
        ("shoe2", 0.99),
        ("shoe3", 0.98),
        ("shoe4", 0.97),
        ("hat1", 0.5),
        ("bag1", 0.4),
    ]);
    let cfg = RankConfig {
        max_per_category: 2,
        diversity_penalty: 0.0,
        ..RankConfig::default()
    };
    let r = rank(&ctx, &c, &cat, &cfg);
    assert_eq!(r.iter().filter(|x| x.item.starts_with("shoe")).count(), 2);
    assert_eq!(r.len(), 4);
    // A strong penalty pulls other categories up to second place.
    let cfg = RankConfig {
        max_per_category: 10,
        diversity_penalty: 1.0,
        ..RankConfig::default()
    };
    let r = rank(&ctx, &c, &cat, &cfg);
    assert_eq!(ids(&r)[0], "shoe1");
    assert!(["hat1", "bag1"].contains(&ids(&r)[1]), "{:?}", ids(&r));
}

#[test]
fn at_risk_users_get_retention_offers_from_rules() {
    let cat = catalog();
    let c = cands(&[("shoe1", 1.0), ("hat1", 0.9), ("bag1", 0.8)]);
    let calm = rank(&UserContext::default(), &c, &cat, &RankConfig::default());
    assert!(!ids(&calm).contains(&"offer1"));
    let risky = UserContext {
        at_risk: true,
        ..UserContext::default()
    };
    let r = rank(
        &risky,
        &c,
        &cat,
        &RankConfig {
            retention_boost: 2.0,
            ..RankConfig::default()
        },
    );
    assert_eq!(r[0].item, "offer1");
    assert_eq!(r[0].source, Source::Rule);
    assert!(r[0].reason.contains("retention"));
}

#[test]
fn affinity_and_features_reorder_and_reasons_name_the_source() {
    let cat = catalog();
    let mut ctx = UserContext::default();
    let c = vec![
        Candidate {
            item: "hat1".into(),
            score: 1.0,
            source: Source::Popularity,
        },
        Candidate {
            item: "bag1".into(),
            score: 100.0,
            source: Source::Cooccurrence,
        },
    ];
    // Both are relevance 1 within their source; affinity decides.
    ctx.category_affinity.insert("hats".into(), 1.0);
    let r = rank(&ctx, &c, &cat, &RankConfig::default());
    assert_eq!(ids(&r), vec!["hat1", "bag1"]);
    assert!(r[0].reason.contains("popular") && r[0].reason.contains("you like hats"));
    assert_eq!(r[1].source, Source::Cooccurrence);
    ctx.category_affinity.clear();
    ctx.category_affinity.insert("bags".into(), 1.0);
    assert_eq!(
        ids(&rank(&ctx, &c, &cat, &RankConfig::default())),
        vec!["bag1", "hat1"]
    );
}

#[test]
fn duplicate_candidates_merge_to_best_source() {
    let cat = catalog();
    let c = vec![
        Candidate {
            item: "bag1".into(),
            score: 0.1,
            source: Source::Model,
        },
        Candidate {
            item: "hat1".into(),
            score: 1.0,
            source: Source::Model,
        },
        Candidate {
            item: "bag1".into(),
            score: 5.0,
            source: Source::Cooccurrence,
        },
    ];
    let r = rank(&UserContext::default(), &c, &cat, &RankConfig::default());
    assert_eq!(r.len(), 2);
    assert_eq!(
        r.iter().find(|x| x.item == "bag1").unwrap().source,
        Source::Cooccurrence
    );
}
