//! A seeded, bilingual generated catalog with a known category tree.
//!
//! No labelled catalog ships with the project, so search and product evals run on this.
//! Items are built from per-category nouns, brands and attributes in English and Chinese,
//! with shared generic words, mixed-language titles and dropped words as noise. Numbers from
//! it measure the code on generated text, not on real shop data.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One catalog item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub sku: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Category path, e.g. `electronics/phones`.
    pub category: String,
    pub price: f64,
    pub in_stock: bool,
}

/// The vocabulary of one leaf category.
pub struct CategorySpec {
    pub path: &'static str,
    pub nouns_en: &'static [&'static str],
    pub nouns_zh: &'static [&'static str],
    pub attrs_en: &'static [&'static str],
    pub attrs_zh: &'static [&'static str],
    pub brands: &'static [&'static str],
    pub price: (f64, f64),
}

/// The generated category tree (leaf paths).
pub const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        path: "electronics/phones",
        nouns_en: &["smartphone", "phone", "mobile phone", "android phone"],
        nouns_zh: &["手机", "智能手机", "5G手机"],
        attrs_en: &[
            "dual sim",
            "128gb storage",
            "oled screen",
            "fast charging",
            "triple camera",
            "5g",
        ],
        attrs_zh: &["双卡双待", "大内存", "全面屏", "快充", "三摄", "长续航"],
        brands: &["Huawei", "Xiaomi", "Apple", "Samsung", "Oppo"],
        price: (999.0, 8999.0),
    },
    CategorySpec {
        path: "electronics/laptops",
        nouns_en: &["laptop", "notebook computer", "ultrabook", "gaming laptop"],
        nouns_zh: &["笔记本电脑", "轻薄本", "游戏本"],
        attrs_en: &[
            "16gb ram",
            "ssd",
            "backlit keyboard",
            "14 inch display",
            "long battery",
            "wireless",
        ],
        attrs_zh: &[
            "固态硬盘",
            "背光键盘",
            "高清屏",
            "轻薄",
            "长续航",
            "独立显卡",
        ],
        brands: &["Lenovo", "Dell", "Apple", "Asus", "Huawei"],
        price: (2999.0, 14999.0),
    },
    CategorySpec {
        path: "electronics/headphones",
        nouns_en: &["headphones", "earbuds", "bluetooth headset", "earphones"],
        nouns_zh: &["耳机", "蓝牙耳机", "头戴式耳机", "降噪耳机"],
        attrs_en: &[
            "noise cancelling",
            "wireless",
            "bluetooth",
            "long battery",
            "waterproof",
            "bass",
        ],
        attrs_zh: &["主动降噪", "无线", "蓝牙", "防水", "重低音", "长续航"],
        brands: &["Sony", "Xiaomi", "Apple", "Bose", "Edifier"],
        price: (99.0, 2999.0),
    },
    CategorySpec {
        path: "home/kitchen",
        nouns_en: &[
            "rice cooker",
            "frying pan",
            "kettle",
            "knife set",
            "air fryer",
        ],
        nouns_zh: &["电饭煲", "炒锅", "电水壶", "刀具套装", "空气炸锅"],
        attrs_en: &[
            "non stick",
            "stainless steel",
            "large capacity",
            "easy clean",
            "timer",
        ],
        attrs_zh: &["不粘", "不锈钢", "大容量", "易清洗", "定时"],
        brands: &["Midea", "Supor", "Joyoung", "Philips", "Tefal"],
        price: (49.0, 899.0),
    },
    CategorySpec {
        path: "home/furniture",
        nouns_en: &[
            "sofa",
            "office chair",
            "bookshelf",
            "dining table",
            "bed frame",
        ],
        nouns_zh: &["沙发", "办公椅", "书架", "餐桌", "床架"],
        attrs_en: &[
            "solid wood",
            "ergonomic",
            "easy assembly",
            "modern",
            "leather",
        ],
        attrs_zh: &["实木", "人体工学", "易安装", "现代简约", "真皮"],
        brands: &["Ikea", "Quanu", "Kuka", "Lingfeng"],
        price: (199.0, 6999.0),
    },
    CategorySpec {
        path: "clothing/shoes",
        nouns_en: &["running shoes", "sneakers", "leather boots", "sandals"],
        nouns_zh: &["跑鞋", "运动鞋", "皮靴", "凉鞋"],
        attrs_en: &[
            "breathable",
            "lightweight",
            "waterproof",
            "cushioned",
            "black",
            "non slip",
        ],
        attrs_zh: &["透气", "轻便", "防水", "减震", "黑色", "防滑"],
        brands: &["Nike", "Adidas", "Li-Ning", "Anta", "Skechers"],
        price: (99.0, 1499.0),
    },
    CategorySpec {
        path: "clothing/tops",
        nouns_en: &["t-shirt", "hoodie", "shirt", "down jacket", "sweater"],
        nouns_zh: &["T恤", "卫衣", "衬衫", "羽绒服", "毛衣"],
        attrs_en: &[
            "cotton",
            "slim fit",
            "oversized",
            "warm",
            "black",
            "breathable",
        ],
        attrs_zh: &["纯棉", "修身", "宽松", "保暖", "黑色", "透气"],
        brands: &["Uniqlo", "Bosideng", "Semir", "Zara", "Nike"],
        price: (39.0, 1999.0),
    },
    CategorySpec {
        path: "beauty/skincare",
        nouns_en: &[
            "face cream",
            "serum",
            "sunscreen",
            "facial cleanser",
            "face mask",
        ],
        nouns_zh: &["面霜", "精华液", "防晒霜", "洗面奶", "面膜"],
        attrs_en: &[
            "moisturizing",
            "sensitive skin",
            "spf 50",
            "anti aging",
            "hydrating",
        ],
        attrs_zh: &["保湿", "敏感肌", "高倍防晒", "抗衰老", "补水"],
        brands: &["Loreal", "Estee Lauder", "Pechoin", "Shiseido", "Winona"],
        price: (29.0, 1299.0),
    },
    CategorySpec {
        path: "sports/outdoor",
        nouns_en: &[
            "tent",
            "hiking backpack",
            "sleeping bag",
            "trekking poles",
            "camping stove",
        ],
        nouns_zh: &["帐篷", "登山包", "睡袋", "登山杖", "露营炉"],
        attrs_en: &[
            "waterproof",
            "lightweight",
            "4 season",
            "large capacity",
            "portable",
        ],
        attrs_zh: &["防水", "轻量", "四季", "大容量", "便携"],
        brands: &["Naturehike", "Toread", "Kailas", "Decathlon", "Columbia"],
        price: (59.0, 2999.0),
    },
    CategorySpec {
        path: "books/fiction",
        nouns_en: &[
            "novel",
            "mystery novel",
            "science fiction book",
            "paperback",
        ],
        nouns_zh: &["小说", "推理小说", "科幻小说", "长篇小说"],
        attrs_en: &[
            "bestseller",
            "hardcover",
            "illustrated",
            "collector edition",
            "classic",
        ],
        attrs_zh: &["畅销", "精装", "插图版", "珍藏版", "经典"],
        brands: &["Penguin", "Citic Press", "People's Literature", "Harper"],
        price: (19.0, 199.0),
    },
    CategorySpec {
        path: "toys/kids",
        nouns_en: &["building blocks", "plush toy", "puzzle", "toy car", "doll"],
        nouns_zh: &["积木", "毛绒玩具", "拼图", "玩具车", "娃娃"],
        attrs_en: &[
            "educational",
            "safe materials",
            "for ages 3+",
            "colorful",
            "remote control",
        ],
        attrs_zh: &["益智", "安全材质", "3岁以上", "色彩鲜艳", "遥控"],
        brands: &["Lego", "Hasbro", "Mattel", "Keeppley", "Bandai"],
        price: (29.0, 999.0),
    },
    CategorySpec {
        path: "food/snacks",
        nouns_en: &[
            "mixed nuts",
            "beef jerky",
            "chocolate",
            "potato chips",
            "green tea",
        ],
        nouns_zh: &["坚果", "牛肉干", "巧克力", "薯片", "绿茶"],
        attrs_en: &["gift box", "low sugar", "spicy", "family pack", "organic"],
        attrs_zh: &["礼盒装", "低糖", "麻辣", "家庭装", "有机"],
        brands: &["Three Squirrels", "Bestore", "Dove", "Lays", "Oishi"],
        price: (9.9, 299.0),
    },
];

const SHARED_ATTRS_EN: &[&str] = &[
    "waterproof",
    "lightweight",
    "black",
    "portable",
    "large capacity",
    "wireless",
    "long battery",
    "breathable",
    "gift box",
    "classic",
];
const SHARED_ATTRS_ZH: &[&str] = &[
    "防水",
    "轻便",
    "黑色",
    "便携",
    "大容量",
    "无线",
    "长续航",
    "透气",
    "礼盒装",
    "经典",
];
const GENERIC_EN: &[&str] = &[
    "new",
    "hot sale",
    "official store",
    "free shipping",
    "gift",
    "premium",
    "best seller",
    "high quality",
    "2024 model",
    "limited",
];
const GENERIC_ZH: &[&str] = &[
    "新款",
    "热卖",
    "官方旗舰店",
    "包邮",
    "送礼",
    "高端",
    "爆款",
    "品质保证",
    "正品",
    "限量",
];

/// Generates `n` items, seeded; every category gets items in both languages.
pub fn generate_catalog(n: usize, seed: u64) -> Vec<Product> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let spec = &CATEGORIES[i % CATEGORIES.len()];
            generate_item(spec, &format!("SKU-{i:05}"), &mut rng)
        })
        .collect()
}

fn generate_item(spec: &CategorySpec, sku: &str, rng: &mut ChaCha8Rng) -> Product {
    let brand = *spec.brands.choose(rng).expect("non-empty");
    let zh = rng.random_bool(0.55);
    let (nouns, attrs, generic) = if zh {
        (spec.nouns_zh, spec.attrs_zh, GENERIC_ZH)
    } else {
        (spec.nouns_en, spec.attrs_en, GENERIC_EN)
    };
    let noun = *nouns.choose(rng).expect("non-empty");
    // Some listings never name the product type ("Apple 128gb storage 5g"): the hard cases
    // for the product classifier, shared brands and attributes are all it has.
    let noun_shown = rng.random_bool(0.85);
    let mut chosen: Vec<&str> = if noun_shown {
        attrs.choose_multiple(rng, 2).copied().collect()
    } else {
        // ...and then only use attributes several categories share.
        let shared = if zh { SHARED_ATTRS_ZH } else { SHARED_ATTRS_EN };
        vec![
            *attrs.choose(rng).expect("non-empty"),
            *shared.choose(rng).expect("non-empty"),
        ]
        .into_iter()
        .map(|a| {
            if rng.random_bool(0.5) {
                a
            } else {
                *shared.choose(rng).expect("non-empty")
            }
        })
        .collect()
    };
    let sep = if zh { "" } else { " " };
    let mut title_parts = vec![brand.to_string()];
    if rng.random_bool(0.4) {
        title_parts.push(generic.choose(rng).expect("non-empty").to_string());
    }
    title_parts.push(chosen[0].to_string());
    if noun_shown {
        title_parts.push(noun.to_string());
    } else {
        title_parts.push(chosen[1].to_string());
    }
    // Mixed-language titles are common on Chinese shops: add the other language's noun.
    if noun_shown && rng.random_bool(0.25) {
        let other = if zh { spec.nouns_en } else { spec.nouns_zh };
        title_parts.push(other.choose(rng).expect("non-empty").to_string());
    }
    let title = title_parts.join(" ");
    chosen.shuffle(rng);
    let noun = if noun_shown { noun } else { "" };
    let description = if zh {
        format!(
            "{brand}{noun}，{}，{}。{}{}",
            chosen[0],
            chosen[1],
            generic.choose(rng).expect("non-empty"),
            sep
        )
    } else {
        format!(
            "{brand} {noun} with {} and {}. {}.",
            chosen[0],
            chosen[1],
            generic.choose(rng).expect("non-empty")
        )
    };
    let mut tags: Vec<String> = chosen.iter().map(|s| s.to_string()).collect();
    if noun_shown {
        tags.push(noun.to_string());
    }
    let (lo, hi) = spec.price;
    let price = (rng.random_range(lo..hi) * 100.0).round() / 100.0;
    Product {
        sku: sku.to_string(),
        title,
        description,
        tags,
        category: spec.path.to_string(),
        price,
        in_stock: rng.random_bool(0.85),
    }
}

/// The spec of a category path, if it is one of [`CATEGORIES`].
pub fn category_spec(path: &str) -> Option<&'static CategorySpec> {
    CATEGORIES.iter().find(|c| c.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_bilingual() {
        let a = generate_catalog(120, 3);
        assert_eq!(a, generate_catalog(120, 3));
        assert_ne!(a, generate_catalog(120, 4));
        for c in CATEGORIES {
            let items: Vec<_> = a.iter().filter(|p| p.category == c.path).collect();
            assert!(items
                .iter()
                .any(|p| crate::sentiment::is_mostly_chinese(&p.title)));
            assert!(items
                .iter()
                .any(|p| !crate::sentiment::is_mostly_chinese(&p.title)));
        }
    }
}
