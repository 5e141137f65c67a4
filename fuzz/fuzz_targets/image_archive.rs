//! An image archive (oci-archive, docker-archive) as a hostile input: the
//! tar header walk that indexes it must never panic, never read past the
//! file, and every member it indexes must read back whole or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::image::archive::Archive;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("strata-fuzz-archive-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(a) = Archive::index(&path) {
        for name in a.names() {
            let (offset, len) = a.member(&name).unwrap();
            assert!(offset + len <= data.len() as u64, "member {name} indexed past the end");
            let read = a.read(&name, 1 << 20);
            if let Ok(bytes) = read {
                assert_eq!(bytes.len() as u64, len);
                assert_eq!(&bytes[..], &data[offset as usize..(offset + len) as usize]);
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
