# moesim / moeprof -- one Makefile for everything.
#   make          build what this machine can (CUDA parts where nvcc is found)
#   make deps     apt-get install what is missing (Debian)
#   make run      deps + build + run the bundled default config
#   make test     deps + build + every test (unit, end-to-end, sanitizers)
#   make bench    benchmarks; figures go to docs/PERFORMANCE.md by hand
#   make asan     unit and end-to-end tests built with ASan + UBSan
#   make fuzz     libFuzzer harnesses, FUZZ_S seconds each (clang; tests/fuzz/README.md)
#   make check-layers  fail on an #include against the folder arrows (docs/ARCHITECTURE.md)
#   make clean

CC       ?= cc
# Optimisation for the normal build; the asan build uses -O1.
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
# -iquote: our headers (sim/sched.h) must not shadow system ones (<sched.h>).
BASE_CPPFLAGS := -D_POSIX_C_SOURCE=200809L
CPPFLAGS += $(BASE_CPPFLAGS) -iquote sim -iquote traces -iquote kernels -iquote profile
WARN     := -std=c11 -Wall -Wextra -Werror
LDLIBS   := -linih -lopenblas -lpthread -lm
# Build folder; `make asan` uses its own so the two never mix.
BUILD    ?= build
# Sanitizer flags, set only by the asan target.
SAN      ?=

# Debian packages the build and tests need (`make deps` installs the missing ones).
DEB_PKGS := gcc make pkg-config libinih-dev libcunit1-dev openmpi-bin libopenmpi-dev \
            libhwloc-dev libopenblas-dev gnuplot-nox python3 time

ALL_CFLAGS := $(WARN) $(CFLAGS) $(SAN) -MMD -MP

# CUDA: built whenever nvcc is found (`make NVCC=` skips it). GPU tests and benchmarks
# (tests/gpu_*.c) run everywhere and skip, saying so, when no device is present.
NVCC       ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
# Hopper (H100/H200) machine code plus PTX the driver can compile for newer GPUs.
CUDA_ARCH  ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS  ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-Werror -Ikernels
CU_SRCS    := $(wildcard kernels/*.cu)
ifneq ($(NVCC),)
CU_OBJS    := $(CU_SRCS:%.cu=$(BUILD)/%.cu.o)
GPU_SRCS   := $(wildcard tests/gpu_test_*.c) $(wildcard tests/gpu_bench_*.c)
GPU_BINS   := $(GPU_SRCS:tests/%.c=$(BUILD)/tests/%)
GPU_TESTS  := $(filter $(BUILD)/tests/gpu_test_%,$(GPU_BINS))
CUDA_LIBS  := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
endif

LIB_SRCS   := $(filter-out sim/main.c,$(wildcard sim/*.c)) $(wildcard traces/*.c) \
              $(wildcard kernels/*.c)
LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS  := $(wildcard tests/test_*.c)
TEST_BINS  := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
BENCH_SRCS := $(wildcard tests/bench_*.c)
BENCH_BINS := $(BENCH_SRCS:tests/%.c=$(BUILD)/tests/%)
E2E        := $(sort $(wildcard tests/e2e_*.sh))
# What the sanitizer pass leaves out: scripts that run no binary of the build (the
# include-arrow check reads sources only), so a second pass would repeat them exactly.
E2E_NO_BIN := tests/e2e_layers.sh
MOESIM     := $(BUILD)/bin/moesim

# ---- moeprof (profile/): MPI programs, compiled and linked with mpicc (OpenMPI).
# profile/*.c but main.c go into libmoeprof.a; tests/mpi_test_*.c are MPI test programs
# that tests/e2e_moeprof.sh runs under mpirun.
MPICC      ?= mpicc
# The GPU path (profile/gpu.c: CUDA backend, NCCL all-to-all) is built where nvcc and
# NCCL's header are both found; tests/mpi_gpu_test_*.c with it (they skip without a GPU).
NCCL_H     := $(if $(NVCC),$(wildcard $(CUDA_HOME)/include/nccl.h))
PROF_SRCS  := $(filter-out profile/main.c $(if $(NCCL_H),,profile/gpu.c),$(wildcard profile/*.c))
PROF_OBJS  := $(PROF_SRCS:%.c=$(BUILD)/%.o)
MOEPROF    := $(BUILD)/bin/moeprof
MPI_SRCS   := $(wildcard tests/mpi_test_*.c tests/mpi_bench_*.c) \
              $(if $(NCCL_H),$(wildcard tests/mpi_gpu_test_*.c))
MPI_BINS   := $(MPI_SRCS:tests/%.c=$(BUILD)/tests/%)
# hwloc (libhwloc-dev): profile/hwtopo.c, moeprof topo and --bind.
PROF_LIBS  := -lhwloc
ifneq ($(NCCL_H),)
PROF_CPPFLAGS := -DMOEPROF_CUDA -isystem $(CUDA_HOME)/include
PROF_GPU_A    := $(BUILD)/libmoecuda.a
PROF_GPU_LIBS := -lnccl $(CUDA_LIBS)
endif

.PHONY: test-bins all deps run test unit e2e bench asan clean check-layers

all: check-layers $(MOESIM) $(TEST_BINS) $(BENCH_BINS) $(GPU_BINS) $(MOEPROF) $(MPI_BINS)

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

# kernels/ and traces/ stand alone (DESIGN.md): they compile with no other folder of the
# project on the include path, so a header of sim/ or profile/ included there does not
# compile (check-layers names it at file:line as well).
$(BUILD)/kernels/%.o: kernels/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/traces/%.o: traces/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libmoesim.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libmoecuda.a: $(CU_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/gpu_%: $(BUILD)/tests/gpu_%.o $(BUILD)/libmoecuda.a $(BUILD)/libmoesim.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ -lcunit $(CUDA_LIBS) $(LDLIBS)

# moesim is linked with MPI (mpicc) for `mpirun moesim sweep`: sim/sweepmpi.c compiled
# again with MOESIM_MPI comes before the library, whose copy of it is MPI-free stubs.
$(BUILD)/sim/sweepmpi.mpi.o: sim/sweepmpi.c
	@mkdir -p $(dir $@)
	$(MPICC) $(CPPFLAGS) -DMOESIM_MPI $(ALL_CFLAGS) -c $< -o $@

$(MOESIM): $(BUILD)/sim/main.o $(BUILD)/sim/sweepmpi.mpi.o $(BUILD)/libmoesim.a
	@mkdir -p $(dir $@)
	$(MPICC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libmoesim.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ -lcunit $(LDLIBS)

# Unit tests of profile/'s MPI-free modules (fit, caltab) take them from libmoeprof.a.
$(BUILD)/tests/test_fit $(BUILD)/tests/test_caltab: $(BUILD)/tests/%: $(BUILD)/tests/%.o \
		$(BUILD)/libmoeprof.a $(BUILD)/libmoesim.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ -lcunit $(LDLIBS)

$(BUILD)/profile/%.o: profile/%.c
	@mkdir -p $(dir $@)
	$(MPICC) $(CPPFLAGS) $(PROF_CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/tests/mpi_%.o: tests/mpi_%.c
	@mkdir -p $(dir $@)
	$(MPICC) $(CPPFLAGS) $(PROF_CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libmoeprof.a: $(PROF_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(MOEPROF): $(BUILD)/profile/main.o $(BUILD)/libmoeprof.a $(PROF_GPU_A) $(BUILD)/libmoesim.a
	@mkdir -p $(dir $@)
	$(MPICC) $(ALL_CFLAGS) -o $@ $^ $(PROF_GPU_LIBS) $(PROF_LIBS) $(LDLIBS)

$(BUILD)/tests/mpi_%: $(BUILD)/tests/mpi_%.o $(BUILD)/libmoeprof.a $(PROF_GPU_A) $(BUILD)/libmoesim.a
	$(MPICC) $(ALL_CFLAGS) -o $@ $^ $(PROF_GPU_LIBS) $(PROF_LIBS) -lcunit $(LDLIBS)

# The include arrows between kernels/, traces/, sim/ and profile/ (docs/ARCHITECTURE.md,
# Layers); tests/e2e_layers.sh shows that it catches a bad include.
check-layers:
	@bash tests/check_layers.sh .

run: deps $(MOESIM)
	$(MOESIM) run configs/examples/default.ini

unit: $(TEST_BINS) $(GPU_TESTS)
	@set -e; for t in $(TEST_BINS) $(GPU_TESTS); do echo "== $$t"; $$t; done

e2e: $(MOESIM) $(MOEPROF) $(MPI_BINS)
	@set -e; for t in $(E2E); do echo "== $$t"; MOESIM=$(MOESIM) MOEPROF=$(MOEPROF) BUILD=$(BUILD) bash $$t; done

# What the suites run, built first on every core (JOBS); the suites themselves run one
# test at a time, so their timings and outputs do not depend on JOBS.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
test-bins: $(MOESIM) $(MOEPROF) $(TEST_BINS) $(GPU_TESTS) $(MPI_BINS)

# The sanitizer pass runs the same suites; CI has time for it.
test: deps
	$(MAKE) -j$(JOBS) test-bins
	$(MAKE) check-layers unit e2e
	$(MAKE) asan

# CUDA's runtime and ASan do not mix: the sanitizer pass is CPU-only.
ASAN_VARS := BUILD=build/asan NVCC= OPT=-O1 \
             SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
asan:
	$(MAKE) -j$(JOBS) $(ASAN_VARS) test-bins
	$(MAKE) $(ASAN_VARS) E2E="$(filter-out $(E2E_NO_BIN),$(E2E))" unit e2e

bench: deps $(BENCH_BINS) $(MOESIM) $(MOEPROF) $(MPI_BINS)
	MOESIM=$(MOESIM) MOEPROF=$(MOEPROF) BUILD=$(BUILD) bash tests/bench.sh
	MOEPROF=$(MOEPROF) bash tests/bench_fidelity.sh

clean:
	rm -rf build

# ---- make fuzz: the libFuzzer harnesses of tests/fuzz (README.md there), built with clang
# into build/fuzz and run FUZZ_S seconds each; never part of `make` or `make test`.
#   make fuzz FUZZ_S=600 FUZZ_TARGETS="config cli" FUZZ_OPTS=-runs=1000000
# (FUZZ_OPTS: more libFuzzer flags; -runs=N stops after N inputs, if sooner.)
# New inputs go to build/fuzz/corpus/NAME (kept between runs); the seeds of
# tests/fuzz/corpus/NAME are only read. A finding stops the run: crash-* files in
# build/fuzz/crashes, replayed with build/fuzz/fuzz_NAME FILE.
FUZZ_S       ?= 60
FUZZ_TARGETS ?= config matrix rtrace cli sweep
FUZZ_OPTS    ?=
FUZZ_CC      ?= clang
FUZZ_PKGS    := clang libclang-rt-14-dev
FUZZ_DIR     := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := $(WARN) -g -O1 $(FUZZ_SAN)
FUZZ_OBJS    := $(LIB_SRCS:%.c=$(FUZZ_DIR)/obj/%.o) $(FUZZ_DIR)/obj/sim/main.o
FUZZ_BINS    := $(FUZZ_DIR)/fuzz_config $(FUZZ_DIR)/fuzz_matrix $(FUZZ_DIR)/fuzz_rtrace \
                $(FUZZ_DIR)/fuzz_cli $(FUZZ_DIR)/fuzz_sweep
# What fuzz_cli's wrappers intercept (tests/fuzz/fuzz_cli.c).
FUZZ_WRAP    := -Wl,--wrap=open,--wrap=fopen,--wrap=mkstemp,--wrap=rename,--wrap=unlink \
                -Wl,--wrap=config_load

.PHONY: fuzz fuzz-build fuzz-deps

fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(FUZZ_PKGS)"

# The library, instrumented for coverage; main.c with its main renamed for fuzz_cli.
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(FUZZ_DIR)/obj/sim/main.o: sim/main.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -Dmain=moesim_main \
	    -MMD -MP -c $< -o $@

$(FUZZ_DIR)/libmoesim.a: $(filter-out %/main.o,$(FUZZ_OBJS))
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_cli: tests/fuzz/fuzz_cli.c $(FUZZ_DIR)/obj/sim/main.o $(FUZZ_DIR)/libmoesim.a
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -o $@ \
	    $(filter %.c %.o %.a,$^) $(FUZZ_WRAP) $(LDLIBS)
# fuzz_sweep caps the points of an input (tests/fuzz/fuzz_sweep.c).
$(FUZZ_DIR)/fuzz_sweep: tests/fuzz/fuzz_sweep.c $(FUZZ_DIR)/libmoesim.a
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -o $@ \
	    $(filter %.c %.o %.a,$^) -Wl,--wrap=swax_count $(LDLIBS)
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libmoesim.a
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -o $@ \
	    $(filter %.c %.o %.a,$^) $(LDLIBS)

fuzz-build: fuzz-deps
	$(MAKE) $(FUZZ_BINS)

# -malloc_limit_mb for fuzz_rtrace: a routing trace may hold 2^28 counts (2 GiB) whole.
fuzz: fuzz-build
	@set -e; mkdir -p $(FUZZ_DIR)/crashes; for t in $(FUZZ_TARGETS); do \
	  [ -x $(FUZZ_DIR)/fuzz_$$t ] || { echo "make fuzz: no harness '$$t' (FUZZ_TARGETS)"; exit 2; }; \
	  o=""; [ $$t = rtrace ] && o="-malloc_limit_mb=4096"; \
	  [ -f tests/fuzz/$$t.dict ] && o="$$o -dict=$(CURDIR)/tests/fuzz/$$t.dict"; \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  echo "== fuzz_$$t, $(FUZZ_S) s"; \
	  $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_S) -print_final_stats=1 $$o $(FUZZ_OPTS) \
	    -artifact_prefix=$(CURDIR)/$(FUZZ_DIR)/crashes/ \
	    $(CURDIR)/$(FUZZ_DIR)/corpus/$$t $(CURDIR)/tests/fuzz/corpus/$$t; \
	done

-include $(FUZZ_OBJS:.o=.d) $(FUZZ_BINS:=.d)

-include $(LIB_OBJS:.o=.d) $(BUILD)/sim/main.d $(BUILD)/sim/sweepmpi.mpi.d $(TEST_BINS:=.d) $(BENCH_BINS:=.d) \
         $(CU_OBJS:.o=.d) $(GPU_BINS:=.d) $(PROF_OBJS:.o=.d) $(BUILD)/profile/main.d \
         $(MPI_BINS:=.d)

# Keep the objects that chains of rules make (tests/gpu_*.o); naming them, not every
# target, lets make notice a new source file's missing object.
.SECONDARY: $(GPU_BINS:=.o)
