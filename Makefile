# make run   build the module and nginx, run nginx-conf/nginx.conf in the foreground
# make test  the whole suite (scripts/test.sh): unit tests, integration tests
#            against the vendored nginx, and the module built for Debian's nginx
#            relaying in /usr/sbin/nginx, nginx built with the module
#            (--add-module, --add-dynamic-module), and the .deb installed and removed
# make lint  rustfmt and clippy, as CI runs them
# make bench the comparison with nchan (writes BENCHMARKS.md)
# make deb   the Debian package libnginx-mod-http-push (scripts/deb.sh)

.PHONY: run test lint bench deb

run:
	scripts/run.sh

test:
	scripts/test.sh

lint:
	scripts/deps.sh
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

bench:
	scripts/bench.sh

deb:
	scripts/deb.sh
