"""The gateway's SQLite database: schema migrations, the configuration tables and call records.

One file is shared by two processes — the daemon and the web UI — in WAL mode, so every write
runs in a `BEGIN IMMEDIATE` transaction: it takes the write lock before reading anything, which
is what lets SQLite's busy timeout do its job (a deferred transaction that reads and then writes
gets SQLITE_BUSY at once when the other process committed in between). `synchronous=FULL`
because an admin's config change must survive a power cut the moment `replace_config` returns.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlite_utils import Database

from firmware.store.config import (
    MODEM_TRUNK_TYPES,
    STORED_CONFIG_MAX_CHARS,
    Config,
    ConfigError,
    Extension,
    Trunk,
    config_to_dict,
    extension_to_data,
    parse_config,
    trunk_to_data,
)
from firmware.store.errors import (
    RecordNotFoundError,
    RevisionConflictError,
    SchemaTooNewError,
    StoreError,
)

LOGGER = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
RECENT_CALLS_LIMIT = 50
VOICEMAIL_COLUMNS = "id, call_id, mailbox, caller, left_at, duration_s, heard"  # not the audio

CALL_COLUMNS = (
    "id", "started_at", "answered_at", "ended_at", "direction", "source", "caller", "dialed",
    "number", "department", "answered_by", "end_cause", "outcome", "sip_call_id",
    "strategy", "waited_s", "talk_s", "target_call", "sale", "marked_by", "callback_state",
    "line", "clock_unsynced",
)
# What `record_finished_calls` writes for a column the call's mapping leaves out (else NULL):
# the NOT NULL columns' defaults, so a recorder that predates a column keeps working.
CALL_COLUMN_DEFAULTS: Mapping[str, object] = {"sip_call_id": "", "target_call": 0, "sale": 0,
                                              "clock_unsynced": 0}
# What a call's later record overwrites in its earlier row: all but the id and the marks.
_UPSERTED_CALL_COLUMNS = ", ".join(
    f"{column} = excluded.{column}" for column in CALL_COLUMNS
    if column not in ("id", "target_call", "sale", "marked_by"))
LEG_COLUMNS = (
    "call_id", "target", "contact", "started_at", "ringing_at", "answered_at", "ended_at",
    "result", "sip_status",
)
CALL_DIRECTIONS = frozenset({"inbound", "internal", "outbound", "callback"})
CALL_OUTCOMES = frozenset({
    "answered", "missed", "busy", "over_capacity", "failed", "cancelled",
    # schema version 2
    "abandoned", "voicemail", "callback", "forwarded", "blacklisted", "closed",
})
CALLBACK_STATES = frozenset({"requested", "done", "expired", "failed"})
FINAL_CALLBACK_STATES = frozenset({"done", "expired", "failed"})
AGENT_STATUS_SOURCES = frozenset({"cli", "phone", "web", "auto"})
LEG_RESULTS = frozenset(
    {"answered", "no_answer", "busy", "declined", "cancelled", "failed", "unavailable"}
)

SETTING_SECURITY = "security"
SETTING_SIP = "sip"
SETTING_SITE = "site"
SETTING_SCHEDULES = "schedules"
SETTING_RULES = "rules"
SETTING_CRM = "crm"
SETTING_FAILOVER = "failover"
SETTING_HARDWARE = "hardware"
SETTING_MENUS = "menus"
SETTING_SMTP = "smtp"
SETTING_NOTIFICATIONS = "notifications"
SETTING_RECORDING = "recording"
SETTING_NUMBER_SCHEDULES = "number_schedules"  # DID number -> schedule name
SETTING_NUMBER_WEBHOOKS = "number_webhooks"  # DID number -> {webhook, webhook_timeout_s}
# Trunk name -> the trunk keys the `trunks` table has no column for (digest_algorithms, ...).
SETTING_TRUNK_EXTRA = "trunk_extra"
SETTING_CONFIG_REVISION = "config_revision"
# The web UI administrator's password hash (scrypt): a setting, outside the exported YAML.
SETTING_WEBUI_ADMIN_PASSWORD = "webui_admin_password"
RESERVED_SETTINGS = (SETTING_NUMBER_SCHEDULES, SETTING_NUMBER_WEBHOOKS, SETTING_TRUNK_EXTRA,
                     SETTING_CONFIG_REVISION)
# Config sections kept whole as JSON in `settings`; the optional ones are absent at their default.
CONFIG_SETTINGS = (
    SETTING_SECURITY, SETTING_SIP, SETTING_SITE, SETTING_SCHEDULES, SETTING_RULES, SETTING_CRM,
    SETTING_FAILOVER, SETTING_HARDWARE, SETTING_SMTP, SETTING_NOTIFICATIONS, SETTING_MENUS,
    SETTING_RECORDING,
)

# Columns of their own; every other key rides in `extra` (extensions) or SETTING_TRUNK_EXTRA.
EXTENSION_COLUMNS = frozenset({"number", "name", "password"})
TRUNK_COLUMNS = frozenset({"name", "type", "host", "port", "transport", "username", "password",
                           "register", "expires_s", "channels", "from_domain"})

# Tables holding the configuration, children before parents (the order rows are deleted in).
CONFIG_TABLES = ("department_members", "numbers", "departments", "extensions", "trunks")

Migration = Callable[[Database], None]

# Literal DDL rather than `create_table()`: a migration must produce the same schema forever,
# whatever a later sqlite-utils renders, and `create_table()` cannot say AUTOINCREMENT.
_SCHEMA_V1 = (
    """CREATE TABLE extensions (
        number TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        password TEXT NOT NULL
    )""",
    """CREATE TABLE departments (
        number TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        strategy TEXT NOT NULL,
        ring_timeout_s INTEGER NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE department_members (
        department TEXT NOT NULL REFERENCES departments(number) ON DELETE CASCADE,
        extension TEXT NOT NULL REFERENCES extensions(number),
        position INTEGER NOT NULL,
        ring_time_s INTEGER,
        extra TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (department, extension),
        UNIQUE (department, position)
    )""",
    "CREATE INDEX department_members_extension ON department_members(extension)",
    """CREATE TABLE trunks (
        name TEXT PRIMARY KEY NOT NULL,
        type TEXT NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        transport TEXT NOT NULL,
        username TEXT NOT NULL,
        password TEXT NOT NULL,
        register INTEGER NOT NULL,
        expires_s INTEGER NOT NULL,
        channels INTEGER NOT NULL,
        from_domain TEXT
    )""",
    """CREATE TABLE numbers (
        number TEXT PRIMARY KEY NOT NULL,
        trunk TEXT NOT NULL REFERENCES trunks(name),
        channels INTEGER NOT NULL,
        destination TEXT NOT NULL
    )""",
    "CREATE INDEX numbers_trunk ON numbers(trunk)",
    """CREATE TABLE settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    )""",
    # Call records deliberately do not reference the config tables: history outlives a deleted
    # extension or department.
    """CREATE TABLE calls (
        id TEXT PRIMARY KEY NOT NULL,
        started_at REAL NOT NULL,
        answered_at REAL,
        ended_at REAL,
        direction TEXT NOT NULL,
        source TEXT NOT NULL,
        caller TEXT NOT NULL,
        dialed TEXT NOT NULL,
        number TEXT,
        department TEXT,
        answered_by TEXT,
        end_cause TEXT,
        outcome TEXT,
        sip_call_id TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX calls_started_at ON calls(started_at)",
    """CREATE TABLE call_legs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
        target TEXT NOT NULL,
        contact TEXT NOT NULL,
        started_at REAL NOT NULL,
        ringing_at REAL,
        answered_at REAL,
        ended_at REAL,
        result TEXT,
        sip_status INTEGER
    )""",
    "CREATE INDEX call_legs_call_id ON call_legs(call_id)",
)


# Version 2: queue and agent facts on each call, the marks a manager sets afterwards, and agent
# statuses that survive a restart. ADD COLUMN only, so existing rows stay where they are; rows
# from version 1 get NULL (unknown) for the facts and 0 for the marks. Allowed values (outcomes,
# callback states) are checked by `Store`, as in version 1, not by CHECK constraints.
_SCHEMA_V2 = (
    "ALTER TABLE calls ADD COLUMN strategy TEXT",
    # Seconds in the queue before a person answered or the caller gave up.
    "ALTER TABLE calls ADD COLUMN waited_s REAL",
    "ALTER TABLE calls ADD COLUMN talk_s REAL",
    "ALTER TABLE calls ADD COLUMN target_call INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE calls ADD COLUMN sale INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE calls ADD COLUMN marked_by TEXT",
    "ALTER TABLE calls ADD COLUMN callback_state TEXT",
    """CREATE TABLE agent_status (
        extension TEXT PRIMARY KEY NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        since REAL NOT NULL
    )""",
    """CREATE TABLE agent_status_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        extension TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        at REAL NOT NULL,
        source TEXT NOT NULL
    )""",
    "CREATE INDEX agent_status_log_extension_at ON agent_status_log(extension, at)",
)


# Schema version 3: the CRM's responsible manager per caller (imported from CSV), for
# departments with `sticky: crm_owner`.
_SCHEMA_V3: tuple[str, ...] = (
    """CREATE TABLE crm_owners (
        phone TEXT PRIMARY KEY NOT NULL,
        extension TEXT NOT NULL
    )""",
)


# Schema version 4: an employee's optional keys (`mobile`, `skills`) as JSON in `extra`, read
# back as extension keys (as `departments.extra` is); rows from version 3 get '{}' (none set).
_SCHEMA_V4: tuple[str, ...] = (
    "ALTER TABLE extensions ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'",
)


# Schema version 5: voicemail. Messages and greetings are WAV files (16-bit 8 kHz mono) kept in
# the database itself: one file to back up, and a message is never separated from its record.
_SCHEMA_V5: tuple[str, ...] = (
    """CREATE TABLE voicemails (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        caller TEXT NOT NULL,
        left_at REAL NOT NULL,
        duration_s REAL NOT NULL,
        audio BLOB NOT NULL,
        heard INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX voicemails_mailbox ON voicemails(mailbox, left_at)",
    """CREATE TABLE greetings (
        mailbox TEXT PRIMARY KEY NOT NULL,
        audio BLOB NOT NULL,
        duration_s REAL NOT NULL,
        uploaded_at REAL NOT NULL
    )""",
)


# Schema version 6: callback requests still waiting for their turn, so that a restart (a power
# cut) does not forget a promise made to a caller. Times are Unix seconds.
_SCHEMA_V6: tuple[str, ...] = (
    """CREATE TABLE callback_requests (
        origin_call_id TEXT PRIMARY KEY NOT NULL,
        department TEXT NOT NULL,
        customer TEXT NOT NULL,
        trunk TEXT,
        dialed TEXT NOT NULL,
        number TEXT,
        vip INTEGER NOT NULL DEFAULT 0,
        entered_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1
    )""",
)


# Schema version 7: the web UI's secrets and sessions, in tables of their own (issue 9 items 3,
# 5 and 14). The session signing key and the first-run setup code are not configuration: no
# export shows them and no import or restore replaces them. A row per login lets logout and a
# password change end a user's sessions on the server; only a hash of the session id is kept,
# so a copy of the database holds no usable session.
_SCHEMA_V7: tuple[str, ...] = (
    """CREATE TABLE webui_secrets (
        name TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE webui_sessions (
        id_hash TEXT PRIMARY KEY NOT NULL,
        account TEXT NOT NULL,
        credential TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX webui_sessions_account ON webui_sessions(account, created_at)",
)
# Until version 7 the session key was a setting (JSON text) beside the configuration's.
_OLD_SESSION_KEY_SETTING = "webui_secret_key"
SESSION_KEY_SECRET = "session_key"
SETUP_CODE_SECRET = "setup_code"
# The setup code's letters: Crockford's base32 (no I, L, O, U: nothing to misread on a console
# or a label). 12 of them are 60 bits, far beyond what the wizard's attempt limit lets anyone
# try; shown in groups of four.
SETUP_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SETUP_CODE_LENGTH = 12
_SETUP_CODE_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


def new_setup_code() -> str:
    """A fresh one-time code for the first-run wizard, e.g. 7KQ2-M9XD-4PRT."""
    letters = "".join(secrets.choice(SETUP_CODE_ALPHABET) for _ in range(SETUP_CODE_LENGTH))
    return "-".join(letters[i:i + 4] for i in range(0, SETUP_CODE_LENGTH, 4))


def normalise_setup_code(text: str) -> str:
    """The code as typed, compared as written on the console: case, dashes and spaces do not
    matter, and O, I, L read as 0, 1, 1 (Crockford's base32)."""
    return text.upper().translate(_SETUP_CODE_READS_AS)


# Schema version 8: security events the web UI shows the admin (issue 9 item 2): an external call
# refused by the toll guard, with what was dialled and why. `repeated` counts the refusals of the
# same kind not reported on their own (the guard reports one a minute); only the newest
# SECURITY_EVENTS_KEPT rows are kept.
_SCHEMA_V8: tuple[str, ...] = (
    """CREATE TABLE security_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        extension TEXT,
        number TEXT,
        detail TEXT,
        repeated INTEGER NOT NULL DEFAULT 0
    )""",
)
SECURITY_EVENTS_KEPT = 1000
SECURITY_EVENT_COLUMNS = ("id", "at", "kind", "extension", "number", "detail", "repeated")

# Schema version 9: text messages of the GSM lines (issue 12), received and sent. `number` is the
# other party: the sender of an incoming message (a number, or a name such as "MTS"), the
# recipient of an outgoing one. `at` is wall time (Unix seconds): the network's timestamp of an
# incoming message where it has one. `complete` is 0 for a long message some parts of which
# never came (kept anyway: a lost SMS is the field's second complaint). Only the newest SMS_KEPT
# rows are kept (flash storage; the inbox is read, not archived).
_SCHEMA_V9: tuple[str, ...] = (
    """CREATE TABLE sms (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        line TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        number TEXT NOT NULL,
        text TEXT NOT NULL,
        at REAL NOT NULL,
        complete INTEGER NOT NULL DEFAULT 1
    )""",
    "CREATE INDEX sms_line_at ON sms(line, at)",
    "CREATE INDEX sms_at ON sms(at)",
)
SMS_KEPT = 10_000
SMS_COLUMNS = ("id", "line", "direction", "number", "text", "at", "complete")
SMS_DIRECTIONS = frozenset({"in", "out"})

# Schema version 10 (issue 12): the line each call used, and what happened to the lines.
# `calls.line` is the line a call came in on, or a call out went out through (NULL: between
# office phones, or unknown). Rows from version 9 get it from their `source` where that names a
# line ("trunk:NAME", "gsm:NAME", "fxo:NAME": what the core has always written for a line's
# calls), else NULL. `line_events` keeps, at wall time `at`, a line's state changes (kind
# "state": `line` went to `state`, from `old` when known) and the failover's switches (kind
# "failover": calls out now go through `line`, NULL when no line is up, instead of `old`); only
# the newest LINE_EVENTS_KEPT rows are kept (a flapping line must not fill the flash).
_SCHEMA_V10: tuple[str, ...] = (
    "ALTER TABLE calls ADD COLUMN line TEXT",
    "UPDATE calls SET line = nullif(substr(source, instr(source, ':') + 1), '') "
    "WHERE substr(source, 1, instr(source, ':')) IN ('trunk:', 'gsm:', 'fxo:')",
    "CREATE INDEX calls_line_started_at ON calls(line, started_at)",
    """CREATE TABLE line_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('state', 'failover')),
        line TEXT,
        state TEXT,
        old TEXT,
        reason TEXT NOT NULL DEFAULT ''
    )""",
)
LINE_EVENTS_KEPT = 10_000
LINE_EVENT_COLUMNS = ("id", "at", "kind", "line", "state", "old", "reason")
LINE_EVENT_KINDS = frozenset({"state", "failover"})

# Schema version 11 (issue 15): the notifications outbox (firmware/store/outbox.py). One row per
# e-mail or SMS to send: kept until sent (then kept a while for the web UI) or given up on, so a
# restart loses none. `key` makes each one once: the same call's missed-call e-mail to the same
# address, the day's summary, the caller's SMS of the day (at most one per caller per day) are
# refused a second time by the UNIQUE index, restart or not. `voicemail_call_id`: the message of
# that call (table voicemails) goes along as the e-mail's attachment, read when it is sent.
_SCHEMA_V11: tuple[str, ...] = (
    """CREATE TABLE notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL,
        voicemail_call_id TEXT,
        created_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        sent_at REAL,
        last_error TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX notifications_state_next_at ON notifications(state, next_at)",
)

# Schema version 12 (issue 16): what a power cut or a crash must not lose. `calls.record_state`:
# a call is written once it is answered ('in_progress', its row updated when it ends: 'ended');
# at the next start a row still 'in_progress' was cut off by the stop ('cut_off': outcome and
# answered facts kept, end unknown). Rows of version 11 were all written at their end ('ended').
# `registrations`: the phones' bindings (RFC 3261 §10.3) with their expiry in wall time, served
# again at once after a restart instead of after each phone's next REGISTER.
_SCHEMA_V12: tuple[str, ...] = (
    "ALTER TABLE calls ADD COLUMN record_state TEXT NOT NULL DEFAULT 'ended' "
    "CHECK (record_state IN ('in_progress', 'ended', 'cut_off'))",
    "CREATE INDEX calls_in_progress ON calls(record_state) WHERE record_state = 'in_progress'",
    """CREATE TABLE registrations (
        extension TEXT NOT NULL,
        contact_text TEXT NOT NULL,
        contact TEXT NOT NULL,
        expires_at REAL NOT NULL,
        call_id TEXT NOT NULL,
        cseq INTEGER NOT NULL,
        source_transport TEXT NOT NULL,
        source_host TEXT NOT NULL,
        source_port INTEGER NOT NULL,
        user_agent TEXT NOT NULL DEFAULT '',
        registered_at REAL NOT NULL,
        PRIMARY KEY (extension, contact_text)
    )""",
)

# Schema version 14 (issue 16): `calls.clock_unsynced` is 1 for a call recorded while the kernel
# called the wall clock unsynchronised (a Pi before its first NTP sync, on the time kept on the
# data partition). The step that synchronises the clock moves this daemon's marked rows and
# clears their mark (firmware/store/clock_times.py); a row still marked is from a boot that
# never synchronised, and its times may be off.
_SCHEMA_V14: tuple[str, ...] = (
    "ALTER TABLE calls ADD COLUMN clock_unsynced INTEGER NOT NULL DEFAULT 0",
)

# Schema version 13 (issue 15): call recordings, one row per recorded call (the calls table and
# its reports untouched). `file` is relative to the recordings folder beside the database;
# `state` 'recording' while it is written, 'done' when closed, 'repaired' when a power cut left it
# unfinished and the next start mended its header (firmware/media/recorder_files.py). No foreign
# key to `calls`: the call's row may be written after the recording's first second.
_SCHEMA_V13: tuple[str, ...] = (
    """CREATE TABLE recordings (
        call_id TEXT PRIMARY KEY NOT NULL,
        file TEXT NOT NULL,
        started_at REAL NOT NULL,
        duration_s REAL NOT NULL DEFAULT 0,
        channels INTEGER NOT NULL CHECK (channels IN (1, 2)),
        codec TEXT NOT NULL CHECK (codec IN ('PCMA', 'PCMU')),
        bytes INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'recording' CHECK (state IN ('recording', 'done', 'repaired'))
    )""",
    "CREATE INDEX recordings_started_at ON recordings(started_at)",
)


def _create_schema_v1(db: Database) -> None:
    for statement in _SCHEMA_V1:
        db.execute(statement)


def _add_call_facts_marks_and_agent_status(db: Database) -> None:
    for statement in _SCHEMA_V2:
        db.execute(statement)


def _add_crm_owners(db: Database) -> None:
    for statement in _SCHEMA_V3:
        db.execute(statement)


def _add_extension_extra(db: Database) -> None:
    for statement in _SCHEMA_V4:
        db.execute(statement)


def _add_voicemail(db: Database) -> None:
    for statement in _SCHEMA_V5:
        db.execute(statement)


def _add_callback_requests(db: Database) -> None:
    for statement in _SCHEMA_V6:
        db.execute(statement)


def _add_webui_secrets_and_sessions(db: Database) -> None:
    for statement in _SCHEMA_V7:
        db.execute(statement)
    # Moved, not made anew: logins made before the upgrade stay signed with a known key (they
    # end anyway: they name no session row).
    row = db.execute("SELECT value FROM settings WHERE key = ?",
                     (_OLD_SESSION_KEY_SETTING,)).fetchone()
    if row is not None:
        db.execute("INSERT INTO webui_secrets (name, value) VALUES (?, ?)",
                   (SESSION_KEY_SECRET, str(json.loads(row[0]))))
        db.execute("DELETE FROM settings WHERE key = ?", (_OLD_SESSION_KEY_SETTING,))


def _add_security_events(db: Database) -> None:
    for statement in _SCHEMA_V8:
        db.execute(statement)


def _add_sms(db: Database) -> None:
    for statement in _SCHEMA_V9:
        db.execute(statement)


def _add_call_lines_and_line_events(db: Database) -> None:
    for statement in _SCHEMA_V10:
        db.execute(statement)


def _add_notifications(db: Database) -> None:
    for statement in _SCHEMA_V11:
        db.execute(statement)


def _add_registrations_and_open_calls(db: Database) -> None:
    for statement in _SCHEMA_V12:
        db.execute(statement)


def _add_recordings(db: Database) -> None:
    for statement in _SCHEMA_V13:
        db.execute(statement)


def _add_clock_marks(db: Database) -> None:
    for statement in _SCHEMA_V14:
        db.execute(statement)


# Migration N (1-based) brings the schema from user_version N-1 to N. Append only; never edit one
# that has shipped.
MIGRATIONS: tuple[Migration, ...] = (
    _create_schema_v1,
    _add_call_facts_marks_and_agent_status,
    _add_crm_owners,
    _add_extension_extra,
    _add_voicemail,
    _add_callback_requests,
    _add_webui_secrets_and_sessions,
    _add_security_events,
    _add_sms,
    _add_call_lines_and_line_events,
    _add_notifications,
    _add_registrations_and_open_calls,  # 12
    _add_recordings,  # 13
    _add_clock_marks,  # 14
)


def new_call_id() -> str:
    """A fresh id for a call record: a uuid4 in hex."""
    return uuid.uuid4().hex


@contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in a `BEGIN IMMEDIATE` transaction: committed if it returns, else undone."""
    if conn.in_transaction:
        raise StoreError("a transaction is already open on this connection")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def _read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block's reads against one snapshot, so a concurrent write is seen whole or not."""
    if conn.in_transaction:
        raise StoreError("a transaction is already open on this connection")
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def _user_version(db: Database) -> int:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    return int(version)


def apply_migrations(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Run each migration the database has not had yet, each in its own transaction.

    Foreign key enforcement is off while migrating and the keys are checked before each commit —
    SQLite's documented procedure for rebuilding tables (https://sqlite.org/lang_altertable.html),
    without which dropping a parent table during a rebuild would cascade into its children.
    """
    version = _user_version(db)
    if version > len(migrations):
        raise SchemaTooNewError(
            f"database schema version {version} is newer than this firmware's {len(migrations)}"
        )
    if version == len(migrations):
        return
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        for target_version, migrate in enumerate(migrations, start=1):
            with _write_transaction(db.conn):
                # Re-read under the write lock: the other process may have migrated meanwhile.
                if _user_version(db) >= target_version:
                    continue
                LOGGER.info("migrating database to schema version %d", target_version)
                migrate(db)
                violations = db.execute("PRAGMA foreign_key_check").fetchall()
                if violations:
                    raise StoreError(
                        f"migration {target_version} broke foreign keys: {violations[:5]}"
                    )
                db.execute(f"PRAGMA user_version = {target_version:d}")
    finally:
        db.execute("PRAGMA foreign_keys = ON")


class Store:
    """The database of one box; open it with `Store.open(path)`.

    Not thread-safe: one `Store` per thread or process, as with any `sqlite3` connection.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating it and its directory if needed) and migrate the database at `path`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # No sqlite-utils plugins: none is installed on the box, and none should change the
        # gateway's connection. Looking for them reads every installed package's metadata (a
        # few hundred ms on the box's way to ready, images/README.md).
        db = Database(path, execute_plugins=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            db.enable_wal()
            if db.journal_mode != "wal":
                raise StoreError(f"{path}: cannot switch to WAL mode (got {db.journal_mode})")
            db.execute("PRAGMA synchronous = FULL")
            apply_migrations(db)
            db.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            db.close()
            raise
        return cls(db)

    @property
    def db(self) -> Database:
        """The underlying sqlite-utils database, for reads this class does not offer."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- configuration ---------------------------------------------------------------------------

    def config_revision(self) -> int:
        """A number that grows with every `replace_config`; the daemon polls it to reload."""
        row = self._db.execute(
            "SELECT value FROM settings WHERE key = ?", (SETTING_CONFIG_REVISION,)
        ).fetchone()
        return 0 if row is None else int(json.loads(row[0]))

    def load_config(self) -> Config:
        """The stored configuration, read from one snapshot and validated like an import.

        Refused (`ConfigError`) at once, before a row is read, when it is larger than any
        configuration the import takes: one stored by older firmware from an alias bomb must
        not stall every reload of the daemon (issue 9 item 8).
        """
        with _read_transaction(self._db.conn):
            size = self._stored_config_chars()
            if size > STORED_CONFIG_MAX_CHARS:
                raise ConfigError("", f"the stored configuration is {size} characters long, "
                                      f"over the {STORED_CONFIG_MAX_CHARS} a configuration may "
                                      "take; import a valid one (linebox config import)")
            data = self._config_data()
        return parse_config(data)

    def _stored_config_chars(self) -> int:
        """The length of every value in the configuration's tables and settings (text as
        characters, numbers as digits): one query that reads no row into Python."""
        parts = []
        for table in CONFIG_TABLES:
            columns = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
            lengths = " + ".join(f"coalesce(length({column}), 0)" for column in columns)
            parts.append(f"(SELECT coalesce(sum({lengths}), 0) FROM {table})")
        settings = (*CONFIG_SETTINGS, SETTING_NUMBER_SCHEDULES, SETTING_NUMBER_WEBHOOKS,
                    SETTING_TRUNK_EXTRA)
        parts.append("(SELECT coalesce(sum(length(value)), 0) FROM settings WHERE key IN "
                     f"({', '.join('?' for _ in settings)}))")
        row = self._db.execute(f"SELECT {' + '.join(parts)}", settings).fetchone()
        return int(row[0])

    def replace_config(self, cfg: Config, *, expected_revision: int | None = None) -> None:
        """Replace the whole configuration in one transaction: all of it is written, or nothing.

        `cfg` is validated first, so the tables never hold a config that would not import.
        With `expected_revision`, raise `RevisionConflictError` (and change nothing) unless the
        stored revision is still that one — for editors that read, modify and write back.
        """
        checked = parse_config(config_to_dict(cfg))
        with _write_transaction(self._db.conn):
            revision = self.config_revision()
            if expected_revision is not None and revision != expected_revision:
                raise RevisionConflictError(
                    f"configuration is at revision {revision}, expected {expected_revision}"
                )
            for table in CONFIG_TABLES:
                self._db.execute(f"DELETE FROM {table}")
            self._insert_config_rows(checked)
            checked_data = config_to_dict(checked)
            for key in CONFIG_SETTINGS:
                if key in checked_data:
                    self._put_setting(key, checked_data[key])
                else:
                    self._db.execute("DELETE FROM settings WHERE key = ?", (key,))
            self._put_setting(
                SETTING_NUMBER_SCHEDULES,
                {n.number: n.schedule for n in checked.numbers if n.schedule is not None},
            )
            self._put_setting(
                SETTING_NUMBER_WEBHOOKS,
                {n.number: {"webhook": n.webhook, "webhook_timeout_s": n.webhook_timeout_s}
                 for n in checked.numbers if n.webhook is not None},
            )
            self._put_setting(SETTING_TRUNK_EXTRA,
                              {t.name: _trunk_extra(t) for t in checked.trunks})
            self._put_setting(SETTING_CONFIG_REVISION, revision + 1)
        LOGGER.info("configuration replaced, revision %d", revision + 1)

    def replace_crm_owners(self, owners: Mapping[str, str]) -> None:
        """Replace the phone → responsible extension table (a CRM export) in one transaction,
        and bump the configuration revision so a running daemon picks it up."""
        with _write_transaction(self._db.conn):
            self._db.execute("DELETE FROM crm_owners")
            self._db.conn.executemany(
                "INSERT INTO crm_owners (phone, extension) VALUES (?, ?)", owners.items()
            )
            self._put_setting(SETTING_CONFIG_REVISION, self.config_revision() + 1)

    def crm_owners(self) -> dict[str, str]:
        return {row[0]: row[1] for row in self._db.execute(
            "SELECT phone, extension FROM crm_owners"
        ).fetchall()}

    # Settings that are not configuration (the web UI's admin password hash): JSON values in
    # `settings`, outside the exported YAML and the config revision.
    def get_setting(self, key: str, default: Any = None) -> Any:
        if key in CONFIG_SETTINGS or key in RESERVED_SETTINGS:
            raise ValueError(f"{key} is part of the configuration")
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put_setting(self, key: str, value: object) -> None:
        if key in CONFIG_SETTINGS or key in RESERVED_SETTINGS:
            raise ValueError(f"{key} is part of the configuration")
        with _write_transaction(self._db.conn):
            self._put_setting(key, value)

    def _put_setting(self, key: str, value: object) -> None:
        self._db.table("settings").upsert(
            {"key": key, "value": json.dumps(value, ensure_ascii=False)}, pk="key"
        )

    # --- the web UI's secrets and sessions (schema v7; never part of the configuration) ---------

    def web_secret(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM webui_secrets WHERE name = ?",
                               (name,)).fetchone()
        return None if row is None else str(row[0])

    def web_secret_or_new(self, name: str, make: Callable[[], str]) -> str:
        """The secret `name`, made with `make()` and kept if there is none yet. One transaction:
        two processes starting at once (the daemon and its web UI) end up with the same one."""
        with _write_transaction(self._db.conn):
            return self._web_secret_or_new(name, make)

    def _web_secret_or_new(self, name: str, make: Callable[[], str]) -> str:
        value = self.web_secret(name)
        if value is None:
            value = make()
            self._db.execute("INSERT INTO webui_secrets (name, value) VALUES (?, ?)",
                             (name, value))
        return value

    def admin_password_hash(self) -> str | None:
        value = self.get_setting(SETTING_WEBUI_ADMIN_PASSWORD)
        return str(value) if value else None

    def setup_code(self) -> str | None:
        """The first-run wizard's one-time code while no administrator password is set (made
        on the first call and kept until the wizard uses it); None once the admin exists."""
        with _write_transaction(self._db.conn):
            if self.admin_password_hash() is not None:
                self._db.execute("DELETE FROM webui_secrets WHERE name = ?",
                                 (SETUP_CODE_SECRET,))
                return None
            return self._web_secret_or_new(SETUP_CODE_SECRET, new_setup_code)

    def claim_first_admin(self, password_hash: str, code: str) -> bool:
        """Set the first administrator password if `code` is the setup code (compared in
        constant time) and no administrator exists yet; the code is used up. False (nothing
        changed) otherwise."""
        with _write_transaction(self._db.conn):
            stored = self.web_secret(SETUP_CODE_SECRET)
            if self.admin_password_hash() is not None or stored is None:
                return False
            if not hmac.compare_digest(normalise_setup_code(code).encode(),
                                       normalise_setup_code(stored).encode()):
                return False
            self._put_setting(SETTING_WEBUI_ADMIN_PASSWORD, password_hash)
            self._db.execute("DELETE FROM webui_secrets WHERE name = ?", (SETUP_CODE_SECRET,))
        LOGGER.info("web UI administrator password set by the first-run wizard")
        return True

    def set_admin_password(self, password_hash: str) -> None:
        """A new administrator password; every admin session ends with the old one."""
        with _write_transaction(self._db.conn):
            self._put_setting(SETTING_WEBUI_ADMIN_PASSWORD, password_hash)
            self._db.execute("DELETE FROM webui_secrets WHERE name = ?", (SETUP_CODE_SECRET,))
            self._db.execute("DELETE FROM webui_sessions WHERE account = ?", ("admin",))

    def add_web_session(self, id_hash: str, *, account: str, credential: str, at: float,
                        expired_before: float, most_per_account: int) -> None:
        """Keep a new login's session. Sessions created before `expired_before` go, and the
        account's oldest beyond `most_per_account`, so logging in over and over cannot grow
        the table."""
        with _write_transaction(self._db.conn):
            self._db.execute("DELETE FROM webui_sessions WHERE created_at < ?",
                             (expired_before,))
            self._db.execute(
                "INSERT INTO webui_sessions (id_hash, account, credential, created_at) "
                "VALUES (?, ?, ?, ?)", (id_hash, account, credential, at))
            self._db.execute(
                "DELETE FROM webui_sessions WHERE account = ? AND id_hash NOT IN ("
                "SELECT id_hash FROM webui_sessions WHERE account = ? "
                "ORDER BY created_at DESC, rowid DESC LIMIT ?)",
                (account, account, most_per_account))

    def web_session(self, id_hash: str) -> dict[str, Any] | None:
        """{"account", "credential", "created_at"} of a live session, or None."""
        return next(iter(self._db.query(
            "SELECT account, credential, created_at FROM webui_sessions WHERE id_hash = ?",
            (id_hash,))), None)

    def end_web_sessions(self, account: str) -> int:
        """End every session of `account` (logout, a password change); how many there were."""
        with _write_transaction(self._db.conn):
            cursor = self._db.execute("DELETE FROM webui_sessions WHERE account = ?",
                                      (account,))
        return int(cursor.rowcount)

    def extension_password(self, number: str) -> str | None:
        """An extension's SIP password (its web UI login), or None if there is no such one."""
        row = self._db.execute("SELECT password FROM extensions WHERE number = ?",
                               (number,)).fetchone()
        return None if row is None else str(row[0])

    def _insert_config_rows(self, cfg: Config) -> None:
        self._db.table("extensions").insert_all(
            {
                "number": e.number,
                "name": e.name,
                "password": e.password,
                "extra": json.dumps(_extension_extra(e), ensure_ascii=False),
            }
            for e in cfg.extensions
        )
        self._db.table("departments").insert_all(
            {
                "number": d.number,
                "name": d.name,
                "strategy": d.strategy,
                "ring_timeout_s": d.ring_timeout_s,
                # The schedule name rides in `extra`, which is read back as department keys.
                "extra": json.dumps(
                    d.extra if d.schedule is None else {**d.extra, "schedule": d.schedule},
                    ensure_ascii=False,
                ),
            }
            for d in cfg.departments
        )
        self._db.table("department_members").insert_all(
            {
                "department": d.number,
                "extension": m.extension,
                "position": position,
                "ring_time_s": m.ring_time_s,
                "extra": json.dumps(m.extra, ensure_ascii=False),
            }
            for d in cfg.departments
            for position, m in enumerate(d.members, start=1)
        )
        self._db.table("trunks").insert_all(
            {
                "name": t.name,
                "type": t.type,
                "host": t.host,
                "port": t.port,
                "transport": t.transport,
                "username": t.username,
                "password": t.password,
                "register": int(t.register),
                "expires_s": t.expires_s,
                "channels": t.channels,
                "from_domain": t.from_domain,
            }
            for t in cfg.trunks
        )
        self._db.table("numbers").insert_all(
            {
                "number": n.number,
                "trunk": n.trunk,
                "channels": n.channels,
                "destination": n.destination,
            }
            for n in cfg.numbers
        )

    def _config_data(self) -> dict[str, Any]:
        """The config tables as the plain data `parse_config` takes; rows in insertion order."""
        members: dict[str, list[str | dict[str, Any]]] = {}
        for row in self._db.query(
            "SELECT department, extension, ring_time_s, extra FROM department_members "
            "ORDER BY department, position"
        ):
            member: dict[str, Any] = {"extension": row["extension"], **json.loads(row["extra"])}
            if row["ring_time_s"] is not None:
                member["ring_time_s"] = row["ring_time_s"]
            members.setdefault(row["department"], []).append(member)
        trunks = []
        for row in self._db.query(
            "SELECT name, type, host, port, transport, username, password, register, expires_s, "
            "channels, from_domain FROM trunks ORDER BY rowid"
        ):
            if row["type"] in MODEM_TRUNK_TYPES:
                # A modem line's columns hold placeholders; its keys are all in the extra.
                trunks.append({"name": row["name"], "type": row["type"]})
                continue
            trunk = {**row, "register": bool(row["register"])}
            if trunk["from_domain"] is None:
                del trunk["from_domain"]
            trunks.append(trunk)
        settings = {
            row["key"]: json.loads(row["value"])
            for row in self._db.query(
                f"SELECT key, value FROM settings WHERE key IN "
                f"({', '.join('?' for _ in CONFIG_SETTINGS)}, ?, ?, ?)",
                (*CONFIG_SETTINGS, SETTING_NUMBER_SCHEDULES, SETTING_NUMBER_WEBHOOKS,
                 SETTING_TRUNK_EXTRA),
            )
        }
        number_schedules = settings.pop(SETTING_NUMBER_SCHEDULES, {})
        number_webhooks = settings.pop(SETTING_NUMBER_WEBHOOKS, {})
        trunk_extra = settings.pop(SETTING_TRUNK_EXTRA, {})
        for trunk in trunks:
            trunk.update(trunk_extra.get(trunk["name"], {}))
        numbers = []
        for row in self._db.query(
            "SELECT number, trunk, channels, destination FROM numbers ORDER BY rowid"
        ):
            if row["number"] in number_schedules:
                row["schedule"] = number_schedules[row["number"]]
            row.update(number_webhooks.get(row["number"], {}))
            numbers.append(row)
        return {
            "extensions": [
                {
                    "number": row["number"],
                    "name": row["name"],
                    "password": row["password"],
                    **json.loads(row["extra"]),
                }
                for row in self._db.query(
                    "SELECT number, name, password, extra FROM extensions ORDER BY rowid"
                )
            ],
            "departments": [
                {
                    "number": row["number"],
                    "name": row["name"],
                    "strategy": row["strategy"],
                    "ring_timeout_s": row["ring_timeout_s"],
                    "members": members.get(row["number"], []),
                    **json.loads(row["extra"]),
                }
                for row in self._db.query(
                    "SELECT number, name, strategy, ring_timeout_s, extra FROM departments "
                    "ORDER BY rowid"
                )
            ],
            "trunks": trunks,
            "numbers": numbers,
            **settings,
        }

    # --- call records ----------------------------------------------------------------------------
    # Times are Unix seconds (time.time()). Each method is one transaction.

    def record_finished_calls(
        self, batch: Sequence[tuple[Mapping[str, object], Sequence[Mapping[str, object]]]],
        *, callback_events: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        """Write whole calls (one row each) with their legs, all in one transaction.

        The daemon keeps a call's record in memory while it is in progress and writes it once it
        ends, batching a second's worth of calls per commit: one fsync per batch instead of
        several per call keeps the event loop free at hundreds of calls per second.

        A column the mapping leaves out is NULL, or its default (`CALL_COLUMN_DEFAULTS`).

        `callback_events`, applied in order after the calls and in the same transaction (so a
        reader never sees a callback attempt without the state it gave its original call):
        ("pending", request) keeps a callback request (`save_callback_request`), and
        ("state", call_id, state) sets a call's callback state (`set_callback_state`; a call
        with no record is logged and skipped rather than undo the batch).
        """
        if not batch and not callback_events:
            return
        with _write_transaction(self._db.conn):
            for call, legs in batch:
                _check_value("direction", str(call["direction"]), CALL_DIRECTIONS)
                _check_value("outcome", str(call["outcome"]), CALL_OUTCOMES)
                if call.get("callback_state") is not None:
                    _check_value("callback_state", str(call["callback_state"]), CALLBACK_STATES)
                for leg in legs:
                    if leg.get("result") is not None:
                        _check_value("result", str(leg["result"]), LEG_RESULTS)
                # The row written when the call was answered (schema v12) is completed, its
                # legs written anew; the marks a manager set meanwhile stay.
                self._db.execute(
                    f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}, record_state) "
                    f"VALUES ({', '.join('?' for _ in CALL_COLUMNS)}, 'ended') "
                    f"ON CONFLICT (id) DO UPDATE SET {_UPSERTED_CALL_COLUMNS}, "
                    "record_state = 'ended'",
                    [_call_value(call, column) for column in CALL_COLUMNS],
                )
                self._db.execute("DELETE FROM call_legs WHERE call_id = ?", (call["id"],))
                self._db.conn.executemany(
                    f"INSERT INTO call_legs ({', '.join(LEG_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in LEG_COLUMNS)})",
                    [[leg.get(column) for column in LEG_COLUMNS] for leg in legs],
                )
            for event in callback_events:
                if event[0] == "pending":
                    self._save_callback_request(event[1])
                elif not self._set_callback_state(event[1], event[2]):
                    LOGGER.warning("callback state %s for call %s, which has no record",
                                   event[2], event[1])

    def recent_calls(
        self, limit: int = RECENT_CALLS_LIMIT, *, outcomes: Collection[str] | None = None,
        line: str | None = None,
    ) -> list[dict[str, Any]]:
        """The latest calls, newest first, as column → value dicts; only those whose outcome is
        in `outcomes` when it is given, and only those that used `line` when it is given."""
        where: list[str] = []
        parameters: list[object] = []
        if outcomes is not None:
            wanted = sorted(outcomes)
            where.append(f"outcome IN ({', '.join('?' for _ in wanted)})")
            parameters.extend(wanted)
        if line is not None:
            where.append("line = ?")
            parameters.append(line)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return list(
            self._db.query(
                f"SELECT * FROM calls {clause}ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (*parameters, limit),
            )
        )

    def mark_call(
        self, call_id: str, *, target: bool | None = None, sale: bool | None = None, by: str
    ) -> dict[str, Any]:
        """Set a manager's marks on a call — a target call (a real customer enquiry) and a sale —
        and return the call's row as it now is. `None` leaves a mark as it was.

        A sale is always a target call: marking a sale marks the call a target call too, and
        unmarking a target call unmarks its sale, so sales never outnumber target calls.
        """
        if target is None and sale is None:
            raise ValueError("nothing to mark: give target, sale or both")
        if target is False and sale is True:
            raise ValueError("a sale is always a target call")
        if not by:
            raise ValueError("say who marks the call (by)")
        with _write_transaction(self._db.conn):
            row = self._db.execute(
                "SELECT target_call, sale FROM calls WHERE id = ?", (call_id,)
            ).fetchone()
            if row is None:
                raise RecordNotFoundError(f"calls has no row with id {call_id!r}")
            new_target = bool(row[0]) if target is None else target
            new_sale = bool(row[1]) if sale is None else sale
            if sale:
                new_target = True
            if not new_target:
                new_sale = False
            self._db.execute(
                "UPDATE calls SET target_call = ?, sale = ?, marked_by = ? WHERE id = ?",
                (int(new_target), int(new_sale), by, call_id),
            )
            marked: dict[str, Any] = next(
                self._db.query("SELECT * FROM calls WHERE id = ?", (call_id,))
            )
        LOGGER.info("call %s marked target=%s sale=%s by %s", call_id, new_target, new_sale, by)
        return marked

    def set_callback_state(self, call_id: str, state: str | None) -> None:
        """Record how the promised callback to a missed caller went (None: none promised).
        A final state (done, expired, failed) ends the pending request too."""
        with _write_transaction(self._db.conn):
            if not self._set_callback_state(call_id, state):
                raise RecordNotFoundError(f"calls has no row with id {call_id!r}")

    def _set_callback_state(self, call_id: str, state: str | None) -> bool:
        if state is not None:
            _check_value("callback_state", state, CALLBACK_STATES)
        found = self._db.execute("UPDATE calls SET callback_state = ? WHERE id = ?",
                                 (state, call_id)).rowcount == 1
        if state in FINAL_CALLBACK_STATES:
            self._db.execute("DELETE FROM callback_requests WHERE origin_call_id = ?",
                             (call_id,))
        return found

    # --- agent statuses --------------------------------------------------------------------------

    def set_agent_status(
        self, extension: str, status: str, *, reason: str | None, at: float, source: str
    ) -> None:
        """Save an agent's status (On line, Break, ...) and log the change, in one transaction.

        `since` moves to `at` only when the status or its reason changes: setting the same
        status again is logged but does not restart the agent's time in it. `source` says who
        changed it: "cli", "phone", "web", or "auto" (put on Break after unanswered offers).
        """
        if not extension or not status:
            raise ValueError("extension and status must not be empty")
        _check_value("source", source, AGENT_STATUS_SOURCES)
        with _write_transaction(self._db.conn):
            self._db.execute(
                "INSERT INTO agent_status (extension, status, reason, since) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (extension) DO UPDATE SET "
                "since = CASE WHEN status = excluded.status AND reason IS excluded.reason "
                "THEN since ELSE excluded.since END, "
                "status = excluded.status, reason = excluded.reason",
                (extension, status, reason, at),
            )
            self._db.execute(
                "INSERT INTO agent_status_log (extension, status, reason, at, source) "
                "VALUES (?, ?, ?, ?, ?)",
                (extension, status, reason, at, source),
            )

    def agent_statuses(self) -> dict[str, dict[str, Any]]:
        """Every saved status: extension → {"status", "reason", "since"}."""
        return {
            row["extension"]: {
                "status": row["status"], "reason": row["reason"], "since": row["since"]
            }
            for row in self._db.query(
                "SELECT extension, status, reason, since FROM agent_status ORDER BY extension"
            )
        }

    def agent_status_log(self, extension: str | None = None) -> list[dict[str, Any]]:
        """Status changes, oldest first: all of them, or one extension's."""
        if extension is None:
            return list(self._db.query("SELECT * FROM agent_status_log ORDER BY id"))
        return list(
            self._db.query(
                "SELECT * FROM agent_status_log WHERE extension = ? ORDER BY at, id",
                (extension,),
            )
        )

    # --- pending callback requests -------------------------------------------------------------

    CALLBACK_REQUEST_COLUMNS = ("origin_call_id", "department", "customer", "trunk", "dialed",
                                "number", "vip", "entered_at", "expires_at", "attempt")

    def save_callback_request(self, request: Mapping[str, object]) -> None:
        """Keep (or update: its attempt, its expiry) a callback request still to be served,
        until its original call's callback state becomes final."""
        with _write_transaction(self._db.conn):
            self._save_callback_request(request)

    def _save_callback_request(self, request: Mapping[str, object]) -> None:
        columns = self.CALLBACK_REQUEST_COLUMNS
        self._db.execute(
            f"INSERT OR REPLACE INTO callback_requests ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            [request.get(column) for column in columns],
        )

    def pending_callback_requests(self) -> list[dict[str, Any]]:
        """Requests in the order the callers first came in."""
        return list(self._db.query(
            "SELECT * FROM callback_requests ORDER BY entered_at, origin_call_id"))

    # --- voicemail -----------------------------------------------------------------------------

    def add_voicemail(self, *, call_id: str, mailbox: str, caller: str, left_at: float,
                      duration_s: float, audio: bytes) -> int:
        """Keep a message (`audio`: a WAV file); its id."""
        with _write_transaction(self._db.conn):
            cursor = self._db.execute(
                "INSERT INTO voicemails (call_id, mailbox, caller, left_at, duration_s, audio) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (call_id, mailbox, caller, left_at, duration_s, audio),
            )
        return int(cursor.lastrowid or 0)

    def voicemails(self, mailbox: str | None = None, *, limit: int = RECENT_CALLS_LIMIT
                   ) -> list[dict[str, Any]]:
        """Messages, newest first, without their audio: all, or one mailbox's."""
        columns = VOICEMAIL_COLUMNS
        if mailbox is None:
            return list(self._db.query(
                f"SELECT {columns} FROM voicemails ORDER BY left_at DESC, id DESC LIMIT ?",
                (limit,)))
        return list(self._db.query(
            f"SELECT {columns} FROM voicemails WHERE mailbox = ? "
            "ORDER BY left_at DESC, id DESC LIMIT ?", (mailbox, limit)))

    def voicemail(self, voicemail_id: int) -> dict[str, Any] | None:
        """One message without its audio, or None."""
        return next(iter(self._db.query(
            f"SELECT {VOICEMAIL_COLUMNS} FROM voicemails WHERE id = ?", (voicemail_id,))), None)

    def voicemail_counts(self) -> dict[str, tuple[int, int]]:
        """Mailbox → (messages, unheard) for every mailbox holding a message."""
        rows = self._db.execute(
            "SELECT mailbox, COUNT(*), SUM(heard = 0) FROM voicemails GROUP BY mailbox"
        ).fetchall()
        return {str(mailbox): (int(total), int(unheard or 0)) for mailbox, total, unheard in rows}

    def voicemail_audio(self, voicemail_id: int) -> bytes:
        row = self._db.execute("SELECT audio FROM voicemails WHERE id = ?",
                               (voicemail_id,)).fetchone()
        if row is None:
            raise RecordNotFoundError(f"voicemails has no row with id {voicemail_id!r}")
        return bytes(row[0])

    def mark_voicemail_heard(self, voicemail_id: int, heard: bool = True) -> None:
        self._update("voicemails", voicemail_id,
                     "UPDATE voicemails SET heard = ? WHERE id = ?", (int(heard), voicemail_id))

    def delete_voicemail(self, voicemail_id: int) -> None:
        self._update("voicemails", voicemail_id, "DELETE FROM voicemails WHERE id = ?",
                     (voicemail_id,))

    def set_greeting(self, mailbox: str, audio: bytes | None, *, duration_s: float = 0.0,
                     at: float = 0.0) -> None:
        """The mailbox's own greeting (a WAV file of 16-bit 8 kHz mono), or None for the
        built-in one."""
        with _write_transaction(self._db.conn):
            if audio is None:
                self._db.execute("DELETE FROM greetings WHERE mailbox = ?", (mailbox,))
                return
            self._db.execute(
                "INSERT INTO greetings (mailbox, audio, duration_s, uploaded_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (mailbox) DO UPDATE SET "
                "audio = excluded.audio, duration_s = excluded.duration_s, "
                "uploaded_at = excluded.uploaded_at",
                (mailbox, audio, duration_s, at),
            )

    def greeting(self, mailbox: str) -> bytes | None:
        row = self._db.execute("SELECT audio FROM greetings WHERE mailbox = ?",
                               (mailbox,)).fetchone()
        return None if row is None else bytes(row[0])

    def greetings(self) -> dict[str, dict[str, Any]]:
        """Mailbox → {"duration_s", "uploaded_at"} of every uploaded greeting."""
        return {row["mailbox"]: {"duration_s": row["duration_s"],
                                 "uploaded_at": row["uploaded_at"]}
                for row in self._db.query(
                    "SELECT mailbox, duration_s, uploaded_at FROM greetings")}

    # --- security events -------------------------------------------------------------------------

    def add_security_event(self, *, at: float, kind: str, extension: str | None = None,
                           number: str | None = None, detail: str | None = None,
                           repeated: int = 0) -> None:
        """Keep one security event (Unix time `at`); the oldest beyond SECURITY_EVENTS_KEPT go."""
        with _write_transaction(self._db.conn):
            self._db.execute(
                "INSERT INTO security_events (at, kind, extension, number, detail, repeated) "
                "VALUES (?, ?, ?, ?, ?, ?)", (at, kind, extension, number, detail, repeated))
            self._keep_newest("security_events", SECURITY_EVENTS_KEPT)

    def security_events(self, limit: int = RECENT_CALLS_LIMIT) -> list[dict[str, Any]]:
        """The latest security events, newest first, as column → value dicts."""
        return list(self._db.query(
            f"SELECT {', '.join(SECURITY_EVENT_COLUMNS)} FROM security_events "
            "ORDER BY id DESC LIMIT ?", (limit,)))

    # --- text messages -----------------------------------------------------------------------

    def add_sms(self, *, line: str, direction: str, number: str, text: str, at: float,
                complete: bool = True) -> int:
        """Keep one SMS of a GSM line (`direction` "in": `number` sent it; "out": it was sent
        to `number`) at Unix time `at`; its id. The oldest beyond SMS_KEPT go."""
        _check_value("direction", direction, SMS_DIRECTIONS)
        with _write_transaction(self._db.conn):
            cursor = self._db.execute(
                "INSERT INTO sms (line, direction, number, text, at, complete) "
                "VALUES (?, ?, ?, ?, ?, ?)", (line, direction, number, text, at, int(complete)))
            self._keep_newest("sms", SMS_KEPT)
        return int(cursor.lastrowid or 0)

    def sms(self, line: str | None = None, *, direction: str | None = None,
            limit: int = RECENT_CALLS_LIMIT) -> list[dict[str, Any]]:
        """Text messages, newest first (`complete` as a bool): all, or one line's, or one
        direction's."""
        where: list[str] = []
        parameters: list[object] = []
        if line is not None:
            where.append("line = ?")
            parameters.append(line)
        if direction is not None:
            _check_value("direction", direction, SMS_DIRECTIONS)
            where.append("direction = ?")
            parameters.append(direction)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._db.query(
            f"SELECT {', '.join(SMS_COLUMNS)} FROM sms {clause}ORDER BY at DESC, id DESC "
            "LIMIT ?", (*parameters, limit))
        return [{**row, "complete": bool(row["complete"])} for row in rows]

    # --- line events -------------------------------------------------------------------------

    def add_line_event(self, *, at: float, kind: str, line: str | None,
                       state: str | None = None, old: str | None = None,
                       reason: str = "") -> None:
        """Keep one event of the lines at Unix time `at`: kind "state" (`line` went to `state`,
        from `old` when known) or "failover" (calls out now go through `line`, None when no
        line is up, instead of `old`). The oldest beyond LINE_EVENTS_KEPT go."""
        _check_value("kind", kind, LINE_EVENT_KINDS)
        if kind == "state" and (not line or not state):
            raise ValueError("a state event names its line and the state it went to")
        with _write_transaction(self._db.conn):
            self._db.execute(
                "INSERT INTO line_events (at, kind, line, state, old, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)", (at, kind, line, state, old, reason))
            self._keep_newest("line_events", LINE_EVENTS_KEPT)

    def line_events(self, line: str | None = None, *, limit: int = RECENT_CALLS_LIMIT
                    ) -> list[dict[str, Any]]:
        """Events of the lines, newest first: all, or those of one line — its state changes
        and the switches the failover made to it or away from it."""
        clause = ""
        parameters: tuple[str, ...] = ()
        if line is not None:
            clause = "WHERE line = ? OR (kind = 'failover' AND old = ?) "
            parameters = (line, line)
        return list(self._db.query(
            f"SELECT {', '.join(LINE_EVENT_COLUMNS)} FROM line_events {clause}"
            "ORDER BY id DESC LIMIT ?", (*parameters, limit)))

    def _keep_newest(self, table: str, kept: int) -> None:
        """Delete all but the newest `kept` rows (by id) of a log table of this module's."""
        self._db.execute(f"DELETE FROM {table} WHERE id <= (SELECT id FROM {table} "
                         "ORDER BY id DESC LIMIT 1 OFFSET ?)", (kept,))

    def legs_of(self, call_id: str) -> list[dict[str, Any]]:
        """The legs of one call in the order they were started."""
        return list(
            self._db.query("SELECT * FROM call_legs WHERE call_id = ? ORDER BY id", (call_id,))
        )

    def _update(self, table: str, key: object, sql: str, parameters: Sequence[object]) -> None:
        with _write_transaction(self._db.conn):
            if self._db.execute(sql, parameters).rowcount != 1:
                raise RecordNotFoundError(f"{table} has no row with id {key!r}")


def _extension_extra(extension: Extension) -> dict[str, Any]:
    """An extension's optional keys as stored in `extensions.extra` (only those set)."""
    return {key: value for key, value in extension_to_data(extension).items()
            if key not in EXTENSION_COLUMNS}


def _trunk_extra(trunk: Trunk) -> dict[str, Any]:
    """A trunk's keys that have no column of their own, as kept in SETTING_TRUNK_EXTRA: every
    key but the name and type for a modem line, whose `port` is a device path."""
    columns = {"name", "type"} if trunk.is_modem else TRUNK_COLUMNS
    return {key: value for key, value in trunk_to_data(trunk).items() if key not in columns}


def _call_value(call: Mapping[str, object], column: str) -> object:
    if column not in call:
        return CALL_COLUMN_DEFAULTS.get(column)
    value = call[column]
    if column in ("target_call", "sale"):
        return int(bool(value))
    return value


def _check_value(name: str, value: str, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(sorted(allowed))}, got {value!r}")
