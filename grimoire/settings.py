"""Grimoire settings, read from the environment (django-environ).

Every setting read here is documented with its default in `.env.example`. A `.env` file next to
manage.py is read when present; real environment variables win over it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import environ

from grimoire.secret_key import load_or_create_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = Path(os.environ.get("GRIMOIRE_ENV_FILE", BASE_DIR / ".env"))
if _env_file.is_file():
    environ.Env.read_env(_env_file, overwrite=False)

TESTING = "pytest" in sys.modules or env.bool("GRIMOIRE_TESTING", default=False)

# Everything the embedded default writes (SQLite file, secret key, stored build logs) lives here.
DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "var"))).resolve()

DEBUG = env.bool("DEBUG", default=False)

# Never a hard-coded default: when SECRET_KEY is unset, one is generated on first run and kept in
# DATA_DIR/secret_key (mode 0600) so every local process (web, qcluster) signs with the same key.
SECRET_KEY = env.str("SECRET_KEY", default="") or load_or_create_secret_key(DATA_DIR / "secret_key")
SECRET_KEY_SOURCE = "env" if env.str("SECRET_KEY", default="") else "file"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind a TLS-terminating proxy set this so request.is_secure() is right.
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Where the run command says to open the admin; also used in links the service prints.
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_q",
    "grimoire",
    "llmcore",
    "builds",
    "spells",
    "issues",
]

MIDDLEWARE = [
    "grimoire.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "grimoire.api.ApiErrorMiddleware",
]

ROOT_URLCONF = "grimoire.urls"
WSGI_APPLICATION = "grimoire.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
# Embedded default: one SQLite file in WAL mode (readers never block the writer; without WAL,
# SQLite shows "database is locked" under the web + qcluster load). Scale out with
# DATABASE_URL=postgres://user:pass@host:5432/name (psycopg 3).
_default_db_url = f"sqlite:///{DATA_DIR / 'grimoire.sqlite3'}"
DATABASES = {"default": env.db_url("DATABASE_URL", default=_default_db_url)}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {}).update(
        {
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA foreign_keys=ON;"
                "PRAGMA busy_timeout=20000;"
            ),
            # IMMEDIATE takes the write lock at BEGIN, so two writers queue on busy_timeout
            # instead of failing with "database is locked" when a reader upgrades.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)
    _db.setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and broker ---------------------------------------------------------------------------
# The cache is shared across processes (provider cooldowns, throttling), so the embedded default
# is the database cache, not per-process memory. With REDIS_URL both the cache and the django-q2
# broker use Redis.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "grimoire",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "grimoire_cache",
        }
    }

# --- Background jobs (django-q2) ----------------------------------------------------------------
# Three priority queues, each a named cluster: `default` (the main cluster), `high` and `low`
# (ALT_CLUSTERS). A `qcluster` process serves the cluster named by Q_CLUSTER_NAME (default when
# unset); the Procfile starts one per queue.
#
# django-q2 re-delivers an un-acknowledged task after `retry` seconds, so every cluster's task
# `timeout` stays below its `retry` or a slow task would run twice (checked in grimoire.checks).
Q_TIMEOUT = env.int("Q_TIMEOUT", default=300)
Q_RETRY = env.int("Q_RETRY", default=Q_TIMEOUT + 60)
Q_LOW_TIMEOUT = env.int("Q_LOW_TIMEOUT", default=1800)
Q_LOW_RETRY = env.int("Q_LOW_RETRY", default=Q_LOW_TIMEOUT + 120)
JOB_QUEUES = ("high", "default", "low")

Q_CLUSTER = {
    "name": "default",
    # LLM jobs wait on the network, not the CPU: one process runs one job at a time, so 16
    # workers are what 20+ jobs/s against a 500 ms provider need even on 2 cores (~45 MB each).
    "workers": env.int("Q_WORKERS", default=16),
    "timeout": Q_TIMEOUT,
    "retry": Q_RETRY,
    # The ORM broker polls; take several tasks per poll so a busy queue is not capped at 1/poll.
    "bulk": env.int("Q_BULK", default=10),
    "poll": env.float("Q_POLL", default=0.2),
    "queue_limit": env.int("Q_QUEUE_LIMIT", default=50),
    "recycle": 500,
    # A failed task is final for the broker; our own job rows carry retries and backoff.
    "ack_failures": True,
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "save_limit": env.int("Q_SAVE_LIMIT", default=1000),
    "catch_up": False,
    "label": "Task queue",
    "sync": env.bool("Q_SYNC", default=False),
    "ALT_CLUSTERS": {
        "high": {
            "workers": env.int("Q_WORKERS_HIGH", default=4),
            "timeout": Q_TIMEOUT,
            "retry": Q_RETRY,
        },
        "low": {
            "workers": env.int("Q_WORKERS_LOW", default=2),
            "timeout": Q_LOW_TIMEOUT,
            "retry": Q_LOW_RETRY,
        },
    },
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Periodic tasks kept in sync with django-q2 schedules after every migrate (grimoire.jobs).
# name -> (dotted function path, every N minutes, queue)
PERIODIC_TASKS = {
    "grimoire.sweep_stuck_work": ("grimoire.jobs.sweep_stuck_work", 1, "high"),
}
# A row in a non-terminal state for longer than this is considered stuck (worker killed, broker
# lost) and re-enqueued by the sweeper.
STUCK_AFTER_SECONDS = env.int("STUCK_AFTER_SECONDS", default=Q_TIMEOUT + 120)

# --- LLM jobs -----------------------------------------------------------------------------------
# Providers, keys and models are read by llmcore.config straight from the environment (see
# .env.example). Job-level retries when every provider failed transiently: exponential backoff
# with jitter from LLM_JOB_BACKOFF_BASE seconds, doubling, capped at LLM_JOB_BACKOFF_CAP.
LLM_JOB_MAX_RETRIES = env.int("LLM_JOB_MAX_RETRIES", default=5)
LLM_JOB_BACKOFF_BASE = env.float("LLM_JOB_BACKOFF_BASE", default=5.0)
LLM_JOB_BACKOFF_CAP = env.float("LLM_JOB_BACKOFF_CAP", default=300.0)

# --- Builds -------------------------------------------------------------------------------------
# The project the learning API describes and the build runner runs in. Nothing outside it is read.
WORKSPACE_ROOT = Path(env.str("WORKSPACE_ROOT", default=str(DATA_DIR / "workspace"))).resolve()
# Commands staff may run with POST /build/run: JSON {"name": ["argv", "..."]}; none by default.
BUILD_RUN_COMMANDS = env.json("BUILD_RUN_COMMANDS", default={})
BUILD_RUN_TIMEOUT_SECONDS = env.int("BUILD_RUN_TIMEOUT_SECONDS", default=1200)
BUILD_RUN_MAX_OUTPUT_BYTES = env.int("BUILD_RUN_MAX_OUTPUT_BYTES", default=50_000_000)
# Largest log returned inline by the learning API (the full log is at /api/v1/builds/{id}/log).
LEARNING_MAX_LOG_BYTES = env.int("LEARNING_MAX_LOG_BYTES", default=5_000_000)

# --- Autofix (test → fix → re-run) --------------------------------------------------------------
MAX_AUTOCORRECTION_ITERATIONS = env.int("MAX_AUTOCORRECTION_ITERATIONS", default=5)
MIN_IMPROVEMENT_THRESHOLD_PERCENT = env.float("MIN_IMPROVEMENT_THRESHOLD_PERCENT", default=5.0)
AUTOFIX_TEST_TIMEOUT_SECONDS = env.int("AUTOFIX_TEST_TIMEOUT_SECONDS", default=300)
AUTOFIX_ALLOW_TEST_CHANGES = env.bool("AUTOFIX_ALLOW_TEST_CHANGES", default=False)
AUTOFIX_MAX_OUTPUT_BYTES = env.int("AUTOFIX_MAX_OUTPUT_BYTES", default=5_000_000)
AUTOFIX_MAX_ACTIVE_RUNS_PER_USER = env.int("AUTOFIX_MAX_ACTIVE_RUNS_PER_USER", default=3)
# A whole run as a job: below the low queue's task timeout, or it would be delivered twice.
AUTOFIX_RUN_TIMEOUT_SECONDS = env.int(
    "AUTOFIX_RUN_TIMEOUT_SECONDS", default=max(60, Q_LOW_TIMEOUT - 60)
)
# Interpreter for python/pytest test commands (default: Grimoire's own, with its plugins off).
AUTOFIX_PYTHON = env.str("AUTOFIX_PYTHON", default="")
# Where scratch copies go (default: the system temp dir); keep them for debugging.
AUTOFIX_SCRATCH_ROOT = env.str("AUTOFIX_SCRATCH_ROOT", default="") or None
AUTOFIX_KEEP_SCRATCH = env.bool("AUTOFIX_KEEP_SCRATCH", default=False)

# --- Spells -------------------------------------------------------------------------------------
# Draft a spell with the LLM when a failure matches none (once per fingerprint).
AUTO_CREATE_SPELLS = env.bool("AUTO_CREATE_SPELLS", default=True)
# Drafts started per hour; the rest wait (deferred, not dropped) and start as budget frees up.
AUTO_CREATE_SPELLS_PER_HOUR = env.int("AUTO_CREATE_SPELLS_PER_HOUR", default=30)
# A failure whose best match scores at least this reuses that spell instead of drafting one.
SPELL_REUSE_MIN_SCORE = env.float("SPELL_REUSE_MIN_SCORE", default=60.0)
# GitHub webhooks: the shared secret (required: deliveries are refused without it), the token
# for the REST API (PR files and diffs, job logs, comments), and optional PR comments.
GITHUB_WEBHOOK_SECRET = env.str("GITHUB_WEBHOOK_SECRET", default="")
GITHUB_WEBHOOK_MAX_BYTES = env.int("GITHUB_WEBHOOK_MAX_BYTES", default=25 * 1024 * 1024)
# PostgreSQL + ORM broker: deliveries arriving together are written in one statement by a writer
# thread per web process (spells/deliveries.py). Off: one statement per delivery.
WEBHOOK_GROUP_COMMIT = env.bool("WEBHOOK_GROUP_COMMIT", default=True)
SPELLS_COMMENT_ON_PRS = env.bool("SPELLS_COMMENT_ON_PRS", default=False)

# --- Issues -------------------------------------------------------------------------------------
# Tags an issue may get (LLM or fallback); empty means the seed's common tags.
ISSUES_TAG_VOCABULARY = env.list("ISSUES_TAG_VOCABULARY", default=[])
# Allow tags outside the vocabulary (from the LLM, or component tags from the fallback).
ISSUES_ALLOW_NEW_TAGS = env.bool("ISSUES_ALLOW_NEW_TAGS", default=False)
# Write enrichment tags back to GitHub issues as labels (needs GITHUB_API_TOKEN with issues:write).
ISSUES_SYNC_GITHUB_LABELS = env.bool("ISSUES_SYNC_GITHUB_LABELS", default=False)
GITHUB_API_TOKEN = env.str("GITHUB_API_TOKEN", default=env.str("GITHUB_TOKEN", default=""))
GITHUB_API_URL = env.str("GITHUB_API_URL", default="https://api.github.com")

# --- API (DRF) ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "grimoire.api.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [
        "grimoire.api.UserWriteThrottle",
        "grimoire.api.AnonWriteThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user_write": env.str("THROTTLE_USER_WRITE", default="600/min"),
        "anon_write": env.str("THROTTLE_ANON_WRITE", default="60/min"),
        "issue_create": env.str("THROTTLE_ISSUE_CREATE", default="30/min"),
    },
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "grimoire.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Grimoire API",
    "DESCRIPTION": (
        "Turn CI failures, pull requests and issues into a reviewed knowledge base of fixes. "
        "Authenticate with `Authorization: Bearer <token>` (create one with "
        "`python manage.py create_api_token USER`)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer"},
        }
    },
    "SECURITY": [{"bearerAuth": []}],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "grimoire.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "LLMJobPriorityEnum": "llmcore.models.Priority",
        "IssuePriorityEnum": "issues.models.Priority",
        "IssueStatusEnum": "issues.models.Status",
        "LLMJobStatusEnum": "llmcore.models.JobStatus",
        "BuildStatusEnum": "builds.models.BuildStatus",
        "BuildSourceEnum": "builds.models.BuildSource",
        "SpellStatusEnum": "spells.models.SpellStatus",
        "SpellSourceEnum": "spells.models.SpellSource",
    },
}

# --- Static files and uploads -------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if TESTING or DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = DATA_DIR / "media"
# Large build logs arrive as files/streams, not in memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=26_214_400)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- Auth, i18n ---------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Tests create many users; a slow password hash would dominate the suite's time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "admin:login"
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    SESSION_COOKIE_HTTPONLY = True

# --- Logging ------------------------------------------------------------------------------------
# One JSON object per line (with request_id / job_id when known); human-readable in DEBUG.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "grimoire.logs.ContextFilter"},
        # Secrets in any log line (messages, arguments, extras, tracebacks) are redacted.
        "redact": {"()": "llmcore.redaction.RedactingFilter"},
    },
    "formatters": {
        "json": {"()": "grimoire.logs.JsonFormatter"},
        "text": {"()": "grimoire.logs.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": env.str("DJANGO_LOG_LEVEL", default="INFO"), "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # Workers report each task at INFO; web processes would log a line per enqueued job
        # ("Enqueued [default] 42"), a third of a webhook's cost, so they keep WARNING.
        "django-q": {
            "level": env.str(
                "Q_LOG_LEVEL", default="INFO" if "qcluster" in sys.argv else "WARNING"
            ),
            "propagate": True,
        },
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
