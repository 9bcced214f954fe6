//! Intent classification for the assistant, trained on seeded generated messages in both
//! languages (no labelled chat logs ship with the project).

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::gen::{fill, noisify};
use crate::pipeline::{train_with_cv, HyperParams, TextClassifier};
use crate::tokenize::FeatureConfig;
use crate::Result;

/// What the customer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    OrderStatus,
    Refund,
    AddressChange,
    ProductQuestion,
    Greeting,
    Human,
    Unknown,
}

impl Intent {
    pub const ALL: [Intent; 7] = [
        Intent::OrderStatus,
        Intent::Refund,
        Intent::AddressChange,
        Intent::ProductQuestion,
        Intent::Greeting,
        Intent::Human,
        Intent::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::OrderStatus => "order_status",
            Intent::Refund => "refund",
            Intent::AddressChange => "address_change",
            Intent::ProductQuestion => "product_question",
            Intent::Greeting => "greeting",
            Intent::Human => "human",
            Intent::Unknown => "unknown",
        }
    }
}

fn templates(i: Intent) -> (&'static [&'static str], &'static [&'static str]) {
    match i {
        Intent::OrderStatus => (
            &[
                "where is my order",
                "where is my order {order}",
                "track my package",
                "has my {item} shipped yet?",
                "order status for {order}",
                "when will my order arrive",
                "my {item} has not arrived",
                "can you check my delivery",
                "what's the status of order {order}",
                "is my parcel on the way",
            ],
            &[
                "我的订单到哪了",
                "查一下订单{order}",
                "帮我查物流",
                "我的{item}发货了吗",
                "订单{order}什么时候到",
                "快递到哪里了",
                "我的{item}还没到",
                "查询订单状态",
                "包裹什么时候送到",
                "订单{order}的物流信息",
            ],
        ),
        Intent::Refund => (
            &[
                "i want a refund",
                "refund my order {order}",
                "how do i return this {item}",
                "i want my money back",
                "return the {item} please",
                "can i get a refund for {order}",
                "the {item} is broken, i want to return it",
                "start a return",
                "please cancel and refund",
                "refund request",
            ],
            &[
                "我要退款",
                "订单{order}申请退款",
                "这个{item}怎么退货",
                "把钱退给我",
                "我想退货",
                "{item}坏了要退",
                "申请退款",
                "不想要了，退款",
                "可以退吗",
                "帮我办理退货退款",
            ],
        ),
        Intent::AddressChange => (
            &[
                "change my delivery address",
                "i need to update the shipping address for {order}",
                "wrong address on my order",
                "can you send it to a different address",
                "update address",
                "i moved, please change the address",
                "change the address of order {order}",
                "ship to my office instead",
                "edit my shipping address",
                "the address is wrong",
            ],
            &[
                "修改收货地址",
                "订单{order}地址写错了",
                "帮我改一下地址",
                "换个收货地址",
                "地址填错了",
                "改成寄到公司",
                "我搬家了，改下地址",
                "收货地址要改",
                "能改地址吗",
                "订单{order}改地址",
            ],
        ),
        Intent::ProductQuestion => (
            &[
                "is this {item} waterproof?",
                "what size should i get",
                "does the {item} come with a warranty",
                "how long does the battery last",
                "is the {item} in stock",
                "what colors are available",
                "do you ship internationally",
                "how long is shipping",
                "what payment methods do you accept",
                "can i get an invoice",
            ],
            &[
                "这个{item}防水吗",
                "尺码怎么选",
                "{item}有保修吗",
                "电池能用多久",
                "{item}有货吗",
                "有哪些颜色",
                "能寄到国外吗",
                "发货要几天",
                "支持什么付款方式",
                "可以开发票吗",
            ],
        ),
        Intent::Greeting => (
            &[
                "hi",
                "hello",
                "hey there",
                "good morning",
                "hello, anyone there?",
                "hi!",
                "good evening",
                "thanks, bye",
                "thank you",
                "yo",
            ],
            &[
                "你好",
                "您好",
                "在吗",
                "早上好",
                "哈喽",
                "有人吗",
                "晚上好",
                "谢谢",
                "好的谢谢",
                "嗨",
            ],
        ),
        Intent::Human => (
            &[
                "i want to talk to a human",
                "real person please",
                "connect me to an agent",
                "let me speak to customer service",
                "transfer me to a human agent",
                "operator",
                "this bot is useless, get me a person",
                "human",
                "can i talk to someone",
                "i need a real agent",
            ],
            &[
                "转人工",
                "人工客服",
                "我要找真人",
                "找个人工",
                "机器人没用，转人工",
                "让客服跟我说",
                "接人工",
                "人工",
                "真人客服在吗",
                "我要投诉，找人工",
            ],
        ),
        Intent::Unknown => (
            &[
                "what's the weather tomorrow",
                "tell me a joke",
                "who won the game last night",
                "asdf qwer",
                "what is the meaning of life",
                "can you write my homework",
                "i like turtles",
                "sing a song",
                "how tall is mount everest",
                "bitcoin price",
            ],
            &[
                "明天天气怎么样",
                "讲个笑话",
                "昨晚比赛谁赢了",
                "啊啊啊啊",
                "人生的意义是什么",
                "帮我写作业",
                "我喜欢乌龟",
                "唱首歌",
                "珠穆朗玛峰多高",
                "比特币多少钱",
            ],
        ),
    }
}

/// Generates `n` labelled messages, seeded, 55% Chinese.
pub fn generate_intents(n: usize, seed: u64) -> Vec<(String, Intent)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let intent = Intent::ALL[i % Intent::ALL.len()];
            let (en, zh) = templates(intent);
            let is_zh = rng.random_bool(0.55);
            let t = *(if is_zh { zh } else { en })
                .choose(&mut rng)
                .expect("templates");
            (noisify(&fill(t, is_zh, &mut rng), is_zh, &mut rng), intent)
        })
        .collect()
}

/// The intent classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntentClassifier {
    inner: TextClassifier,
}

impl IntentClassifier {
    pub fn train(data: &[(String, Intent)], seed: u64) -> Result<Self> {
        let labels: Vec<&str> = Intent::ALL.iter().map(|i| i.as_str()).collect();
        let texts: Vec<&str> = data.iter().map(|d| d.0.as_str()).collect();
        let y: Vec<usize> = data
            .iter()
            .map(|d| Intent::ALL.iter().position(|i| *i == d.1).expect("known"))
            .collect();
        let cfg = FeatureConfig {
            bits: 18,
            word_bigrams: true,
            cjk_char_ngrams: 2,
            negation: false,
            latin_char_ngrams: 4,
            clause_position: false,
        };
        let grid = [HyperParams {
            l2: 1e-4,
            lexicon_weight: 0.0,
            balanced: false,
        }];
        let (inner, _, _) = train_with_cv(cfg, &labels, &texts, &y, &grid, 3, seed)?;
        Ok(IntentClassifier { inner })
    }

    /// Trains on 2,800 generated messages.
    pub fn train_generated(seed: u64) -> Result<Self> {
        Self::train(&generate_intents(2800, seed), seed)
    }

    /// The most likely intent and its probability.
    pub fn classify(&self, text: &str) -> (Intent, f32) {
        let (i, p) = crate::classify::argmax(&self.inner.predict_proba(text));
        (Intent::ALL[i], p)
    }
}
