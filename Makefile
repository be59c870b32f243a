# totmapsfs — `make run` mounts at /run/totmaps, `make test` runs the whole suite.
# Both install what they need first (Debian packages, then a virtualenv with
# the package and its C extension), so each works on a fresh Debian 12 box as root.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MOUNTPOINT ?= /run/totmaps
ARGS ?=
APT_PACKAGES := fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv util-linux procps systemd systemd-container

.PHONY: run test deps venv clean

run: venv
	$(VENV)/bin/totmapsfs $(ARGS) $(MOUNTPOINT)

# TOTMAPSFS_REQUIRE_C: the suite fails, not falls back, if the C parser did not build.
test: venv
	TOTMAPSFS_REQUIRE_C=1 $(PY) -m pytest $(PYTEST_ARGS)

# Debian packages: libfuse3-dev and pkg-config build pyfuse3, fuse3 gives
# fusermount3, gcc and python3-dev build our C parser.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: deps $(VENV)/.installed

$(VENV)/.installed: pyproject.toml totmapsfs/_speedups.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -c "import totmapsfs._speedups"
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info totmapsfs/*.so

# ---------------------------------------------------------------------------
# Deployment as a systemd service (systemd/totmapsfs.service).
# `make install` puts the package in its own virtualenv under $(PREFIX) (a
# pip install of this tree, which builds the C extension), the unit in
# $(UNITDIR) and an example /etc/default/totmapsfs (only when missing), then
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
	$(_IVENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade .
	$(_IVENV)/bin/python -c "import totmapsfs._speedups"
	@if [ -n "$(DESTDIR)" ]; then \
		echo "relocating $(_IVENV) to $(PREFIX)"; \
		grep -lIr -F "$(_IVENV)" $(_IVENV)/bin $(_IVENV)/pyvenv.cfg | xargs -r sed -i "s|$(_IVENV)|$(PREFIX)|g"; \
	fi
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/opt/totmapsfs/|$(PREFIX)/|g' systemd/totmapsfs.service > $(DESTDIR)$(UNITDIR)/totmapsfs.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/totmapsfs.service
	@if [ -e $(DESTDIR)$(DEFAULTSDIR)/totmapsfs ]; then \
		echo "keeping existing $(DESTDIR)$(DEFAULTSDIR)/totmapsfs"; \
	else \
		install -D -m 0644 systemd/totmapsfs.default $(DESTDIR)$(DEFAULTSDIR)/totmapsfs; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload && echo "installed; start with: systemctl enable --now totmapsfs (running already: systemctl restart totmapsfs)"; \
	else \
		echo "installed; systemd is not running here (or DESTDIR is set): skipped systemctl daemon-reload"; \
	fi

uninstall:
	@case "$(PREFIX)" in /?*) ;; *) echo "PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 1;; esac
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now totmapsfs.service 2>/dev/null || true; \
	fi
	rm -f $(DESTDIR)$(UNITDIR)/totmapsfs.service
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
	$(PY) -m pytest -v tests/test_systemd.py $(PYTEST_ARGS)

# Performance (issue 4): mounts totmapsfs in a temporary directory, makes its
# own workloads and prints medians [min-max] with the targets; root, a few
# minutes. BENCH_ARGS=--quick for ~30 s; pip install '.[plot]' for the PNG.
.PHONY: bench
bench: venv
	$(PY) -m totmapsfs.bench $(BENCH_ARGS)
