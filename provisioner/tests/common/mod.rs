//! Shared test doubles for the provisioner's tests.
pub mod fake_kube;
