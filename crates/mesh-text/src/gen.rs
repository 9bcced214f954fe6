//! Helpers for the seeded text generators (feedback, intents): slot filling and noise.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub(crate) const ITEMS_EN: &[&str] = &[
    "phone",
    "laptop",
    "headphones",
    "rice cooker",
    "sofa",
    "shoes",
    "jacket",
    "face cream",
    "tent",
    "book",
    "toy car",
    "snacks",
    "order",
    "package",
    "kettle",
];
pub(crate) const ITEMS_ZH: &[&str] = &[
    "手机",
    "电脑",
    "耳机",
    "电饭煲",
    "沙发",
    "鞋子",
    "外套",
    "面霜",
    "帐篷",
    "书",
    "玩具车",
    "零食",
    "东西",
    "包裹",
    "衣服",
];

/// Replaces `{item}`, `{n}` and `{order}` in a template.
pub(crate) fn fill(template: &str, zh: bool, rng: &mut ChaCha8Rng) -> String {
    let items = if zh { ITEMS_ZH } else { ITEMS_EN };
    let item = *items.choose(rng).expect("items");
    let order = format!("{}", rng.random_range(100_000u32..999_999));
    template
        .replace("{item}", item)
        .replace("{n}", &rng.random_range(2u32..15).to_string())
        .replace("{order}", &order)
}

/// Adds realistic noise: case, dropped punctuation, a typo, fillers, code-mixing.
pub(crate) fn noisify(text: &str, zh: bool, rng: &mut ChaCha8Rng) -> String {
    let mut s = text.to_string();
    if rng.random_bool(0.3) {
        s = s
            .trim_end_matches(['.', '!', '?', '。', '！', '？'])
            .to_string();
    }
    if !zh && rng.random_bool(0.3) {
        s = s.to_lowercase();
    }
    if rng.random_bool(0.25) {
        // One typo in a Latin word of five letters or more.
        let words: Vec<&str> = s.split(' ').collect();
        let long: Vec<usize> = (0..words.len())
            .filter(|&i| words[i].len() >= 5 && words[i].chars().all(|c| c.is_ascii_alphabetic()))
            .collect();
        if let Some(&i) = long.choose(rng) {
            let mut c: Vec<char> = words[i].chars().collect();
            let j = rng.random_range(1..c.len() - 1);
            c.swap(j, j + 1);
            let w: String = c.into_iter().collect();
            let mut ws: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            ws[i] = w;
            s = ws.join(" ");
        }
    }
    let pre_en = ["hi, ", "hello ", "hey ", "", "", ""];
    let pre_zh = ["你好，", "亲，", "客服，", "", "", ""];
    let post_en = [" thanks", " pls", "!!", " :(", "", "", ""];
    let post_zh = ["，谢谢", "！！", "。", "...", "", "", ""];
    let (pre, post) = if zh {
        (&pre_zh[..], &post_zh[..])
    } else {
        (&pre_en[..], &post_en[..])
    };
    format!(
        "{}{}{}",
        pre.choose(rng).expect("pre"),
        s,
        post.choose(rng).expect("post")
    )
}
