#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fipsec_fuzz::ah_input::run(data));
