//! Property test: pigz1 round trips arbitrary data under arbitrary input chunking and output read sizes.

use proptest::prelude::*;
use z3_codec::{Codec, Compressor, decoder_for};

use crate::support::{ChunkedReader, have, read_in_steps};

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..100_000),
        // Long runs compress well and exercise pigz's output side rather than its input side.
        (any::<u8>(), 0..300_000usize).prop_map(|(byte, len)| vec![byte; len]),
    ]
}

proptest! {
    // Each case starts two processes; a few dozen cases cover chunking well without slowing `cargo test`.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn pigz1_round_trips_any_data_in_any_chunking(
        data in data(),
        sizes in prop::collection::vec(1..70_000usize, 1..8),
        pending in prop::collection::vec(any::<bool>(), 0..4),
        read_size in 1..100_000usize,
    ) {
        if !have("pigz") {
            eprintln!("skipping: `pigz` is not installed");
            return Ok(());
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let decoded = runtime.block_on(async {
            let encoder = Compressor::Pigz1.encoder().unwrap();
            let decoder = decoder_for(Some("pigz1")).unwrap().unwrap();
            let input = ChunkedReader::new(data.clone(), sizes, pending);
            let output = decoder.apply(encoder.apply(Box::new(input)).unwrap()).unwrap();
            read_in_steps(output, read_size).await
        });
        prop_assert_eq!(decoded.len(), data.len());
        prop_assert!(decoded == data);
    }
}
