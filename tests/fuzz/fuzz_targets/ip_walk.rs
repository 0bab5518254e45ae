#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fipsec_fuzz::ip_walk::run(data));
