"""The starter library shipped with Grimoire: every spell loads and its patterns are precise."""

from __future__ import annotations

from collections import Counter

import pytest

from spells.library import STARTER_DIR, load_spell_file, load_starter_library
from spells.matching import (
    COMMON_LOG_LINES,
    MAX_PATTERN_LENGTH,
    ErrorQuery,
    SpellIndex,
    compile_pattern,
    validate_pattern,
)

STARTER = load_starter_library()
BY_SLUG = {s.slug: s for s in STARTER}
ALL_PATTERNS = [(s.slug, p["regex"], p["sample"]) for s in STARTER for p in s.patterns]


@pytest.fixture(scope="module")
def index():
    return SpellIndex.build([s.to_record() for s in STARTER])


def test_the_library_has_at_least_60_spells_in_one_file_per_ecosystem():
    files = sorted(p.name for p in STARTER_DIR.glob("*.yaml"))

    assert len(STARTER) >= 60
    for ecosystem in (
        "python",
        "pip",
        "node",
        "npm",
        "java",
        "maven",
        "gradle",
        "go",
        "rust",
        "cpp",
        "docker",
    ):
        assert f"{ecosystem}.yaml" in files
    for path in STARTER_DIR.glob("*.yaml"):
        assert len(load_spell_file(path)) >= 5, path.name


def test_it_covers_every_ecosystem_and_package_manager():
    languages = {s.language for s in STARTER}
    tags = {t for s in STARTER for t in s.tags}

    assert {
        "python",
        "javascript",
        "typescript",
        "java",
        "go",
        "rust",
        "c++",
        "docker",
    } <= languages
    assert {
        "pip",
        "poetry",
        "npm",
        "yarn",
        "pnpm",
        "cargo",
        "go-mod",
        "maven",
        "gradle",
        "apt",
    } <= tags


def test_no_two_spells_share_a_slug():
    counts = Counter(s.slug for s in STARTER)

    assert [slug for slug, n in counts.items() if n > 1] == []


@pytest.mark.parametrize("spell", STARTER, ids=lambda s: s.slug)
def test_every_spell_is_complete(spell):
    assert 10 <= len(spell.title) <= 100
    assert len(spell.description) >= 150, "explain why it happens and how to fix it"
    assert spell.solution_code.strip()
    assert spell.language
    assert spell.tags
    assert spell.patterns
    assert spell.status == "approved"


@pytest.mark.parametrize(
    ("slug", "regex", "sample"), ALL_PATTERNS, ids=[f"{s}:{r[:30]}" for s, r, _ in ALL_PATTERNS]
)
def test_every_pattern_compiles_and_matches_its_sample(slug, regex, sample):
    engine, _compiled = compile_pattern(regex)

    assert engine == "re2", "starter patterns must run on the linear-time engine"
    assert len(regex) <= MAX_PATTERN_LENGTH
    assert validate_pattern(regex, sample) == []


def test_the_index_accepts_every_starter_pattern(index):
    assert index.bad_patterns == []
    assert index.describe()["patterns"] == len({r for _s, r, _x in ALL_PATTERNS})


def test_every_sample_line_finds_its_own_spell_first(index):
    wrong = []
    for slug, _regex, sample in ALL_PATTERNS:
        matches = index.match(ErrorQuery(lines=[sample]), limit=3)
        if not matches or matches[0].spell_id != slug:
            wrong.append((slug, sample, [m.spell_id for m in matches]))

    assert wrong == []


# Real-world shaped lines that are NOT the samples: other packages, paths, versions, tools.
REALISTIC = [
    ("python-module-not-found", "E   ModuleNotFoundError: No module named 'app.settings'"),
    ("python-module-not-found", "ModuleNotFoundError: No module named 'google.protobuf'"),
    (
        "python-cannot-import-name",
        "ImportError: cannot import name 'url_quote' from 'werkzeug.urls' (/usr/local/lib/python3.11/site-packages/werkzeug/urls.py)",
    ),
    (
        "python-circular-import",
        "ImportError: cannot import name 'db' from partially initialized module 'app' (most likely due to a circular import) (/srv/app/__init__.py)",
    ),
    ("python-syntax-newer-python", "    SyntaxError: invalid decimal literal"),
    ("python-nonetype-attribute", "AttributeError: 'NoneType' object has no attribute 'split'"),
    ("python-nonetype-attribute", "TypeError: 'NoneType' object is not iterable"),
    ("python-missing-environment-variable", "KeyError: 'AWS_SECRET_ACCESS_KEY'"),
    (
        "python-unicode-decode-locale",
        "UnicodeDecodeError: 'charmap' codec can't decode byte 0x9d in position 6320: character maps to <undefined>",
    ),
    ("pytest-fixture-not-found", "E       fixture 'db' not found"),
    (
        "pytest-collection-errors",
        "==================== Interrupted: 2 errors during collection ====================",
    ),
    (
        "pytest-no-tests-collected",
        "=========================== no tests ran in 0.31s ============================",
    ),
    (
        "mypy-missing-library-stubs",
        'src/api.py:4: error: Library stubs not installed for "yaml"  [import-untyped]',
    ),
    ("pip-no-matching-distribution", "ERROR: No matching distribution found for tensorflow==2.3.0"),
    (
        "pip-resolution-impossible",
        "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/user_guide/#fixing-conflicting-dependencies",
    ),
    (
        "pip-requires-different-python",
        "ERROR: Package 'django' requires a different Python: 3.8.10 not in '>=3.10'",
    ),
    ("pip-externally-managed-environment", "error: externally-managed-environment"),
    ("pip-failed-building-wheel", "  ERROR: Failed building wheel for lxml"),
    (
        "python-h-missing",
        "      psycopg/psycopgmodule.c:28:10: fatal error: Python.h: No such file or directory",
    ),
    (
        "poetry-lock-out-of-date",
        "pyproject.toml changed significantly since poetry.lock was last generated. Run `poetry lock` to fix the lock file.",
    ),
    ("node-cannot-find-module", "Error: Cannot find module './Config'"),
    (
        "node-err-require-esm",
        "Error [ERR_REQUIRE_ESM]: require() of ES Module /home/runner/work/site/node_modules/chalk/source/index.js from /home/runner/work/site/scripts/build.js not supported.",
    ),
    ("node-import-outside-module", "    SyntaxError: Cannot use import statement outside a module"),
    (
        "js-cannot-read-properties-of-undefined",
        "TypeError: Cannot read properties of null (reading 'addEventListener')",
    ),
    (
        "node-heap-out-of-memory",
        "FATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed - JavaScript heap out of memory",
    ),
    (
        "node-openssl-unsupported",
        "  opensslErrorStack: [ 'error:03000086:initialization error' ], library: 'digital envelope routines', reason: 'unsupported', code: 'ERR_OSSL_EVP_UNSUPPORTED'",
    ),
    (
        "tsc-cannot-find-module",
        "src/app.tsx(5,19): error TS2307: Cannot find module '@/components/Header' or its corresponding type declarations.",
    ),
    (
        "tsc-missing-declaration-file",
        "error TS7016: Could not find a declaration file for module 'react-table'. '/app/node_modules/react-table/index.js' implicitly has an 'any' type.",
    ),
    ("jest-exceeded-timeout", '    thrown: "Exceeded timeout of 10000 ms for a hook.'),
    ("eslint-errors", "✖ 1 problem (1 error, 0 warnings)"),
    (
        "npm-ci-lockfile-out-of-sync",
        "npm error `npm ci` can only install packages when your package.json and package-lock.json or npm-shrinkwrap.json are in sync. Please update your lock file with `npm install` before continuing.",
    ),
    ("npm-eresolve-peer-dependency", "npm error ERESOLVE could not resolve"),
    (
        "npm-package-not-found-404",
        "npm ERR! 404 Not Found - GET https://registry.npmjs.org/reactt - Not found",
    ),
    ("npm-auth-required", "npm error code ENEEDAUTH"),
    ("npm-missing-script", 'npm error Missing script: "lint"'),
    ("node-gyp-build-failed", "gyp ERR! build error"),
    (
        "yarn-frozen-lockfile",
        "error Your lockfile needs to be updated, but yarn was run with `--frozen-lockfile`.",
    ),
    (
        "yarn-engine-incompatible",
        'error @typescript-eslint/parser@8.8.0: The engine "node" is incompatible with this module. Expected version "^18.18.0 || ^20.9.0 || >=21.1.0". Got "16.20.2"',
    ),
    (
        "pnpm-outdated-lockfile",
        ' ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with "frozen-lockfile" because pnpm-lock.yaml is not up to date with <ROOT>/packages/web/package.json',
    ),
    (
        "java-unsupported-class-version",
        "java.lang.UnsupportedClassVersionError: org/springframework/boot/SpringApplication has been compiled by a more recent version of the Java Runtime (class file version 61.0), this version of the Java Runtime only recognizes class file versions up to 55.0",
    ),
    (
        "javac-cannot-find-symbol",
        "[ERROR] /home/runner/work/app/src/test/java/com/acme/AppTest.java:[18,9] cannot find symbol",
    ),
    (
        "javac-package-does-not-exist",
        "src/main/java/com/acme/Api.java:5: error: package org.springframework.web.bind.annotation does not exist",
    ),
    ("java-invalid-target-release", "error: invalid target release: 17"),
    (
        "java-out-of-memory",
        'Exception in thread "main" java.lang.OutOfMemoryError: GC overhead limit exceeded',
    ),
    (
        "java-nosuchmethoderror-dependency-conflict",
        "java.lang.NoSuchMethodError: 'void org.slf4j.Logger.atInfo()'",
    ),
    (
        "maven-could-not-resolve-dependencies",
        "[ERROR] Failed to execute goal on project web: Could not resolve dependencies for project com.acme:web:war:2.0.0: The following artifacts could not be resolved: com.acme:core:jar:2.0.0 (absent)",
    ),
    (
        "maven-could-not-transfer-artifact",
        "[ERROR] Could not transfer artifact org.apache.commons:commons-lang3:jar:3.14.0 from/to central (https://repo.maven.apache.org/maven2): Read timed out",
    ),
    (
        "maven-surefire-test-failures",
        "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-surefire-plugin:3.0.0-M7:test (default-test) on project core: There are test failures.",
    ),
    (
        "maven-surefire-fork-crashed",
        "[ERROR] ExecutionException The forked VM terminated without properly saying goodbye. VM crash or System.exit called?",
    ),
    (
        "maven-non-resolvable-parent-pom",
        "[ERROR] Non-resolvable parent POM for com.acme:web:2.0.0: Failure to find com.acme:parent:pom:3 in https://repo.maven.apache.org/maven2 was cached in the local repository",
    ),
    (
        "maven-enforcer-rule-failed",
        "[ERROR] Rule 1: org.apache.maven.plugins.enforcer.RequireMavenVersion failed with message:",
    ),
    (
        "gradle-could-not-resolve-configuration",
        "   > Could not resolve all dependencies for configuration ':compileClasspath'.",
    ),
    ("gradle-unsupported-class-file-major-version", "Unsupported class file major version 61"),
    ("gradle-daemon-disappeared", "Expiring Daemon because JVM heap space is exhausted"),
    ("gradlew-permission-denied", "bash: line 1: ./gradlew: Permission denied"),
    ("gradle-test-task-failed", "Execution failed for task ':core:test'."),
    ("gradle-compilation-failed", "Execution failed for task ':app:compileKotlin'."),
    (
        "go-missing-go-sum-entry",
        "cmd/server/main.go:9:2: missing go.sum entry for module providing package golang.org/x/sync/errgroup (imported by github.com/acme/api/cmd/server); to add:",
    ),
    ("go-mod-updates-needed", "go: inconsistent vendoring in /src:"),
    (
        "go-no-required-module-provides-package",
        "internal/db/db.go:8:2: no required module provides package github.com/jackc/pgx/v5; to add it:",
    ),
    (
        "go-version-too-new",
        "go: go.mod requires go >= 1.22 (running go 1.21.13; GOTOOLCHAIN=local)",
    ),
    ("go-declared-and-not-used", './cmd/main.go:12:2: "os" imported and not used'),
    ("go-data-race", "WARNING: DATA RACE"),
    ("go-test-timed-out", "panic: test timed out after 2m0s"),
    (
        "go-nil-pointer-dereference",
        "panic: runtime error: invalid memory address or nil pointer dereference",
    ),
    ("rust-unresolved-import", "error[E0432]: unresolved import `crate::config::Settings`"),
    ("rust-cannot-find-in-scope", "error[E0425]: cannot find function `parse_args` in this scope"),
    (
        "rust-borrow-conflict",
        "error[E0502]: cannot borrow `self.items` as mutable because it is also borrowed as immutable",
    ),
    ("rust-use-of-moved-value", "error[E0382]: use of moved value: `config`"),
    (
        "cargo-lock-needs-update-locked",
        "error: the lock file /src/Cargo.lock needs to be updated but --locked was passed to prevent this",
    ),
    (
        "rust-msrv-too-old",
        "error: package `tokio v1.40.0` cannot be built because it requires rustc 1.70 or newer, while the currently active rustc version is 1.65.0",
    ),
    (
        "clippy-warnings-denied",
        "  = note: `-D clippy::uninlined-format-args` implied by `-D warnings`",
    ),
    (
        "rust-openssl-sys-not-found",
        "  The system library `openssl` required by crate `openssl-sys` was not found.",
    ),
    ("c-missing-header", "main.cpp:2:10: fatal error: 'boost/asio.hpp' file not found"),
    ("c-missing-header", "src/tls.c:4:10: fatal error: openssl/ssl.h: No such file or directory"),
    (
        "cpp-undefined-reference",
        "/usr/bin/ld: libutil.a(log.o): in function `log_init': log.c:(.text+0x2a): undefined reference to `pthread_create'",
    ),
    (
        "cmake-package-not-found",
        '  Could not find a package configuration file provided by "Boost" with any',
    ),
    (
        "cmake-minimum-version-removed",
        "  Compatibility with CMake < 3.5 has been removed from CMake.",
    ),
    ("make-no-rule-to-make-target", "make: *** No rule to make target 'install'.  Stop."),
    ("make-missing-separator", "src/Makefile:27: *** missing separator.  Stop."),
    (
        "cpp-cstdint-not-included",
        "include/crc.h:9:3: error: 'uint8_t' was not declared in this scope",
    ),
    (
        "sanitizer-address-error",
        "==12345==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6020000000f4",
    ),
    (
        "docker-daemon-not-running",
        "docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?.",
    ),
    (
        "docker-socket-permission-denied",
        "Got permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Post",
    ),
    (
        "docker-hub-rate-limit",
        "ERROR: toomanyrequests: You have reached your unauthenticated pull rate limit. https://www.docker.com/increase-rate-limit",
    ),
    (
        "docker-manifest-unknown",
        "Error response from daemon: manifest for python:3.13-slim-busterr not found: manifest unknown: manifest unknown",
    ),
    (
        "docker-copy-file-not-found",
        'ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref moby::abc123: "/requirements.txt": not found',
    ),
    ("docker-exec-format-error", "exec /usr/local/bin/python: exec format error"),
    ("apt-unable-to-locate-package", "E: Unable to locate package python3.12-venv"),
    (
        "apt-repository-no-release-file",
        "E: The repository 'http://security.debian.org/debian-security stretch/updates Release' does not have a Release file.",
    ),
    ("ci-no-space-left-on-device", "OSError: [Errno 28] No space left on device"),
    ("ci-process-killed-exit-137", "Error: Process completed with exit code 137."),
    (
        "git-https-credentials-missing",
        "fatal: could not read Username for 'https://github.com': No such device or address",
    ),
    (
        "github-token-permission-denied",
        "remote: Permission to acme/docs.git denied to github-actions[bot].",
    ),
    (
        "git-shallow-clone-missing-history",
        "fatal: ambiguous argument 'origin/main': unknown revision or path not in the working tree.",
    ),
    ("ci-dns-resolution-failure", "getaddrinfo ENOTFOUND registry.yarnpkg.com"),
    ("ci-command-not-found", "/home/runner/work/_temp/0b1c.sh: line 3: poetry: command not found"),
    (
        "ci-tls-certificate-untrusted",
        'x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification error")',
    ),
    (
        "ci-service-connection-refused",
        'connection to server at "localhost" (::1), port 5432 failed: Connection refused',
    ),
    ("ci-service-connection-refused", "Error: connect ECONNREFUSED ::1:6379"),
]


@pytest.mark.parametrize(
    ("slug", "line"), REALISTIC, ids=[f"{s}-{i}" for i, (s, _l) in enumerate(REALISTIC)]
)
def test_a_realistic_error_line_hits_the_expected_spell_first(index, slug, line):
    assert slug in BY_SLUG

    matches = index.match(ErrorQuery(lines=[line]), limit=3)

    assert matches, line
    assert (matches[0].spell_id, matches[0].reason) == (slug, "pattern")


def test_realistic_lines_cover_most_of_the_library():
    covered = {slug for slug, _line in REALISTIC}

    assert len(covered) >= 0.9 * len(STARTER)


# Ordinary output of healthy builds across the same tools (not the matcher's own list).
UNRELATED = [
    "Run actions/setup-node@v4",
    "Successfully installed numpy-2.1.1 pandas-2.2.3",
    "npm notice New minor version of npm available! 10.8.2 -> 10.9.0",
    "npm WARN deprecated inflight@1.0.6: This module is not supported, and leaks memory.",
    "up to date, audited 412 packages in 2s",
    "yarn install v1.22.22",
    "[1/4] Resolving packages...",
    "success Saved lockfile.",
    "Lockfile is up to date, resolution step is skipped",
    "Progress: resolved 812, reused 790, downloaded 22, added 812, done",
    "tests/test_models.py::test_create PASSED                                  [ 12%]",
    "tests/test_errors.py::test_module_not_found_is_reported PASSED           [ 14%]",
    "Ran 42 tests in 1.234s",
    "Success: no issues found in 48 source files",
    "All checks passed!",
    "[INFO] Downloading from central: https://repo.maven.apache.org/maven2/org/slf4j/slf4j-api/2.0.13/slf4j-api-2.0.13.pom",
    "[INFO] Tests run: 12, Failures: 0, Errors: 0, Skipped: 0, Time elapsed: 0.412 s -- in com.acme.AppTest",
    "[INFO] BUILD SUCCESS",
    "> Task :app:test",
    "BUILD SUCCESSFUL in 1m 2s",
    "go: finding module for package github.com/google/uuid",
    "go: found github.com/google/uuid in github.com/google/uuid v1.6.0",
    "ok  \tgithub.com/acme/api/internal/db\t(cached)",
    "PASS",
    "    Updating crates.io index",
    "  Downloaded tokio v1.40.0",
    "    Checking serde_json v1.0.128",
    "test tests::parses_config ... ok",
    '-- Found ZLIB: /usr/lib/x86_64-linux-gnu/libz.so (found version "1.2.13")',
    "-- Build files have been written to: /home/runner/work/app/build",
    "[ 25%] Built target util",
    "gcc -O2 -Wall -c src/main.c -o build/main.o",
    "#8 [builder 3/7] COPY package.json package-lock.json ./",
    "#8 DONE 0.1s",
    "#12 exporting to image",
    "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]",
    "Reading package lists...",
    "Setting up libpq5:amd64 (15.8-0+deb12u1) ...",
    "Cloning into 'app'...",
    "HEAD is now at 3f2a9c1 Fix typo in README",
    "remote: Enumerating objects: 1234, done.",
    "Receiving objects: 100% (1234/1234), 2.34 MiB | 12.00 MiB/s, done.",
    "Warning: The `set-output` command is deprecated and will be disabled soon.",
    "Filesystem      Size  Used Avail Use% Mounted on",
    "Connecting to database at localhost:5432 ... connected",
    "Checking for Python.h ... found",
    "make[1]: Leaving directory '/home/runner/work/app/src'",
]


def test_patterns_do_not_match_ordinary_lines(index):
    lines = [*UNRELATED, *COMMON_LOG_LINES]

    hits = [(m.spell_id, lines[m.line]) for m in index.scan_lines(lines)]

    assert hits == []
