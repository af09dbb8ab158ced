// nginx-sys exports where it configured nginx (DEP_NGINX_BUILD_DIR); pass it
// on so the integration tests can find the nginx binary the module was built
// against (for the vendored build it is `<build_dir>/nginx`).
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = std::env::var("DEP_NGINX_BUILD_DIR") {
        println!("cargo::rustc-env=PUSH_NGINX_BUILD_DIR={dir}");
    }
}
