//! PF_KEY v2 handler (being written).
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;
