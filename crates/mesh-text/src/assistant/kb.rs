//! The assistant's knowledge base: Q/A pairs searched with the crate's BM25 index.

use serde::{Deserialize, Serialize};

use crate::search::{Bm25Index, Bm25Params};

/// One entry; questions are the phrasings indexed, answers are per language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaPair {
    pub id: String,
    pub questions: Vec<String>,
    pub answer_en: String,
    pub answer_zh: String,
}

/// A best match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KbMatch {
    pub id: String,
    pub answer_en: String,
    pub answer_zh: String,
    pub score: f32,
}

/// Searchable Q/A pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnowledgeBase {
    entries: Vec<QaPair>,
    index: Bm25Index,
}

impl KnowledgeBase {
    pub fn new(entries: Vec<QaPair>) -> Self {
        let mut index = Bm25Index::new(Bm25Params::default());
        for e in &entries {
            let q = e.questions.join(" \n ");
            index.add(&[(&q, 2.0), (&e.answer_en, 0.5), (&e.answer_zh, 0.5)]);
        }
        KnowledgeBase { entries, index }
    }

    /// The best entry for `question`, if any term matched.
    pub fn best(&self, question: &str) -> Option<KbMatch> {
        let (scores, _) = self.index.score(question);
        let (&d, &score) = scores
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))?;
        let e = &self.entries[d as usize];
        Some(KbMatch {
            id: e.id.clone(),
            answer_en: e.answer_en.clone(),
            answer_zh: e.answer_zh.clone(),
            score,
        })
    }

    /// A small default shop FAQ in both languages.
    pub fn default_faq() -> Self {
        let qa = |id: &str, qs: &[&str], en: &str, zh: &str| QaPair {
            id: id.into(),
            questions: qs.iter().map(|s| s.to_string()).collect(),
            answer_en: en.into(),
            answer_zh: zh.into(),
        };
        KnowledgeBase::new(vec![
            qa("shipping_time", &["how long is shipping", "delivery time days", "发货要几天", "多久能到", "配送时间"],
                "Orders ship within 48 hours and usually arrive in 2–5 days.", "订单48小时内发货，一般2–5天送达。"),
            qa("international", &["do you ship internationally abroad overseas", "能寄到国外吗", "海外 配送"],
                "We currently ship to mainland China, Hong Kong and Singapore.", "目前支持配送中国大陆、香港和新加坡。"),
            qa("payment", &["what payment methods do you accept", "pay with credit card alipay wechat", "支持什么付款方式", "能用支付宝 微信 信用卡吗"],
                "We accept Alipay, WeChat Pay, UnionPay and major credit cards.", "支持支付宝、微信支付、银联和主流信用卡。"),
            qa("warranty", &["does it come with a warranty guarantee", "warranty period repair", "有保修吗", "保修 多久 维修"],
                "Electronics carry a one-year warranty; other items 90 days.", "电子产品保修一年，其他商品90天。"),
            qa("invoice", &["can i get an invoice receipt", "可以开发票吗", "发票 收据"],
                "Invoices can be requested on the order page after delivery.", "收货后可在订单页面申请开具发票。"),
            qa("return_policy", &["what is the return policy", "how many days to return", "退货政策", "几天内可以退货 七天无理由"],
                "Unused items can be returned within 7 days of delivery, no reason needed.", "签收后7天内未使用商品支持无理由退货。"),
            qa("stock", &["is it in stock available", "when will it be restocked", "有货吗", "什么时候补货 库存"],
                "Stock is shown on each product page; out-of-stock items can be subscribed for alerts.", "库存以商品页为准，缺货商品可订阅到货提醒。"),
            qa("size", &["what size should i get size chart fit", "尺码怎么选", "尺码表 偏大 偏小"],
                "Each product page has a size chart; if between sizes, pick the larger one.", "商品页有尺码表，介于两个尺码之间建议选大一码。"),
            qa("colors", &["what colors are available colour options", "有哪些颜色", "颜色 款式"],
                "Available colours are listed under the product title.", "可选颜色见商品标题下方。"),
            qa("waterproof", &["is it waterproof water resistant rain", "防水吗", "防水 等级"],
                "Waterproof ratings are in the product specifications; IPX4 and above survive rain.", "防水等级见商品参数，IPX4及以上可防雨淋。"),
        ])
    }
}
