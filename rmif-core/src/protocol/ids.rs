//! Stable numeric ids for services and methods, so that dispatch never compares strings per call.
//!
//! Both ids are FNV-1a hashes of the names: 64-bit over the service key, 32-bit over the method
//! name. They are `const fn`, so generated code computes them at compile time, and trivial to
//! reimplement in another language.

const FNV64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

/// FNV-1a 64 of a service key (for example `calculator.Calculator` or `billing/Ledger:2.0`).
pub const fn service_id(service_key: &str) -> u64 {
    let bytes = service_key.as_bytes();
    let mut hash = FNV64_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV64_PRIME);
        i += 1;
    }
    hash
}

/// FNV-1a 32 of a method name (for example `add`).
pub const fn method_id(method_name: &str) -> u32 {
    let bytes = method_name.as_bytes();
    let mut hash = FNV32_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(FNV32_PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_published_fnv1a_vectors() {
        // Reference values of the FNV-1a specification.
        assert_eq!(service_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(service_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(service_id("foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(method_id(""), 0x811c_9dc5);
        assert_eq!(method_id("a"), 0xe40c_292c);
        assert_eq!(method_id("foobar"), 0xbf9c_f968);
    }
}
