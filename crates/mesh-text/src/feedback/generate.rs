//! The seeded generators behind the feedback classifier: templates, seed keywords and a
//! small hand-written check set.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::FeedbackCategory;
use crate::gen::{fill, noisify};

type Templates = (&'static [&'static str], &'static [&'static str]);

fn templates(c: FeedbackCategory) -> Templates {
    match c {
        FeedbackCategory::Delivery => (
            &[
                "my {item} still has not arrived after {n} days",
                "the courier lost my package",
                "shipping is way too slow, waited {n} days",
                "delivery was late again",
                "tracking has not updated for {n} days, where is my {item}?",
                "the parcel was left at the wrong address",
                "when will my {item} be shipped?",
                "the box arrived crushed and the delivery guy just threw it",
                "express delivery took {n} days, not express at all",
                "logistics is terrible, my order is stuck in transit",
            ],
            &[
                "{item}等了{n}天还没到",
                "快递把我的包裹弄丢了",
                "物流太慢了，等了{n}天",
                "发货太慢，到现在还没发货",
                "物流信息{n}天没更新了，我的{item}在哪",
                "快递送错地址了",
                "什么时候发货啊",
                "配送员态度差，包裹直接扔门口",
                "说好的次日达，结果{n}天才到",
                "快递一直卡在中转站不动",
            ],
        ),
        FeedbackCategory::Quality => (
            &[
                "the {item} broke after {n} days",
                "poor quality, the stitching is coming apart",
                "the {item} stopped working after one use",
                "screen cracked on its own, very cheap material",
                "it smells bad and feels flimsy",
                "great quality, the {item} feels solid and well made",
                "battery dies within an hour, defective unit",
                "the color faded after washing once",
                "received a fake, this is not genuine",
                "works perfectly, excellent build quality",
            ],
            &[
                "{item}用了{n}天就坏了",
                "质量太差了，做工粗糙",
                "{item}用一次就不能用了",
                "屏幕自己裂了，材质很廉价",
                "有异味，感觉很劣质",
                "质量很好，{item}做工精细",
                "电池一个小时就没电了，是次品",
                "洗了一次就掉色了",
                "收到的是假货，不是正品",
                "用起来非常好，品质没得说",
            ],
        ),
        FeedbackCategory::Price => (
            &[
                "too expensive for what you get",
                "the price dropped {n} dollars right after I bought the {item}",
                "cheaper on other sites",
                "great value for money",
                "why is the {item} more expensive than last week?",
                "the discount coupon did not apply to my order",
                "overpriced, not worth the money",
                "can you match the lower price I found elsewhere?",
                "the promotion price was not honored at checkout",
                "shipping fee is higher than the {item} itself",
            ],
            &[
                "太贵了，性价比不高",
                "刚买完{item}就降价{n}块",
                "别家比这里便宜",
                "性价比很高，很划算",
                "为什么{item}比上周贵了",
                "优惠券用不了",
                "价格虚高，不值这个钱",
                "能不能保价，别家更便宜",
                "结账的时候活动价没有生效",
                "运费比{item}还贵",
            ],
        ),
        FeedbackCategory::Service => (
            &[
                "customer service was rude to me",
                "nobody answered my messages for {n} days",
                "the agent was very helpful and patient",
                "support keeps giving me copy paste answers",
                "I waited on hold for an hour",
                "the seller ignored my question about the {item}",
                "your staff hung up on me",
                "thank you, the service was excellent",
                "the online chat bot is useless, I want a real person",
                "the store clerk had a terrible attitude",
            ],
            &[
                "客服态度太差了",
                "发消息{n}天都没人回",
                "客服很耐心，帮了大忙",
                "客服一直复制粘贴敷衍我",
                "电话等了一个小时没人接",
                "卖家不回答关于{item}的问题",
                "客服直接挂我电话",
                "谢谢，服务非常好",
                "机器人客服没用，我要找人工",
                "店员服务态度恶劣",
            ],
        ),
        FeedbackCategory::Refund => (
            &[
                "I want a refund for the {item}",
                "still waiting for my refund after {n} days",
                "how do I return this {item}?",
                "the return was approved but no money back yet",
                "please refund my order {order}",
                "refund was rejected without reason",
                "I returned the {item} {n} days ago, where is my money?",
                "cancel the order and give me my money back",
                "the refund amount is wrong, you kept the shipping fee",
                "can I exchange or return it?",
            ],
            &[
                "我要退款",
                "退款{n}天了还没到账",
                "这个{item}怎么退货",
                "退货审核通过了但钱还没退",
                "请给订单{order}退款",
                "退款申请被无理由驳回",
                "{item}{n}天前就寄回去了，钱呢",
                "取消订单，把钱退给我",
                "退款金额不对，运费没退",
                "可以退换货吗",
            ],
        ),
        FeedbackCategory::Account => (
            &[
                "I cannot log in to my account",
                "forgot my password and the reset email never comes",
                "my account was hacked",
                "how do I change my phone number on the account?",
                "the verification code is not sent",
                "please delete my account",
                "my points disappeared from my account",
                "I was charged twice, check my account",
                "cannot bind my card to the account",
                "my membership level was downgraded",
            ],
            &[
                "我的账号登录不上",
                "忘记密码了，重置邮件收不到",
                "账号被盗了",
                "怎么修改账号绑定的手机号",
                "收不到验证码",
                "请注销我的账号",
                "账户里的积分没了",
                "账户被扣了两次钱",
                "银行卡绑定不了账户",
                "会员等级被降了",
            ],
        ),
    }
}

/// Seed keywords per category (weak labels): short cue phrases in both languages that the
/// templates may not use, mixed into training so vocabulary beyond the templates is covered.
fn keywords(c: FeedbackCategory) -> &'static [&'static str] {
    match c {
        FeedbackCategory::Delivery => &[
            "courier",
            "shipping",
            "shipped",
            "tracking",
            "parcel",
            "package",
            "arrive",
            "arrived",
            "delivery",
            "delivered",
            "late",
            "transit",
            "logistics",
            "dispatch",
            "express",
            "快递",
            "物流",
            "发货",
            "配送",
            "包裹",
            "到货",
            "送货",
            "签收",
            "派送",
            "没收到",
            "还没到",
        ],
        FeedbackCategory::Quality => &[
            "broke",
            "broken",
            "defective",
            "cheap material",
            "flimsy",
            "stopped working",
            "poor quality",
            "fake",
            "faulty",
            "well made",
            "durable",
            "scratch",
            "crack",
            "质量",
            "做工",
            "坏了",
            "次品",
            "假货",
            "破损",
            "掉色",
            "开线",
            "异味",
            "品质",
            "耐用",
        ],
        FeedbackCategory::Price => &[
            "price",
            "expensive",
            "cheaper",
            "overpriced",
            "discount",
            "coupon",
            "sale",
            "value",
            "worth the money",
            "cost",
            "promotion",
            "price match",
            "价格",
            "太贵",
            "便宜",
            "降价",
            "优惠",
            "优惠券",
            "性价比",
            "保价",
            "划算",
            "差价",
            "活动价",
        ],
        FeedbackCategory::Service => &[
            "customer service",
            "agent",
            "rude",
            "support",
            "staff",
            "attitude",
            "helpful",
            "no reply",
            "ignored",
            "hung up",
            "seller",
            "response",
            "客服",
            "态度",
            "服务",
            "不回复",
            "没人理",
            "敷衍",
            "售后",
            "店员",
            "耐心",
            "回复慢",
        ],
        FeedbackCategory::Refund => &[
            "refund",
            "return",
            "money back",
            "send it back",
            "reimburse",
            "cancel order",
            "returned",
            "exchange",
            "chargeback",
            "退款",
            "退货",
            "退钱",
            "退回",
            "换货",
            "寄回",
            "到账",
            "取消订单",
            "退换",
        ],
        FeedbackCategory::Account => &[
            "account",
            "log in",
            "login",
            "sign in",
            "password",
            "verification code",
            "hacked",
            "locked",
            "points",
            "membership",
            "phone number",
            "email",
            "账号",
            "账户",
            "登录",
            "密码",
            "验证码",
            "被盗",
            "积分",
            "会员",
            "绑定",
            "注销",
            "手机号",
        ],
    }
}

/// `n` weakly labelled messages built from 1–3 seed keywords each.
pub fn generate_keyword_examples(n: usize, seed: u64) -> Vec<(String, FeedbackCategory)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let c = FeedbackCategory::ALL[i % FeedbackCategory::ALL.len()];
            let k = rng.random_range(1..=3);
            let words: Vec<&str> = keywords(c).choose_multiple(&mut rng, k).copied().collect();
            (words.join(" "), c)
        })
        .collect()
}

/// Which templates to draw from: the first 8 per language train, the last 2 are held out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSplit {
    Train,
    HeldOut,
    All,
}

fn pick<'a>(ts: &'a [&'a str], split: TemplateSplit, rng: &mut ChaCha8Rng) -> &'a str {
    let cut = ts.len().saturating_sub(2);
    let pool = match split {
        TemplateSplit::Train => &ts[..cut],
        TemplateSplit::HeldOut => &ts[cut..],
        TemplateSplit::All => ts,
    };
    pool.choose(rng).expect("templates")
}

/// Generates `n` labelled messages (55% Chinese), seeded.
pub fn generate_feedback(
    n: usize,
    seed: u64,
    split: TemplateSplit,
) -> Vec<(String, FeedbackCategory)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let c = FeedbackCategory::ALL[i % FeedbackCategory::ALL.len()];
            let (en, zh) = templates(c);
            let is_zh = rng.random_bool(0.55);
            let t = pick(if is_zh { zh } else { en }, split, &mut rng);
            let text = noisify(&fill(t, is_zh, &mut rng), is_zh, &mut rng);
            (text, c)
        })
        .collect()
}

/// A hand-written check set (not generated): realistic phrasings in both languages.
pub const HAND_WRITTEN: &[(&str, FeedbackCategory)] = &[
    (
        "包裹到现在都没收到，物流一直不动",
        FeedbackCategory::Delivery,
    ),
    (
        "The package was supposed to arrive Monday, it's Friday now",
        FeedbackCategory::Delivery,
    ),
    ("快递员把东西放在门卫也不通知", FeedbackCategory::Delivery),
    ("衣服线头很多，穿了一次就开线了", FeedbackCategory::Quality),
    (
        "the zipper broke the first day I used the bag",
        FeedbackCategory::Quality,
    ),
    ("耳机左边没声音，是不是坏的", FeedbackCategory::Quality),
    ("同样的东西超市卖得更便宜", FeedbackCategory::Price),
    (
        "paid full price and it went on sale the next day",
        FeedbackCategory::Price,
    ),
    ("这个价格太坑了", FeedbackCategory::Price),
    ("客服回复太慢，问了三遍都没解决", FeedbackCategory::Service),
    (
        "the support agent was condescending and unhelpful",
        FeedbackCategory::Service,
    ),
    ("售后服务态度很好，点赞", FeedbackCategory::Service),
    ("申请退货一周了还没有处理", FeedbackCategory::Refund),
    (
        "I sent it back two weeks ago and still no refund",
        FeedbackCategory::Refund,
    ),
    ("不想要了，能退吗", FeedbackCategory::Refund),
    ("登录的时候一直提示密码错误", FeedbackCategory::Account),
    (
        "I can't sign in, it says my account is locked",
        FeedbackCategory::Account,
    ),
    ("手机号换了，账号怎么改绑", FeedbackCategory::Account),
];
