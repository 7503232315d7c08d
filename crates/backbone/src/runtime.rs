//! Finding and loading the ONNX Runtime shared library, once per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

const LIB_NAME: &str = "libonnxruntime.so";
/// `make setup` puts the CPU library here, `make setup-cuda` the one with the CUDA provider.
#[cfg(not(feature = "cuda"))]
const ASSET_DIR: &str = ".graft/onnxruntime";
#[cfg(feature = "cuda")]
const ASSET_DIR: &str = ".graft/onnxruntime-cuda";

/// Where the library is looked for, in order: `ORT_DYLIB_PATH`; beside the executable;
/// `.graft/onnxruntime/` (`.graft/onnxruntime-cuda/` in a `cuda` build) in the current folder
/// or the nearest parent that has one; and that folder in the source tree this binary was
/// built from.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)) {
        out.push(dir.join(LIB_NAME));
    }
    if let Ok(cwd) = std::env::current_dir() {
        let found = cwd.ancestors().map(|d| d.join(ASSET_DIR).join(LIB_NAME)).find(|p| p.is_file());
        out.extend(found);
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(ASSET_DIR).join(LIB_NAME));
    out
}

#[derive(Debug, Clone)]
enum Failure {
    Missing { looked: String },
    Load { path: PathBuf, reason: String },
}

static LOADED: OnceLock<Result<PathBuf, Failure>> = OnceLock::new();
static ENVIRONMENT: OnceLock<ort::environment::Environment> = OnceLock::new();

/// Loads ONNX Runtime (once); returns its environment and the library's path.
pub fn init() -> Result<(&'static ort::environment::Environment, PathBuf)> {
    let loaded = LOADED.get_or_init(|| {
        // Set, it is the user's choice: a missing file is an error, not a cue to load another.
        if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)
            && !p.is_file()
        {
            return Err(Failure::Load { path: p, reason: "ORT_DYLIB_PATH names no file".into() });
        }
        let candidates = candidates();
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            let looked = candidates.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>();
            return Err(Failure::Missing { looked: looked.join(", ") });
        };
        let path = path.canonicalize().unwrap_or_else(|_| path.clone());
        let env = match ort::init_from(&path) {
            Ok(builder) => builder.with_name("graft").build().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match env {
            Ok(env) => {
                let _ = ENVIRONMENT.set(env);
                Ok(path)
            }
            // ort's errors are not Clone, and a load is tried once per process: keep the text.
            Err(reason) => Err(Failure::Load { path, reason }),
        }
    });
    let path = loaded.clone().map_err(|f| match f {
        Failure::Missing { looked } => Error::RuntimeMissing { looked },
        Failure::Load { path, reason } => Error::RuntimeLoad { path, reason },
    })?;
    Ok((ENVIRONMENT.get().expect("set when the load succeeded"), path))
}
