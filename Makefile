# yuanft build. `make` builds the library, the CLI and the tests, and installs
# nothing. The set-up targets install the Debian packages they need first
# (scripts/deps.sh, guarded: a no-op once installed), then build, then act:
# `make deps` only that; `make test` runs every test (and the bad-input tests
# again under AddressSanitizer); `make demo` the end-to-end demo; `make bench`
# the benchmarks. Installing and building are steps of one recipe, so they
# run in order under -j (a prerequisite would race the compile).

CC      ?= gcc
OPT     ?= -O2 -march=x86-64-v3 -mtune=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -fopenmp -Iinclude -Isrc
LDLIBS  += -lcjson -lmicrohttpd -lz -lm -fopenmp
BUILD   ?= build

# MPI (data-parallel `mpirun -np N yuanft train`): MPI=auto builds with mpicc
# when it compiles and links an MPI program, MPI=1 requires that, MPI=0 builds
# without (yuanft then refuses to run as one of several ranks).
MPI     ?= auto
MPICC   ?= mpicc
ifneq ($(MPI),0)
MPI_OK  := $(shell printf '\043include <mpi.h>\nint main(void) { return MPI_Init(0, 0); }\n' | \
             $(MPICC) -x c - -o /dev/null >/dev/null 2>&1 && echo yes)
endif
ifeq ($(MPI_OK),yes)
CC      := $(MPICC)
CFLAGS  += -DYF_HAVE_MPI
MPI_STATE := mpi
MPI_MSG := MPI yes ($(MPICC)); MPI=0 builds without
else ifeq ($(MPI),1)
$(error MPI=1 but $(MPICC) cannot build an MPI program: install libopenmpi-dev, or build with MPI=0)
else
MPI_STATE := nompi
MPI_MSG := MPI no ($(if $(filter 0,$(MPI)),MPI=0,$(MPICC) not found or not working)): single-process training only
endif
# Said once a build: by a plain `make`, or by the sub-make that a set-up
# target runs after installing (MPI may only just have been installed).
SETUP_GOALS := deps demo test bench clean
ifeq ($(MAKELEVEL),0)
ifeq ($(filter $(SETUP_GOALS),$(MAKECMDGOALS)),)
SAY_BUILD := 1
endif
endif
ifneq ($(SAY_BUILD)$(YF_SETUP_BUILD),)
$(info yuanft build: $(MPI_MSG))
endif
# plain `make` installs nothing: when a header the build needs is missing,
# say where it comes from before the compiler's error
ifeq ($(filter $(SETUP_GOALS),$(MAKECMDGOALS)),)
ifneq ($(shell printf '\043include <cjson/cJSON.h>\n\043include <zlib.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo ok),ok)
$(info yuanft build: cjson/cJSON.h or zlib.h not found: run 'make deps' (installs libcjson-dev and zlib1g-dev, then builds))
endif
endif

SRC     := $(wildcard src/*/*.c src/*/*/*.c)
TOOLS   := $(wildcard tools/*.c)
TESTS   := $(wildcard tests/*.c)
OBJ     := $(SRC:%.c=$(BUILD)/obj/%.o)
TOOLOBJ := $(TOOLS:%.c=$(BUILD)/obj/%.o)
TESTOBJ := $(TESTS:%.c=$(BUILD)/obj/%.o)
# the CLI objects other than main.o are linked into the tests too (cli parsing, commands)
CMDOBJ  := $(filter-out $(BUILD)/obj/tools/main.o,$(TOOLOBJ))

.PHONY: all deps test test-asan asan demo bench clean fuzz fuzz-build
all: $(BUILD)/libyuanft.a $(BUILD)/yuanft $(BUILD)/yuanft-tests $(BUILD)/bench-kernels $(BUILD)/bench-membw $(BUILD)/bench-ops $(BUILD)/bench-products $(BUILD)/bench-serve $(BUILD)/bench-constrain $(BUILD)/bench-quant $(BUILD)/bench-quant-quality

# Set-up targets: install what the target needs (build, test or bench
# packages), then build everything in a sub-make; one line each, so that
# `make -n` installs nothing.
deps:
	@sh scripts/deps.sh build
	@$(MAKE) --no-print-directory YF_SETUP_BUILD=1 all

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# the page at / is built into http.o (.incbin): rebuild it when the page changes
$(BUILD)/obj/src/serve/http.o: src/serve/page.html

# dist.o is the one object that differs with MPI: rebuild it when MPI= changes
$(BUILD)/obj/src/train/dist.o: $(BUILD)/$(MPI_STATE).flag
$(BUILD)/$(MPI_STATE).flag:
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/mpi.flag $(BUILD)/nompi.flag
	@touch $@

$(BUILD)/libyuanft.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/yuanft: $(TOOLOBJ) $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/yuanft-tests: $(TESTOBJ) $(CMDOBJ) $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench-kernels: $(BUILD)/obj/bench/bench_kernels.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench-membw: $(BUILD)/obj/bench/membw.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench-ops: $(BUILD)/obj/bench/bench_ops.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench-products: $(BUILD)/obj/bench/bench_products.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# the load client of bench/serve_bench.sh: the tests' small HTTP client
$(BUILD)/bench-serve: $(BUILD)/obj/bench/serve_bench.o $(BUILD)/obj/tests/http_client.o
	$(CC) $(CFLAGS) -o $@ $^ -lpthread

$(BUILD)/bench-quant: $(BUILD)/obj/bench/bench_quant.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench-quant-quality: $(BUILD)/obj/bench/quant_quality.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench-constrain: $(BUILD)/obj/bench/constrain_bench.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# AddressSanitizer + UBSan build of the same sources, in build/asan.
asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined" \
		LDLIBS="-lcjson -lmicrohttpd -lz -lm -fopenmp -fsanitize=address,undefined" build/asan/yuanft build/asan/yuanft-tests

# test: the suite, the whole suite again under ASan + UBSan, and each fuzz
# harness for a few seconds when clang can build them (tests/run.sh)
test:
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory YF_SETUP_BUILD=1 all
	@$(MAKE) --no-print-directory asan
	@sh scripts/deps.sh fuzz || echo "fuzz: clang and libFuzzer could not be installed: the smoke run is skipped"
	@if command -v $(FUZZCC) >/dev/null 2>&1; then $(MAKE) --no-print-directory fuzz-build; \
	 else echo "fuzz: $(FUZZCC) not found: the harnesses are not built and their smoke run is skipped"; fi
	@sh tests/run.sh

demo:
	@sh scripts/deps.sh build
	@$(MAKE) --no-print-directory YF_SETUP_BUILD=1 all
	@sh scripts/demo.sh

# libFuzzer harnesses (fuzz/, one a file) built with clang, ASan and UBSan
# over the readers they need; `make fuzz` runs each for FUZZ_SECONDS (60) with
# seeds from ../shared/golden (scripts/fuzz.sh; crashes go to fuzz/crashes/).
FUZZCC    ?= clang
FUZZFLAGS := -std=c11 -O1 -g -D_GNU_SOURCE -Iinclude -Isrc -fno-omit-frame-pointer \
             -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Wno-unknown-pragmas
FUZZLIBSRC := src/base/util.c src/base/tensor.c src/base/jsontext.c $(wildcard src/formats/*.c) \
             src/tokenizer/tokenizer.c src/task/data.c src/task/bmes.c src/task/eval.c src/lora/lora.c \
             src/serve/request.c
FUZZNAMES := $(patsubst fuzz/%.c,%,$(filter-out fuzz/fuzz_util.c,$(wildcard fuzz/fuzz_*.c)))
FUZZOBJ   := $(FUZZLIBSRC:%.c=build/fuzz/obj/%.o) build/fuzz/obj/fuzz/fuzz_util.o

# the objects are not intermediate files: keep them between builds
.PRECIOUS: build/fuzz/obj/%.o
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZCC) $(FUZZFLAGS) -MMD -MP -c $< -o $@

build/fuzz/%: build/fuzz/obj/fuzz/%.o $(FUZZOBJ)
	$(FUZZCC) -fsanitize=fuzzer,address,undefined -o $@ $^ -lcjson -lz -lm

fuzz-build:
	@sh scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory -j2 $(FUZZNAMES:%=build/fuzz/%)

fuzz: fuzz-build
	@sh scripts/fuzz.sh $(FUZZNAMES)

bench:
	@sh scripts/deps.sh bench
	@$(MAKE) --no-print-directory YF_SETUP_BUILD=1 all
	@sh bench/run.sh

clean:
	rm -rf build

-include $(wildcard build/fuzz/obj/*/*.d build/fuzz/obj/*/*/*.d)
-include $(OBJ:.o=.d) $(TOOLOBJ:.o=.d) $(TESTOBJ:.o=.d) $(BUILD)/obj/bench/bench_kernels.d $(BUILD)/obj/bench/membw.d $(BUILD)/obj/bench/bench_ops.d $(BUILD)/obj/bench/serve_bench.d $(BUILD)/obj/bench/constrain_bench.d $(BUILD)/obj/bench/bench_quant.d $(BUILD)/obj/bench/quant_quality.d
