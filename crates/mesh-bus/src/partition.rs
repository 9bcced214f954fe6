//! The key → partition function, identical to Kafka's default Java
//! partitioner (murmur2), so other Kafka clients place keys the same way.
//!
//! The mesh partitions explicitly with it instead of leaving it to the
//! client: services compute the partition that owns a user's state from the
//! same function when they answer reads.

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rem = chunks.remainder();
    if rem.len() >= 3 {
        h ^= (rem[2] as u32) << 16;
    }
    if rem.len() >= 2 {
        h ^= (rem[1] as u32) << 8;
    }
    if !rem.is_empty() {
        h ^= rem[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition of `key` among `partitions` (> 0).
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kafka_java_partitioner() {
        // Reference values from Kafka's own UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), (-973932308i32) as u32);
        assert_eq!(murmur2(b"foobar"), (-790332482i32) as u32);
        assert_eq!(murmur2(b"a-little-bit-long-string"), (-985981536i32) as u32);
        assert_eq!(
            murmur2(b"a-little-bit-longer-string"),
            (-1486304829i32) as u32
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            (-58897971i32) as u32
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn spreads_keys_over_every_partition() {
        let mut seen = [0u32; 8];
        for i in 0..1000 {
            seen[partition_for(&format!("t/u{i}"), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 80), "{seen:?}");
    }
}
