// The distribution tails come from R's standalone math library (Debian's r-mathlib),
// which is R's own nmath built without R: thread-safe, with log-scale tails.
fn main() {
    println!("cargo:rustc-link-lib=dylib=Rmath");
}
