#[rmif_core::service]
pub struct Calculator;

fn main() {}
