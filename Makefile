# The README's two commands: `sh vendor/setup.sh && make run` (setup.sh
# first: on a bare Debian it brings make itself) and `make test`. Both
# targets install what is missing (vendor/setup.sh), build, and run.
BUILD ?= build
JOBS ?= $(shell nproc)
BIN = $(BUILD)/luacluster
ASAN_BUILD = build-asan
FUZZ_BUILD = build-fuzz
FUZZ_SECONDS ?= 60
MAIN_EXAMPLE ?= examples/hello_cluster.lua

.PHONY: all build run test test-only test-asan setup setup-test bench clean \
	install deb fuzz

all: build

setup:
	@sh vendor/setup.sh build

setup-test:
	@sh vendor/setup.sh test

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BIN) $(MAIN_EXAMPLE)

# Every spec under the release build.
test: setup-test build
	$(BIN) test $(SPEC_ARGS)

test-only:
	$(BIN) test $(SPEC_ARGS)

# The same specs under ASan + UBSan.
test-asan: setup-test
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(ASAN_BUILD)/luacluster test $(SPEC_ARGS)

# The libFuzzer targets of the HTTP request path (fuzz/fuzz_http.c) and
# of the WebSocket frame parser (fuzz/fuzz_ws.c) and of the TLS read path
# (fuzz/fuzz_tls.c), built with clang under ASan + UBSan, each run for
# FUZZ_SECONDS on a copy of its corpus (fuzz/corpus/http, ws, tls). A
# crash, a hang or a malformed answer fails, naming
# the input kept under $(FUZZ_BUILD)/artifacts/.
fuzz:
	@sh vendor/setup.sh fuzz
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_http fuzz_ws fuzz_tls
	@sh fuzz/run.sh $(FUZZ_BUILD)/fuzz_http $(FUZZ_SECONDS)
	@sh fuzz/run.sh $(FUZZ_BUILD)/fuzz_ws $(FUZZ_SECONDS) ws
	@sh fuzz/run.sh $(FUZZ_BUILD)/fuzz_tls $(FUZZ_SECONDS) tls

bench:
	@sh vendor/setup.sh bench
	@$(MAKE) build
	sh bench/run.sh

# The binary and its man page under PREFIX (default /usr/local); DESTDIR
# is honoured too.
install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

# A Debian package: $(BUILD)/luacluster_<version>_<arch>.deb.
deb: build
	cd $(BUILD) && cpack -G DEB

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
