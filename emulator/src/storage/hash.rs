//! The two hashes Cloud Storage reports for an object's data (API floor): `md5Hash` and `crc32c` (Castagnoli,
//! big-endian), each base64-encoded. Clients check them after a download (`gcloud storage cat`)
//! and after an upload, so they must be exact.

use md5::{Digest, Md5};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// `crc32c` as the API shows it: the four big-endian bytes, base64.
pub fn crc32c_b64(data: &[u8]) -> String {
    crate::util::b64(&crc32c(data).to_be_bytes())
}

/// `md5Hash` as the API shows it: the digest, base64.
pub fn md5_b64(data: &[u8]) -> String {
    crate::util::b64(&Md5::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // RFC 3720 B.4 test vectors, and the value the API documents for "hello world"-style data.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_b64(b""), "AAAAAA==");
        assert_eq!(md5_b64(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
