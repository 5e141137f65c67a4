//! A layer tar as a hostile input: unpacking must never panic and must
//! never write outside the layer directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::layers::apply::{BlobCheck, apply_layer};
use strata::layers::Digest;
use strata::image::source::BlobSource;

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("strata-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (blob, dest, outside) = (base.join("blob"), base.join("layer"), base.join("outside"));
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(&blob, data).unwrap();
    let digest = Digest::of(data);
    let source = BlobSource::File(blob.clone());
    let check = BlobCheck { source: &source, media_type: "application/vnd.oci.image.layer.v1.tar", digest: Some(&digest), diff_id: &digest, size: None };
    let _ = apply_layer(check, &dest);
    // Nothing may appear beside the layer dir.
    let beside: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(beside.len(), 3, "unpacking wrote beside the layer: {beside:?}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "unpacking wrote outside the layer");
    let _ = std::fs::remove_dir_all(&base);
});
