# ngx_http_push for nginx's own build system, part 2: nginx's ./configure
# reads this file after writing objs/Makefile; it adds the rule that builds
# the Rust static library named in `config`.
#
# cargo tracks the Rust sources and dependencies itself, so make runs it
# every time (the rule depends on a target that is never a file); when
# nothing changed, cargo leaves the library untouched and nothing relinks.
# Everything cargo writes goes to its target directory under objs (or
# NGX_PUSH_TARGET_DIR); nothing is written into this repository.

if [ -n "$ngx_push_link" ]; then

    ngx_push_repo=`cd "$ngx_addon_dir" && pwd`
    ngx_push_nginx_src=`pwd`

    cat << END                                                >> $NGX_MAKEFILE

# ngx_http_push (Rust): the static library, built by cargo against this tree.
$ngx_push_lib:	ngx_http_push_cargo_always
	cd "$ngx_push_repo" && \\
	NGINX_SOURCE_DIR="$ngx_push_nginx_src" \\
	NGINX_BUILD_DIR="$ngx_push_objs" \\
	$ngx_push_cargo rustc --locked \\
		--manifest-path "$ngx_push_repo/Cargo.toml" \\
		-p ngx_http_push --lib --crate-type staticlib \\
		--no-default-features \\
		--profile $ngx_push_profile \\
		--target-dir "$ngx_push_target_dir" \\
		$NGX_PUSH_CARGO_OPT

ngx_http_push_cargo_always:

END

    if [ "$ngx_push_link" = DYNAMIC ]; then
        # The module's .so has no C sources of ours to hang the dependency
        # on: name the library as its prerequisite directly.
        cat << END                                            >> $NGX_MAKEFILE
$NGX_OBJS${ngx_dirsep:-/}ngx_http_push_module$ngx_modext:	$ngx_push_lib

END
    fi
fi
