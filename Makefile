# yuanft build. `make` builds the library, the CLI and the tests; `make test`
# runs every test (and the bad-input tests again under AddressSanitizer);
# `make demo` runs the end-to-end demo; `make bench` the benchmarks.
# Each target first installs missing Debian packages (scripts/deps.sh, guarded).

CC      ?= gcc
OPT     ?= -O2 -march=x86-64-v3 -mtune=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -fopenmp -Iinclude -Isrc
LDLIBS  += -lcjson -lz -lm -fopenmp
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
ifeq ($(MAKELEVEL),0)
$(info yuanft build: $(MPI_MSG))
endif

SRC     := $(wildcard src/*/*.c src/*/*/*.c)
TOOLS   := $(wildcard tools/*.c)
TESTS   := $(wildcard tests/*.c)
OBJ     := $(SRC:%.c=$(BUILD)/obj/%.o)
TOOLOBJ := $(TOOLS:%.c=$(BUILD)/obj/%.o)
TESTOBJ := $(TESTS:%.c=$(BUILD)/obj/%.o)
# the CLI objects other than main.o are linked into the tests too (cli parsing, commands)
CMDOBJ  := $(filter-out $(BUILD)/obj/tools/main.o,$(TOOLOBJ))

.PHONY: all deps test test-asan asan demo bench clean
all: deps $(BUILD)/libyuanft.a $(BUILD)/yuanft $(BUILD)/yuanft-tests $(BUILD)/bench-kernels $(BUILD)/bench-membw $(BUILD)/bench-ops $(BUILD)/bench-products $(BUILD)/bench-quant $(BUILD)/bench-quant-quality

deps:
	@sh scripts/deps.sh build

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

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

$(BUILD)/bench-quant: $(BUILD)/obj/bench/bench_quant.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench-quant-quality: $(BUILD)/obj/bench/quant_quality.o $(BUILD)/libyuanft.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# AddressSanitizer + UBSan build of the same sources, in build/asan.
asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined" \
		LDLIBS="-lcjson -lz -lm -fopenmp -fsanitize=address,undefined" build/asan/yuanft build/asan/yuanft-tests

test:
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan
	@sh tests/run.sh

demo: all
	@sh scripts/demo.sh

bench: all
	@sh scripts/deps.sh bench
	@sh bench/run.sh

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(TOOLOBJ:.o=.d) $(TESTOBJ:.o=.d) $(BUILD)/obj/bench/bench_kernels.d $(BUILD)/obj/bench/membw.d $(BUILD)/obj/bench/bench_ops.d $(BUILD)/obj/bench/bench_quant.d $(BUILD)/obj/bench/quant_quality.d
