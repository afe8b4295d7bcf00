# cairn - the one entry point.
#   make          build bin/cairnd and bin/cairn
#   make run      install what is missing, build, start cairnd on loopback
#   make test     install what is missing, build with sanitizers, run every test
#   make bench    run the benchmarks beside their peers (figures: bench/RESULTS.md)

CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -MMD -MP
LIBS     = -lmicrohttpd -lcurl -lcrypto -lzstd -llmdb -lexpat -pthread
CLI_LIBS = -lcurl -lcrypto -lexpat -llmdb

TEST_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

COMMON  = common/util.c common/log.c common/sigv4.c common/checksum.c
STORAGE = storage/codec.c storage/index.c storage/store.c storage/store_tier.c storage/tier.c \
          storage/multipart.c
SERVER  = server/main.c server/config.c server/http.c server/upload.c server/serve.c \
          server/native.c server/ops.c server/buf.c server/creds.c server/s3.c \
          server/s3_bucket.c server/s3_object.c server/s3_multipart.c server/s3_body.c \
          server/awschunked.c server/metrics.c server/admin.c
CLIENT  = client/cairn.c server/buf.c storage/index.c
UNIT    = $(wildcard tests/unit/test_*.c)

REL = build/release
TST = build/test

obj = $(patsubst %.c,$(1)/%.o,$(2))

.PHONY: all run test bench deps test-deps bench-deps unit clean format
all: bin/cairnd bin/cairn

bin/cairnd: $(call obj,$(REL),$(COMMON) $(STORAGE) $(SERVER))
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

bin/cairn: $(call obj,$(REL),$(COMMON) $(CLIENT))
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(CLI_LIBS)

$(REL)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(TST)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -c -o $@ $<

# sanitizer builds of the binaries, used by the integration tests
$(TST)/bin/cairnd: $(call obj,$(TST),$(COMMON) $(STORAGE) $(SERVER))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -o $@ $^ $(LIBS)

$(TST)/bin/cairn: $(call obj,$(TST),$(COMMON) $(CLIENT))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -o $@ $^ $(CLI_LIBS)

# one cmocka binary per tests/unit/test_*.c, linked with the store and common code
$(TST)/unit/%: $(TST)/tests/unit/%.o $(call obj,$(TST),$(COMMON) $(STORAGE))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -o $@ $^ -lcmocka $(LIBS)

$(TST)/unit/test_sigv4: $(TST)/tests/unit/test_sigv4.o $(call obj,$(TST),$(COMMON))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -o $@ $^ -lcmocka -lcrypto

$(TST)/unit/test_awschunked: $(TST)/tests/unit/test_awschunked.o \
                             $(call obj,$(TST),$(COMMON) server/awschunked.c)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -o $@ $^ -lcmocka -lcrypto

$(TST)/unit/sigv4_cli: $(TST)/tests/unit/sigv4_cli.o $(call obj,$(TST),$(COMMON))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -o $@ $^ -lcrypto

# an LD_PRELOAD library that tells whether what an answer acknowledges is on disk
$(TST)/lib/durability_shim.so: tests/integration/durability_shim.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O1 -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl -lpthread

UNIT_BINS = $(patsubst tests/unit/%.c,$(TST)/unit/%,$(UNIT))
TEST_BINS = $(TST)/bin/cairnd $(TST)/bin/cairn $(UNIT_BINS) $(TST)/lib/durability_shim.so \
            $(if $(wildcard tests/unit/sigv4_cli.c),$(TST)/unit/sigv4_cli)

deps:
	@sh deploy/install-deps.sh build

test-deps:
	@sh deploy/install-deps.sh build test

bench-deps:
	@sh deploy/install-deps.sh build bench

run: deps all
	@mkdir -p cairn-data
	exec ./bin/cairnd --listen $${CAIRN_LISTEN:-127.0.0.1:8080} --data $${CAIRN_DATA:-./cairn-data}

test: test-deps
	@$(MAKE) --no-print-directory $(TEST_BINS) > build-test.log 2>&1 || { cat build-test.log; exit 1; }
	@sh tests/run.sh

bench: bench-deps all
	@sh bench/run.sh
	@bash bench/s3.sh
	@python3 bench/tier.py
	@CLIENTS=8 python3 bench/tier.py
	@python3 bench/tier_ranges.py
	@python3 bench/tier_shared.py
	@python3 bench/tier_list.py 3000
	@python3 bench/tier_tls.py
	@bash bench/metrics.sh
	@python3 bench/warmup.py
	@python3 bench/long_requests.py

format:
	clang-format -i common/*.[ch] storage/*.[ch] server/*.[ch] client/*.c tests/unit/*.c

clean:
	rm -rf build bin build-test.log

-include $(shell find build -name '*.d' 2>/dev/null)
