//! Build script of fipsec-ffi.
//!
//! With feature `ipsec-mb`: generates Rust bindings for the part of Intel's
//! IPsec Multi-Buffer library (v1.3, `intel-ipsec-mb.h`) that the accelerated
//! driver uses, and links `libIPSec_MB.a` statically. Without the feature it
//! does nothing, so the kernel staticlib build needs neither clang nor the
//! library.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "ipsec-mb")]
    ipsec_mb::generate();
}

#[cfg(feature = "ipsec-mb")]
mod ipsec_mb {
    use std::path::PathBuf;

    /// Where Debian's libipsec-mb-dev installs the header and the archive;
    /// `IPSEC_MB_INCLUDE_DIR` / `IPSEC_MB_LIB_DIR` override them.
    const DEFAULT_INCLUDE_DIR: &str = "/usr/include";
    const DEFAULT_LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";

    /// Functions the driver calls directly. Everything else (the job API,
    /// key expansion, the direct GCM and ChaCha20-Poly1305 API) is reached
    /// through the function pointers of `IMB_MGR`, which is how the library
    /// dispatches to the code for the CPU it detected.
    const FUNCTIONS: &[&str] = &[
        "alloc_mb_mgr",
        "free_mb_mgr",
        "init_mb_mgr_auto",
        "init_mb_mgr_sse",
        "imb_get_version_str",
        "imb_get_errno",
        "imb_get_strerror",
    ];

    /// Types the driver touches: the manager and its function-pointer table,
    /// the job, the key/context structures of the direct APIs, and the enums
    /// that select algorithms.
    const TYPES: &[&str] = &[
        "IMB_MGR",
        "IMB_JOB",
        "IMB_ARCH",
        "IMB_STATUS",
        "IMB_CIPHER_MODE",
        "IMB_CIPHER_DIRECTION",
        "IMB_HASH_ALG",
        "IMB_CHAIN_ORDER",
        "IMB_KEY_SIZE_BYTES",
        "gcm_key_data",
        "gcm_context_data",
        "chacha20_poly1305_context_data",
    ];

    /// Constants: the version, and the key-schedule sizes.
    const VARS: &[&str] = &[
        "IMB_VERSION_NUM",
        "IMB_DES_KEY_SCHED_SIZE",
        "IMB_SHA1_BLOCK_SIZE",
        "IMB_SHA_256_BLOCK_SIZE",
        "IMB_SHA_384_BLOCK_SIZE",
        "IMB_SHA_512_BLOCK_SIZE",
    ];

    pub fn generate() {
        let include = std::env::var("IPSEC_MB_INCLUDE_DIR")
            .unwrap_or_else(|_| DEFAULT_INCLUDE_DIR.to_string());
        let lib = std::env::var("IPSEC_MB_LIB_DIR").unwrap_or_else(|_| DEFAULT_LIB_DIR.to_string());
        println!("cargo:rerun-if-env-changed=IPSEC_MB_INCLUDE_DIR");
        println!("cargo:rerun-if-env-changed=IPSEC_MB_LIB_DIR");
        let header = PathBuf::from(&include).join("intel-ipsec-mb.h");
        println!("cargo:rerun-if-changed={}", header.display());

        let mut b = bindgen::Builder::default()
            .header(header.to_string_lossy())
            .clang_arg(format!("-I{include}"))
            // LINUX selects the 64-byte alignment of `gcm_key_data`.
            .clang_arg("-DLINUX")
            // No pre-0.53 compatibility macros (they rename union members).
            .clang_arg("-DNO_COMPAT_IMB_API_053")
            .allowlist_recursively(true)
            .prepend_enum_name(false)
            .derive_default(true)
            .derive_debug(false)
            .layout_tests(false)
            .generate_comments(false);
        for f in FUNCTIONS {
            b = b.allowlist_function(f);
        }
        for t in TYPES {
            b = b.allowlist_type(t);
        }
        for v in VARS {
            b = b.allowlist_var(v);
        }
        let bindings = match b.generate() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("fipsec-ffi: bindgen failed on {}: {e}", header.display());
                eprintln!("fipsec-ffi: install libipsec-mb-dev (v1.3) and clang/libclang-dev");
                std::process::exit(1);
            }
        };
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()))
            .join("ipsec_mb_sys.rs");
        if let Err(e) = bindings.write_to_file(&out) {
            eprintln!("fipsec-ffi: cannot write {}: {e}", out.display());
            std::process::exit(1);
        }

        println!("cargo:rustc-link-search=native={lib}");
        println!("cargo:rustc-link-lib=static=IPSec_MB");
    }
}
