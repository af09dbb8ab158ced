# make run   build the module and nginx, run nginx-conf/nginx.conf in the foreground
# make test  the whole suite: unit tests, integration tests against the vendored
#            nginx, and the module built for Debian's nginx loaded in /usr/sbin/nginx
# make lint  rustfmt and clippy, as CI runs them
# make bench the comparison with nchan (writes BENCHMARKS.md)

.PHONY: run test test-vendored test-distro lint bench deps

run:
	scripts/run.sh

deps:
	scripts/deps.sh

test: test-vendored test-distro

test-vendored: deps
	cargo build
	cargo test

test-distro:
	scripts/test-distro.sh

lint: deps
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

bench:
	scripts/bench.sh
