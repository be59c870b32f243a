# totmapsfs. Deploy with the Debian package: `make deb` (root: installs the
# build tools with apt-get), then `apt install ./totmapsfs_*.deb`. From the
# source tree: `make run` mounts at /run/totmaps, `make test` runs the whole
# suite (both root: `make deps` first), `make check` the conventions (no root).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MOUNTPOINT ?= /run/totmaps
ARGS ?=
# The one place of the version is totmapsfs/__init__.py (pyproject.toml reads it too).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' totmapsfs/__init__.py)

# Debian packages, by what needs them. Only `deps`, `install` and `deb` run
# apt-get (as root); the venv targets (check, unit, venv) only say what is missing.
# BUILD: the venv: pyfuse3 has no wheel on PyPI (pip builds it against
# libfuse3 with pkg-config), gcc and python3-dev build our C extensions,
# python3-venv gives Debian's python3 its venv module.
BUILD_PACKAGES := python3-venv python3-dev gcc libfuse3-dev pkg-config
# RUN: fusermount3, which libfuse and the unit call.
RUN_PACKAGES := fuse3
# TEST: the suite's tools. prometheus (promtool) and prometheus-node-exporter
# check the shipped rules and run the boot test's fleet path (their services
# are not started here: the boot test starts its own, inside the container),
# dbus for node_exporter's systemd collector, git for the fresh-clone tests.
# python3-pyfuse3, python3-trio, python3-outcome: the .deb's Depends, which the
# boot test's container (this host's /usr, no network) installs it against.
TEST_PACKAGES := util-linux procps git systemd systemd-container prometheus prometheus-node-exporter dbus \
	python3-pyfuse3 python3-trio python3-outcome
# DEB: what `make deb` builds and checks the package with (debian/control's Build-Depends, and lintian).
DEB_PACKAGES := dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all-dev python3-setuptools help2man lintian

# $(call missing,PACKAGES): those of PACKAGES not installed (none where there is no dpkg).
missing = $$(command -v dpkg-query >/dev/null && for p in $(1); do \
	dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done)
# $(call apt_need,PACKAGES): install the missing ones (root).
apt_need = @missing="$(call missing,$(1))"; if [ -n "$$missing" ]; then \
	echo "installing Debian packages:" $$missing; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
# $(call apt_check,PACKAGES): stop with one line naming the missing ones (no root needed to look).
apt_check = @missing="$(call missing,$(1))"; if [ -n "$$missing" ]; then \
	echo "missing Debian packages:" $$missing "(as root: make deps, or apt-get install" $$missing")" >&2; exit 1; fi

.PHONY: run test check unit deps venv clean

run: deps venv
	$(VENV)/bin/totmapsfs $(ARGS) $(MOUNTPOINT)

# TOTMAPSFS_REQUIRE_C: the suite fails, not falls back, if the C parser did not build.
# Every tier (tests/conftest.py); one tier: make test PYTEST_ARGS="-m unit".
# Not the walk duty's figures (tests/stress/test_duty.py): shares of time
# measured on a real machine, statistical, so in `make stress` only.
test: deps venv
	TOTMAPSFS_REQUIRE_C=1 $(PY) -m pytest --ignore=tests/stress/test_duty.py $(PYTEST_ARGS)

# The unit tier alone: no root, no mount, under a minute.
unit: venv
	TOTMAPSFS_REQUIRE_C=1 $(PY) -m pytest -m unit $(PYTEST_ARGS)

# Conventions, enforced (no root, no mount, no apt): ruff lint and format, mypy on the
# package, and import-linter's contracts (layers point down; FUSE and trio only
# in the adapter and the service). Configuration: pyproject.toml. The tools come
# from pip (the "check" extra); the venv needs BUILD_PACKAGES (see above).
check: venv $(VENV)/.check-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

$(VENV)/.check-installed: pyproject.toml
	$(PY) -m pip install -q -e '.[test,check]'
	touch $@

# Everything the targets here use, as root: the venv's build, the daemon's
# run time, the suite's tools and the package build.
deps:
	$(call apt_need,$(BUILD_PACKAGES) $(RUN_PACKAGES) $(TEST_PACKAGES) $(DEB_PACKAGES))

venv:
	$(call apt_check,$(BUILD_PACKAGES))
	@$(MAKE) --no-print-directory $(VENV)/.installed

# The editable install: the tests and the benchmark import totmapsfs.harness
# and totmapsfs.bench from this tree (the built wheel leaves them out).
$(VENV)/.installed: pyproject.toml setup.py $(wildcard totmapsfs/parser/*.c totmapsfs/parser/*.h totmapsfs/proc/*.c totmapsfs/proc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -c "import totmapsfs.parser._speedups, totmapsfs.proc._speedups"
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info totmapsfs/*/*.so

# ---------------------------------------------------------------------------
# The Debian package: totmapsfs_$(DEB_VERSION)_<arch>.deb in $(DEB_DIR), built
# (debhelper, dh-python, pybuild: debian/) from a copy of this tree as it is
# (less what .gitignore names), against Debian's python3-pyfuse3 and
# python3-trio; lintian must find no error. debian/changelog is written here
# from VERSION (the one version); DEB_VERSION=0.0.9 builds a lower one (the
# boot test's upgrade). Install it with `apt install ./totmapsfs_*.deb`.
DEB_VERSION ?= $(VERSION)
DEB_DIR ?= .
DEB_BUILD = build/deb-$(DEB_VERSION)
DEB_MAINTAINER := $(shell sed -n 's/^Maintainer: //p' debian/control)

.PHONY: deb
deb:
	$(call apt_need,$(DEB_PACKAGES))
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/src
	tar -c --exclude-vcs --exclude-vcs-ignores --exclude=./build --exclude=./$(VENV) --exclude='./*.deb' . \
		| tar -x -C $(DEB_BUILD)/src
	printf '%s\n' 'totmapsfs ($(DEB_VERSION)) unstable; urgency=medium' '' \
		'  * Built from the source tree$(shell git describe --always --dirty 2>/dev/null | sed "s/^/ at /").' '' \
		' -- $(DEB_MAINTAINER)  $(shell date -R)' >$(DEB_BUILD)/src/debian/changelog
	@# The system's PATH: the package is built for Debian's python3, not a pyenv's or a venv's.
	cd $(DEB_BUILD)/src && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -b -us -uc
	lintian --fail-on error --info $(DEB_BUILD)/totmapsfs_$(DEB_VERSION)_*.changes
	mkdir -p $(DEB_DIR) && cp $(DEB_BUILD)/totmapsfs_$(DEB_VERSION)_*.deb $(DEB_DIR)/

# ---------------------------------------------------------------------------
# `make install`: for a host without the package (not Debian, or a quick try
# from source): the daemon and its run-time dependencies (pyfuse3, trio) in
# their own virtualenv under $(PREFIX), built by pip from this tree; the
# commands linked into $(BINDIR), which is on systemd's executable search path
# (the units name totmapsfs and totmapsfs-textfile without a directory, so the
# same unit files serve the package's /usr/bin); the units in $(UNITDIR) (the
# textfile writer's disabled), the Prometheus rules in $(PREFIX)/share/prometheus,
# an example /etc/default/totmapsfs (only when there is none); then reloads
# systemd when it is running. `make uninstall` reverses it (keeping an edited
# /etc/default/totmapsfs). DESTDIR installs into another root, e.g. a
# container's: nothing outside DESTDIR is touched and systemd is not reloaded.
PREFIX ?= /opt/totmapsfs
BINDIR ?= /usr/local/bin
UNITDIR ?= /etc/systemd/system
DEFAULTSDIR ?= /etc/default
DESTDIR ?=
# The system's interpreter for a system service (Debian 12: 3.11); else whatever $(PYTHON) is.
INSTALL_PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo $(PYTHON))
_IVENV = $(DESTDIR)$(PREFIX)
UNITS := totmapsfs.service totmapsfs-textfile.service totmapsfs-textfile.timer

.PHONY: install uninstall boot-test

install:
	@case "$(PREFIX)" in /?*) ;; *) echo "PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 1;; esac
	$(call apt_need,$(BUILD_PACKAGES) $(RUN_PACKAGES))
	test -x $(_IVENV)/bin/python || $(INSTALL_PYTHON) -m venv $(_IVENV)
	@# setuptools builds in ./build and copies whatever an earlier build left there: start clean.
	rm -rf build/lib.* build/bdist.*
	$(_IVENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade .
	@# From / and with -P (no script directory on sys.path): the installed copy, never this tree's.
	cd / && $(_IVENV)/bin/python -P -c "import totmapsfs.parser._speedups, totmapsfs.proc._speedups, totmapsfs.service"
	@# A venv's scripts name its interpreter by absolute path (pip has no
	@# relocation): with DESTDIR, point them at $(PREFIX), where the venv will run.
	@if [ -n "$(DESTDIR)" ]; then \
		grep -lIr -F "$(_IVENV)" $(_IVENV)/bin $(_IVENV)/pyvenv.cfg | xargs -r sed -i "s|$(_IVENV)|$(PREFIX)|g"; \
	fi
	install -m 0755 systemd/totmapsfs-textfile $(_IVENV)/bin/totmapsfs-textfile
	install -d $(DESTDIR)$(BINDIR)
	ln -sfn $(PREFIX)/bin/totmapsfs $(DESTDIR)$(BINDIR)/totmapsfs
	ln -sfn $(PREFIX)/bin/totmapsfs-textfile $(DESTDIR)$(BINDIR)/totmapsfs-textfile
	install -D -m 0644 -t $(DESTDIR)$(UNITDIR) $(addprefix systemd/,$(UNITS))
	install -D -m 0644 systemd/prometheus/totmapsfs.rules.yml $(_IVENV)/share/prometheus/totmapsfs.rules.yml
	install -d $(DESTDIR)$(DEFAULTSDIR)
	cp -n systemd/totmapsfs.default $(DESTDIR)$(DEFAULTSDIR)/totmapsfs
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
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	@# Only our links: a totmapsfs there that is not one is left alone.
	@for cmd in totmapsfs totmapsfs-textfile; do \
		[ "$$(readlink $(DESTDIR)$(BINDIR)/$$cmd)" = "$(PREFIX)/bin/$$cmd" ] && rm -f $(DESTDIR)$(BINDIR)/$$cmd; done; true
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

# A real systemd boot (systemd-nspawn) that installs the .deb, upgrades,
# starts, kills, restarts, stops, removes and purges the service; also part of `make test`.
boot-test: deps venv
	$(PY) -m pytest -v tests/systemd $(PYTEST_ARGS)

# Performance: mounts totmapsfs in a temporary directory, makes its
# own workloads and prints medians [min-max] with the targets; root, a few
# minutes. BENCH_ARGS=--quick for ~30 s; pip install '.[plot]' for the PNG.
.PHONY: bench
bench: deps venv
	$(PY) -m totmapsfs.bench $(BENCH_ARGS)

# Reliability: the churn/pid-reuse, load and fault tests for
# STRESS_SECONDS each instead of their few seconds in `make test`, and the
# walk duty's and budget's measured shares (test_duty.py, only here); figures
# are printed as they come.
STRESS_SECONDS ?= 120
.PHONY: stress
stress: deps venv
	TOTMAPSFS_REQUIRE_C=1 TOTMAPSFS_STRESS_SECONDS=$(STRESS_SECONDS) $(PY) -m pytest -s \
		tests/stress/test_churn.py tests/stress/test_load.py tests/stress/test_faults.py tests/stress/test_duty.py \
		$(PYTEST_ARGS)

# ---------------------------------------------------------------------------
# Parser hardening: fuzzing, sanitizers, valgrind. Each target builds
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
SPEEDUPS_SRC ?= totmapsfs/parser/_speedups.c totmapsfs/parser/_format.c totmapsfs/parser/_mappings.c totmapsfs/parser/_mapkeys.c
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
	$(ASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/unit/test_parser.py tests/unit/test_parser_generated.py tests/unit/test_parser_c.py tests/unit/test_mappings.py tests/unit/test_proc_text.py -k 'not python' $(PYTEST_ARGS)
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
	TOTMAPSFS_EXAMPLES_SCALE=0.1 $(VALGRIND) $(PY) -m pytest -q -p no:cacheprovider tests/unit/test_parser.py tests/unit/test_parser_generated.py tests/unit/test_parser_c.py tests/unit/test_mappings.py tests/unit/test_proc_text.py \
		-k 'not python and not gil_released and not memory_leaks' $(PYTEST_ARGS)
	@$(VALGRIND_VERDICT)

# ---------------------------------------------------------------------------
# Other kernels: tests on a kernel image booted under QEMU with this
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
# lines), the duty, the daemon's life (start, signals, stderr, unmount), and
# meminfo against the kernel's counters (with the memory controller in cgroup2,
# which this hybrid host lacks: cgroup/<path>/meminfo's charge lines).
KERNEL_TESTS ?= tests/unit/test_access.py tests/unit/test_cache.py tests/mount/test_files_meminfo.py \
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
