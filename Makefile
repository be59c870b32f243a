# totmapsfs — `make run` mounts at /run/totmaps, `make test` runs the whole suite.
# Both install what they need first (Debian packages, then a virtualenv with
# the package and its C extension), so each works on a fresh Debian 12 box as root.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MOUNTPOINT ?= /run/totmaps
ARGS ?=
APT_PACKAGES := fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv util-linux procps systemd systemd-container prometheus prometheus-node-exporter dbus

.PHONY: run test check unit deps venv clean

run: venv
	$(VENV)/bin/totmapsfs $(ARGS) $(MOUNTPOINT)

# TOTMAPSFS_REQUIRE_C: the suite fails, not falls back, if the C parser did not build.
# Every tier (tests/conftest.py); one tier: make test PYTEST_ARGS="-m unit".
test: venv
	TOTMAPSFS_REQUIRE_C=1 $(PY) -m pytest $(PYTEST_ARGS)

# The unit tier alone: no root, no mount, under a minute.
unit: venv
	TOTMAPSFS_REQUIRE_C=1 $(PY) -m pytest -m unit $(PYTEST_ARGS)

# Conventions, enforced (no root, no mount): ruff lint and format, mypy on the
# package, and import-linter's contracts (layers point down; FUSE and trio only
# in the adapter and the service). Configuration: pyproject.toml.
check: venv $(VENV)/.check-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

$(VENV)/.check-installed: pyproject.toml
	$(PY) -m pip install -q -e '.[test,check]'
	touch $@

# Debian packages: libfuse3-dev and pkg-config build pyfuse3, fuse3 gives
# fusermount3, gcc and python3-dev build our C parser; prometheus (promtool)
# and prometheus-node-exporter check the shipped rules and run the boot
# test's fleet path (their services are not started here: the boot test starts
# its own, inside the container), dbus for node_exporter's systemd collector.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: deps $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(wildcard totmapsfs/parser/*.c totmapsfs/proc/*.c totmapsfs/proc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -c "import totmapsfs.parser._speedups, totmapsfs.proc._speedups"
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info totmapsfs/*/*.so

# ---------------------------------------------------------------------------
# Deployment as a systemd service (systemd/totmapsfs.service).
# `make install` puts the package in its own virtualenv under $(PREFIX) (a
# pip install of this tree, which builds the C extension), the unit in
# $(UNITDIR) (with the textfile writer's, disabled; the Prometheus rules go to
# $(PREFIX)/share/prometheus) and an example /etc/default/totmapsfs (only when missing), then
# reloads systemd when it is running. `make uninstall` reverses it (keeping an
# edited /etc/default/totmapsfs). DESTDIR installs into another root, e.g. a
# container's (the venv is built there, then its scripts are pointed back at
# $(PREFIX)); nothing outside DESTDIR is touched and systemd is not reloaded.
PREFIX ?= /opt/totmapsfs
UNITDIR ?= /etc/systemd/system
DEFAULTSDIR ?= /etc/default
DESTDIR ?=
# The system's interpreter for a system service (Debian 12: 3.11, with
# python3-venv and python3-dev from `deps`); else whatever $(PYTHON) is.
INSTALL_PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo $(PYTHON))
_IVENV = $(DESTDIR)$(PREFIX)

.PHONY: install uninstall boot-test

install: deps
	@case "$(PREFIX)" in /?*) ;; *) echo "PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 1;; esac
	test -x $(_IVENV)/bin/python || $(INSTALL_PYTHON) -m venv $(_IVENV)
	@# setuptools builds in ./build and copies whatever an earlier build left there: start clean.
	rm -rf build/lib.* build/bdist.*
	$(_IVENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade .
	@# The service runs the daemon only: the benchmark and its harness stay in the source tree.
	rm -rf "$$($(_IVENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"/totmapsfs/bench \
		"$$($(_IVENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"/totmapsfs/harness
	$(_IVENV)/bin/python -c "import totmapsfs.parser._speedups, totmapsfs.service"
	@if [ -n "$(DESTDIR)" ]; then \
		echo "relocating $(_IVENV) to $(PREFIX)"; \
		grep -lIr -F "$(_IVENV)" $(_IVENV)/bin $(_IVENV)/pyvenv.cfg | xargs -r sed -i "s|$(_IVENV)|$(PREFIX)|g"; \
	fi
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/opt/totmapsfs/|$(PREFIX)/|g' systemd/totmapsfs.service > $(DESTDIR)$(UNITDIR)/totmapsfs.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/totmapsfs.service
	@# The Prometheus rules, for the users' Prometheus server (see README).
	install -D -m 0644 systemd/prometheus/totmapsfs.rules.yml $(_IVENV)/share/prometheus/totmapsfs.rules.yml
	@# The node_exporter textfile writer, installed disabled.
	install -m 0755 systemd/totmapsfs-textfile $(_IVENV)/bin/totmapsfs-textfile
	sed 's|/opt/totmapsfs/|$(PREFIX)/|g' systemd/totmapsfs-textfile.service > $(DESTDIR)$(UNITDIR)/totmapsfs-textfile.service
	install -m 0644 systemd/totmapsfs-textfile.timer $(DESTDIR)$(UNITDIR)/totmapsfs-textfile.timer
	chmod 0644 $(DESTDIR)$(UNITDIR)/totmapsfs-textfile.service
	@if [ -e $(DESTDIR)$(DEFAULTSDIR)/totmapsfs ]; then \
		echo "keeping existing $(DESTDIR)$(DEFAULTSDIR)/totmapsfs"; \
	else \
		install -D -m 0644 systemd/totmapsfs.default $(DESTDIR)$(DEFAULTSDIR)/totmapsfs; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload && echo "installed; start with: systemctl enable --now totmapsfs (running already: systemctl restart totmapsfs);" \
			"for node_exporter: systemctl enable --now totmapsfs-textfile.timer"; \
	else \
		echo "installed; systemd is not running here (or DESTDIR is set): skipped systemctl daemon-reload"; \
	fi

uninstall:
	@case "$(PREFIX)" in /?*) ;; *) echo "PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 1;; esac
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now totmapsfs-textfile.timer 2>/dev/null || true; \
		systemctl disable --now totmapsfs.service 2>/dev/null || true; \
	fi
	rm -f $(DESTDIR)$(UNITDIR)/totmapsfs.service $(DESTDIR)$(UNITDIR)/totmapsfs-textfile.service \
		$(DESTDIR)$(UNITDIR)/totmapsfs-textfile.timer
	@if [ -e $(DESTDIR)$(DEFAULTSDIR)/totmapsfs ]; then \
		if cmp -s systemd/totmapsfs.default $(DESTDIR)$(DEFAULTSDIR)/totmapsfs; then \
			rm -f $(DESTDIR)$(DEFAULTSDIR)/totmapsfs; \
		else \
			echo "keeping edited $(DESTDIR)$(DEFAULTSDIR)/totmapsfs"; \
		fi; \
	fi
	@# Only a directory that is a virtualenv with totmapsfs in it is removed.
	@if [ -f $(_IVENV)/pyvenv.cfg ] && [ -e $(_IVENV)/bin/totmapsfs ]; then \
		echo "rm -rf $(_IVENV)"; rm -rf $(_IVENV); \
	elif [ -e $(_IVENV) ]; then \
		echo "not removing $(_IVENV): not a totmapsfs virtualenv" >&2; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload; \
	else \
		echo "uninstalled; systemd is not running here (or DESTDIR is set): skipped systemctl daemon-reload"; \
	fi

# A real systemd boot (systemd-nspawn) that installs with DESTDIR, starts,
# kills, restarts and stops the service; also part of `make test`.
boot-test: venv
	$(PY) -m pytest -v tests/systemd $(PYTEST_ARGS)

# Performance (issue 4): mounts totmapsfs in a temporary directory, makes its
# own workloads and prints medians [min-max] with the targets; root, a few
# minutes. BENCH_ARGS=--quick for ~30 s; pip install '.[plot]' for the PNG.
.PHONY: bench
bench: venv
	$(PY) -m totmapsfs.bench $(BENCH_ARGS)

# Reliability (issue 5): the churn/pid-reuse, load and fault tests for
# STRESS_SECONDS each instead of their few seconds in `make test`; figures
# are printed as they come.
STRESS_SECONDS ?= 120
.PHONY: stress
stress: venv
	TOTMAPSFS_REQUIRE_C=1 TOTMAPSFS_STRESS_SECONDS=$(STRESS_SECONDS) $(PY) -m pytest -s \
		tests/stress/test_churn.py tests/stress/test_load.py tests/stress/test_faults.py $(PYTEST_ARGS)

# ---------------------------------------------------------------------------
# Parser hardening (issue 5): fuzzing, sanitizers, valgrind. Each target builds
# its own copy of the package with the C extensions compiled from SPEEDUPS_SRC
# (the parser's files) and PROC_SPEEDUPS_SRC (the proc reader's)
# (point it at a copy with a planted bug to see a target fail) and puts it first
# on PYTHONPATH (PYTHONSAFEPATH=1 keeps the source tree's build out of the way).
#
# fuzz:     tests/programs/fuzz_parser.py, a differential atheris target (C parser vs
#           the Python reference, same result or same exception), for
#           FUZZ_SECONDS from tests/corpus/parser. What it finds stays in
#           $(FUZZ_DIR)/corpus across runs; a failing input is written to
#           $(FUZZ_DIR)/artifacts/ and fails the target (replay one with
#           `.venv/bin/python tests/programs/fuzz_parser.py --replay FILE`). Coverage
#           guidance: atheris's bytecode instrumentation of the Python
#           reference and formatter, plus the C extension's own edges and
#           comparisons: it is built here with clang -fsanitize=fuzzer-no-link.
#           (`make test` runs a 45 s version: tests/stress/test_fuzz.py.)
# asan:     the extension built with gcc's AddressSanitizer and UBSan, no
#           recovery, then the parser suite's C half (the Python half runs no C)
#           and a replay of the seed and fuzz corpora on it (each input also in an exact-size malloc block,
#           so a one-byte over-read is caught). A report aborts the process and
#           fails the target. detect_leaks=0: CPython does not free everything
#           at exit; leaks in the extension are test_parser's refcount/
#           tracemalloc test's job and valgrind's. (Fuzzing itself cannot run
#           under gcc's ASan: its runtime takes the coverage callbacks from
#           atheris's libFuzzer, leaving it blind.)
# valgrind: memcheck, PYTHONMALLOC=malloc so each Python object is its own
#           block, over the same replay and the C half of the parser suite
#           (less the GIL test: valgrind runs one thread at a time; less the
#           tracemalloc leak test: valgrind's leak check does that job, and
#           CPython 3.11's tracemalloc loses its own traceback records under
#           it; a tenth of the hypothesis examples, each costs ~50x more here).
#           It fails on any report with the extension on one of its stacks
#           (the error's, the allocation's or the origin's), definite leaks
#           included. Reports about CPython 3.11 and glibc alone are counted
#           and listed in $(VALGRIND_DIR) but not failed on: uninitialised
#           digits from int.from_bytes() and AVX2 wmemcmp reading in 32-byte
#           words, both outside this project. No suppression file is needed.
FUZZ_SECONDS ?= 600
FUZZ_DIR ?= build/fuzz
FUZZ_ARGS ?=
# Length of the fuzz run that asan/valgrind make when no fuzz corpus exists yet.
CORPUS_SECONDS ?= 60
SPEEDUPS_SRC ?= totmapsfs/parser/_speedups.c totmapsfs/parser/_format.c
PROC_SPEEDUPS_SRC ?= totmapsfs/proc/_speedups.c totmapsfs/proc/_fields.c totmapsfs/proc/_batch.c
ASAN_DIR ?= build/asan
VALGRIND_DIR ?= build/valgrind
FUZZ_SEEDS := tests/corpus/parser
comma := ,
FUZZ_FLAGS := -dict=tests/corpus/parser.dict -timeout=30 -rss_limit_mb=4096 -print_final_stats=1

# $(call build_copy,DIR,COMPILER AND FLAGS): the package's Python files and the
# extension built from SPEEDUPS_SRC with those flags, as DIR/totmapsfs.
define build_copy
	rm -rf $(1)/totmapsfs && mkdir -p $(1)
	cp -r totmapsfs $(1)/ && find $(1)/totmapsfs \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
	$(2) -shared -fPIC -g -std=c11 -Wall -Wextra \
		-I"$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("include"))')" $(SPEEDUPS_SRC) \
		-o $(1)/totmapsfs/parser/_speedups$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
	$(2) -shared -fPIC -g -std=gnu11 -Wall -Wextra \
		-I"$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("include"))')" $(PROC_SPEEDUPS_SRC) \
		-o $(1)/totmapsfs/proc/_speedups$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
endef

# $(call check_copy,ENV,DIR): fail unless ENV really loads DIR's extension.
define check_copy
	$(1) $(PY) -c 'import sys, totmapsfs.parser._speedups as s; \
		sys.exit(0 if s.__file__.startswith("$(abspath $(2))/") else "wrong extension loaded: " + s.__file__)'
endef

.PHONY: fuzz asan valgrind fuzz-deps valgrind-deps

fuzz-deps: venv
	@command -v clang >/dev/null || { echo "installing clang"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang; }
	@$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install -q 'atheris>=2.3'

valgrind-deps:
	@command -v valgrind >/dev/null || { echo "installing valgrind"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }

fuzz: fuzz-deps
	$(call build_copy,$(FUZZ_DIR)/ext,clang -O1 -fsanitize=fuzzer-no-link)
	mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/artifacts
	PYTHONPATH=$(abspath $(FUZZ_DIR)/ext) PYTHONSAFEPATH=1 TOTMAPSFS_REQUIRE_C=1 $(PY) tests/programs/fuzz_parser.py \
		-max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) -artifact_prefix=$(FUZZ_DIR)/artifacts/ $(FUZZ_ARGS) \
		$(FUZZ_DIR)/corpus $(FUZZ_SEEDS)
	@echo "fuzz corpus: $$(ls $(FUZZ_DIR)/corpus | wc -l) inputs in $(FUZZ_DIR)/corpus"

# The corpus that asan and valgrind replay: a short fuzz run makes one if none exists.
$(FUZZ_DIR)/corpus:
	$(MAKE) fuzz FUZZ_SECONDS=$(CORPUS_SECONDS)

# TOTMAPSFS_TIMEOUT_SCALE: the tests' timeouts are for the plain build; under ASan the every-offset
# truncation test of a live 80 KB smaps (80,000 parses) took over the unit tier's 120 s.
ASAN_ENV = PYTHONPATH=$(abspath $(ASAN_DIR)) PYTHONSAFEPATH=1 PYTHONMALLOC=malloc TOTMAPSFS_REQUIRE_C=1 TOTMAPSFS_TIMEOUT_SCALE=5 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:check_initialization_order=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

asan: venv $(FUZZ_DIR)/corpus
	$(call build_copy,$(ASAN_DIR),gcc -O1 -fsanitize=address$(comma)undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
	$(call check_copy,$(ASAN_ENV),$(ASAN_DIR))
	$(ASAN_ENV) $(PY) tests/programs/fuzz_parser.py --replay $(FUZZ_SEEDS) $(FUZZ_DIR)/corpus
	$(ASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/unit/test_parser.py tests/unit/test_parser_generated.py tests/unit/test_parser_c.py tests/unit/test_proc_text.py -k 'not python' $(PYTEST_ARGS)
	@echo "asan: no AddressSanitizer or UBSan report"

VALGRIND = PYTHONPATH=$(abspath $(VALGRIND_DIR)) PYTHONSAFEPATH=1 PYTHONMALLOC=malloc TOTMAPSFS_REQUIRE_C=1 TOTMAPSFS_TIMEOUT_SCALE=10 \
	valgrind -q --tool=memcheck --track-origins=yes --num-callers=40 --leak-check=full \
	--show-leak-kinds=definite --errors-for-leak-kinds=definite --log-file=$(VALGRIND_DIR)/memcheck.%p.log

# The verdict over the logs so far. One record per report: valgrind ends each
# with a bare "==PID== " line; a record naming _speedups is ours.
VALGRIND_VERDICT = awk 'BEGIN { RS = "==[0-9]+== \n" } \
	/_speedups/ { print; ours++; next } \
	/[A-Za-z]/ { other++ } \
	END { printf "valgrind: %d report(s) involving _speedups, %d about CPython/glibc alone (see $(VALGRIND_DIR))\n", \
	      ours, other; exit (ours > 0) }' $(VALGRIND_DIR)/memcheck.*.log

valgrind: venv valgrind-deps $(FUZZ_DIR)/corpus
	$(call build_copy,$(VALGRIND_DIR),gcc -O1)
	$(call check_copy,PYTHONPATH=$(abspath $(VALGRIND_DIR)) PYTHONSAFEPATH=1,$(VALGRIND_DIR))
	rm -f $(VALGRIND_DIR)/memcheck.*.log
	$(VALGRIND) $(PY) tests/programs/fuzz_parser.py --replay $(FUZZ_SEEDS) $(FUZZ_DIR)/corpus
	@$(VALGRIND_VERDICT)
	TOTMAPSFS_EXAMPLES_SCALE=0.1 $(VALGRIND) $(PY) -m pytest -q -p no:cacheprovider tests/unit/test_parser.py tests/unit/test_parser_generated.py tests/unit/test_parser_c.py tests/unit/test_proc_text.py \
		-k 'not python and not gil_released and not memory_leaks' $(PYTEST_ARGS)
	@$(VALGRIND_VERDICT)

# ---------------------------------------------------------------------------
# Other kernels (issue 19): tests on a kernel image booted under QEMU with this
# machine's userland and this checkout (tests/vm/run: virtme-ng, software
# emulation, ~15x slower than the host; root).
#   make vm-test KERNEL=/path/to/vmlinuz [TIERS="unit mount"] [PYTEST_ARGS="tests/unit/test_cache.py -x"]
#   make kernel-6.1    Debian 12's kernel (what linux-image-amd64 depends on) unpacked into
#                      build/kernels/6.1 with its modules: nothing installed, /boot untouched
#   make test-6.1      KERNEL_TESTS, what differs between kernels, on that kernel (CI runs it)
KERNEL ?=
TIERS ?=
VM_VENV ?= build/vng-venv
VNG_VERSION ?= 1.42
KERNELS_DIR ?= build/kernels
KERNEL_6_1 := $(KERNELS_DIR)/6.1/vmlinuz
# What differs between kernels: pid translation and the namespaces (nsfs ioctls
# are 6.11+), the access rule's version gates, the cache's generation (status
# lines), the duty, the daemon's life (start, signals, stderr, unmount).
KERNEL_TESTS ?= tests/unit/test_access.py tests/unit/test_cache.py \
	tests/mount/test_pid_namespaces.py tests/mount/test_user_namespaces.py tests/mount/test_cgroup_namespaces.py \
	tests/mount/test_containers.py tests/mount/test_security.py tests/mount/test_mount.py tests/mount/test_daemon.py \
	tests/stress/test_duty.py tests/stress/test_stderr.py
_tiers_expr = $(subst $(eval) , or ,$(strip $(TIERS)))

.PHONY: vm-deps vm-test kernel-6.1 test-6.1

# qemu-system-x86 runs the guest, busybox-static is its initramfs's shell,
# virtme-ng (PyPI, in its own venv: not a dependency of the package) boots it.
vm-deps:
	@missing=$$(for p in qemu-system-x86 busybox-static; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x $(VM_VENV)/bin/vng && $(VM_VENV)/bin/vng --version | grep -qx 'virtme-ng $(VNG_VERSION)' || { \
		$(PYTHON) -m venv $(VM_VENV) && $(VM_VENV)/bin/pip install -q 'virtme-ng==$(VNG_VERSION)'; }

vm-test: venv vm-deps
	@test -n "$(KERNEL)" || { echo "usage: make vm-test KERNEL=/path/to/vmlinuz [TIERS=...] [PYTEST_ARGS=...]" >&2; exit 2; }
	VNG=$(VM_VENV)/bin/vng tests/vm/run $(KERNEL) $(if $(_tiers_expr),-m '$(_tiers_expr)') $(PYTEST_ARGS)

$(KERNEL_6_1):
	@pkg=$$(apt-cache depends linux-image-amd64 | awk '$$1 == "Depends:" && $$2 ~ /^linux-image-6\.1\./ { print $$2; exit }'); \
	test -n "$$pkg" || { echo "linux-image-amd64 here does not depend on a 6.1 kernel (not Debian 12?)" >&2; exit 1; }; \
	rm -rf $(dir $@) && mkdir -p $(dir $@) && cd $(dir $@) && \
	{ apt-get download $$pkg 2>/dev/null || { apt-get update -qq && apt-get download $$pkg; }; } && \
	dpkg -x $${pkg}_*.deb . && rm $${pkg}_*.deb && \
	version=$${pkg#linux-image-} && depmod -b . $$version && \
	ln -s boot/vmlinuz-$$version vmlinuz && echo "$$pkg unpacked in $(dir $@)"

kernel-6.1: $(KERNEL_6_1)

test-6.1: $(KERNEL_6_1)
	$(MAKE) vm-test KERNEL=$(KERNEL_6_1) PYTEST_ARGS="$(KERNEL_TESTS) $(PYTEST_ARGS)"
