//! The mbuf-chain model (placeholder: being written; see issue #2).
