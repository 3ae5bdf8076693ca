//! End-to-end tests of mmt against the real broker and the real store.
