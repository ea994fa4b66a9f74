"""The e-licence process: every printed certificate gets its electronic certificate (电子证照), once, when due.

Two halves, both on the elected leader only (decision 0024), both writing under its term (``db.fence``):

- **Scheduling** — a ``View`` for ``LogFollower`` named ``elicense``. For each ``Issued``, ``Reissued`` or
  ``CertificateReplaced`` it writes a row into ``elicense_due``: the application and the version of the print,
  the certificate number, when it was printed, when the e-licence is due (the province profile's
  ``elicense_working_days`` on the working-days calendar: Beijing 2, the others at once) and the licence
  identifier it will have (derived: ``licence_id_for``). The rows and the position move in one transaction
  (compare-and-set, like the archive), so a page applied twice schedules nothing twice; an event that cannot be
  scheduled (its application unreadable) is parked by the follower (decision 0023).
- **Issuing** — ``run()``, a loop (``leadership.lead("elicense-issuing", …)``) woken after each page and every
  ``poll_seconds``: each due row, read with the service's clock, is issued: a Token Status List index drawn at
  random from a never-reused pool (``elicense_status_slots``), the SD-JWT signed with the current key
  (backend.credentials), sealed and stored in ``elicense_credentials`` — these in one transaction — and then
  ``ELicenseIssued`` recorded (licence id, certificate number, key id, status entry: no personal data). A
  crash between the two finds the stored credential again (keyed by application and version) and records the
  event with it; the aggregate refuses a second e-licence for a number. A print whose number was voided before
  its e-licence was due (a reissue, a replacement) gets none (``outcome`` superseded), nor one the issuer declared
  void (``revoked``, decision 0040).
- **Amending** (decision 0048) — where the province puts the police's registration into the record, the police's
  ``done`` schedules a row of its own (keyed by that event's version, due at once) whose licence id is the print's
  next version; the round signs the new version with the registration and records ``ELicenseAmended`` the same
  way, once.

The credential is stored, not re-derived: an ECDSA signature and the disclosures' salts are random, and the
holder must get the same bytes each time. It is sealed like the archive (decision 0003): AES-256-GCM under
HKDF(at-rest key, ``birthcert elicense v1``), bound to its row's licence id, application and version.

For part B (verification, revocation): ``ElicenseStore.credential`` opens a stored credential;
``elicense_credentials`` names each licence's ``status_list``/``status_idx`` and ``kid``; the lists hold
``STATUS_LIST_SIZE`` entries; ``KeyRing.jwks`` serves every key ever used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from uuid import UUID

from cryptography.exceptions import InvalidTag

from backend.credentials import KeyRing, credential_claims, disclosed_names, issue_sd_jwt
from backend.storage import derive_aead
from domain.application import ISSUED_STATES, LOST, REVOKED, BirthCertificateApplication
from domain.bundle import REGISTRATION_SERVICE
from domain.elicense import DEFAULT_TYPE_CODE, VERSION, LicenceId, data_items, due_at
from domain.errors import Conflict, RuleViolated
from domain.policy import WorkingCalendar, load_profiles
from domain.revocation import STATUS_REASON
from domain.service import Applications
from domain.values import Actor
from projections.leader_loop import SqlFollowerLoop
from projections.runner import DomainEvent, Fenced, Page
from projections.sql import Database

log = logging.getLogger(__name__)

NAME: Final = "elicense"
PROCESS_ACTOR: Final = Actor(id="elicense-process", role="system")
# Token Status List (draft-ietf-oauth-status-list): 2**17 entries a list, so that no list reveals a count; a new
# list is opened once half of one is taken (a random free index stays cheap to draw).
STATUS_LIST_SIZE: Final = 2**17
STATUS_LIST_FILL: Final = 2**16
VCT: Final = "urn:birthcert:elicense:birth-medical-certificate:1"
HKDF_INFO: Final = b"birthcert elicense v1"
NUMBER_KEY_INFO: Final = b"birthcert elicense certificate number index v1"
NONCE_BYTES: Final = 12
POLL_SECONDS: Final = 30.0
T = TypeVar("T")

_ISSUES: Final = (
    BirthCertificateApplication.Issued,
    BirthCertificateApplication.Reissued,
    BirthCertificateApplication.CertificateReplaced,
)


def licence_id_for(
    index_key: bytes, issuer_code: str, application_id: UUID | str, version: int, type_code: str
) -> str:
    """The identifier of the e-licence of the print at ``version``: its sequence derived by HMAC under the
    service's index key, so that the same print always has the same identifier and nobody can guess one."""
    digest = hmac.new(
        index_key, f"elicense:{application_id}:{int(version)}".encode(), hashlib.sha256
    ).digest()
    return str(LicenceId.from_digest(issuer_code, digest, type_code=type_code))


def licence_id_of_print(
    app: BirthCertificateApplication, version: int, index_key: bytes, type_code: str
) -> str:
    """The identifier of the e-licence of the print at ``version`` (``app`` as of that print): known as soon as it
    is printed, the same for its stub's QR code, its schedule and its credential."""
    issuer = str((app.record or {}).get("institution_code") or app.institution or "")
    return licence_id_for(index_key, issuer, app.id, version, type_code)


@dataclass(frozen=True)
class PrintedLicence:
    """How a print names its e-licence on paper (the archive's stub page): the service's index key, licence
    type code and public URL."""

    index_key: bytes = field(repr=False)
    public_url: str
    type_code: str = DEFAULT_TYPE_CODE

    def of(self, app: BirthCertificateApplication, version: int) -> tuple[str, str]:
        """The licence id of the print at ``version`` and the verify URL its QR code encodes."""
        licence = licence_id_of_print(app, version, self.index_key, self.type_code)
        return licence, verify_url(self.public_url, licence)


def status_uri(public_url: str, list_id: str) -> str:
    """Where part B serves a status list."""
    return f"{public_url.rstrip('/')}/api/v1/status-lists/{list_id}"


def verify_url(public_url: str, licence_id: str) -> str:
    """What the QR code encodes: the verify page with the licence id in the fragment (never sent to a server)."""
    return f"{public_url.rstrip('/')}/verify/#{licence_id}"


@dataclass(frozen=True)
class Due:
    """A print waiting for (or given) its e-licence."""

    application_id: str
    version: int
    number_digest: str
    printed_at: str
    due_at: datetime
    licence_id: str
    done_at: str | None
    outcome: str | None


@dataclass(frozen=True)
class StoredCredential:
    """An issued credential (opened): the compact SD-JWT and its clear columns."""

    licence_id: str
    application_id: str
    version: int
    certificate_number: str
    kid: str
    status_list: str
    status_idx: int
    issued_at: str
    credential: str


class ElicenseStore:
    """The e-licence's tables (blocking: call on the store executor)."""

    def __init__(self, db: Database, key: bytes) -> None:
        """``key``: the service's at-rest key (``backend.storage.at_rest_key``); the store derives its own."""
        self.db = db
        self._aead = derive_aead(key, HKDF_INFO)
        self._number_key = hmac.new(key, NUMBER_KEY_INFO, hashlib.sha256).digest()

    def number_digest(self, certificate_number: str) -> str:
        """What the tables hold of a certificate number (it names a child): its keyed digest, for lookups."""
        return hmac.new(self._number_key, certificate_number.encode(), hashlib.sha256).hexdigest()

    def seal_text(self, text: str, context: str) -> str:
        """``text`` sealed for a clear column (base64), bound to ``context`` (the row's key)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, text.encode(), b"text:" + context.encode())
        return base64.b64encode(sealed).decode("ascii")

    def open_text(self, sealed: str, context: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], b"text:" + context.encode()
            ).decode()
        except InvalidTag:
            raise RuntimeError(f"a sealed e-licence value does not decrypt for {context}") from None

    def __repr__(self) -> str:
        return "ElicenseStore()"

    @staticmethod
    def _aad(licence_id: str, application_id: str, version: int) -> bytes:
        return json.dumps([licence_id, application_id, int(version)], separators=(",", ":")).encode()

    def seal(self, credential: str, licence_id: str, application_id: str, version: int) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        aad = self._aad(licence_id, application_id, version)
        return nonce + self._aead.encrypt(nonce, credential.encode("ascii"), aad)

    _COLUMNS: Final = (
        "licence_id, application_id, version, number_digest, kid, status_list, status_idx, issued_at, "
        "sealed_credential"
    )

    def _opened(self, row: tuple[Any, ...]) -> StoredCredential:
        licence_id, application_id, version = str(row[0]), str(row[1]), int(row[2])
        sealed = bytes(row[8])
        try:
            plain = self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self._aad(licence_id, application_id, version)
            )
        except InvalidTag:
            raise RuntimeError(f"the stored e-licence {licence_id} does not decrypt for its row") from None
        credential = plain.decode("ascii")
        return StoredCredential(
            licence_id=licence_id,
            application_id=application_id,
            version=version,
            certificate_number=str(credential_claims(credential)["certificate_number"]),
            kid=str(row[4]),
            status_list=str(row[5]),
            status_idx=int(row[6]),
            issued_at=str(row[7]),
            credential=credential,
        )

    def credential(self, licence_id: str) -> StoredCredential | None:
        """The stored credential of a licence, opened (None: not issued)."""
        row = self.db.fetchone(
            f"SELECT {self._COLUMNS} FROM elicense_credentials WHERE licence_id = ?", (licence_id,)
        )
        return None if row is None else self._opened(row)

    def credentials_of_number(self, certificate_number: str) -> list[StoredCredential]:
        """The credentials stored for a certificate number (a paper certificate checked by its number)."""
        rows = self.db.fetchall(
            f"SELECT {self._COLUMNS} FROM elicense_credentials WHERE number_digest = ? ORDER BY issued_at",
            (self.number_digest(certificate_number),),
        )
        return [self._opened(r) for r in rows]

    def credential_of_print(self, application_id: str, version: int) -> StoredCredential | None:
        """The credential stored for one print (application, version of its Issued/Reissued event)."""
        row = self.db.fetchone(
            f"SELECT {self._COLUMNS} FROM elicense_credentials WHERE application_id = ? AND version = ?",
            (application_id, version),
        )
        return None if row is None else self._opened(row)

    def due_of(self, application_id: str) -> list[Due]:
        """The application's prints and their e-licences' schedule, oldest first."""
        rows = self.db.fetchall(
            "SELECT application_id, version, number_digest, printed_at, due_at, licence_id, done_at, outcome "
            "FROM elicense_due WHERE application_id = ? ORDER BY version",
            (application_id,),
        )
        return [_due(r) for r in rows]

    def allocate_slot(self, licence_id: str) -> tuple[str, int]:
        """Inside a transaction: a random unused index of the list being filled, recorded for ever."""
        row = self.db.fetchone(
            "SELECT list_id, COUNT(*) FROM elicense_status_slots GROUP BY list_id "
            "ORDER BY CAST(list_id AS INTEGER) DESC LIMIT 1"
        )
        if row is None:
            list_id = "1"
        elif int(row[1]) >= STATUS_LIST_FILL:
            list_id = str(int(row[0]) + 1)
        else:
            list_id = str(row[0])
        while True:
            idx = secrets.randbelow(STATUS_LIST_SIZE)
            taken = self.db.fetchone(
                "SELECT 1 FROM elicense_status_slots WHERE list_id = ? AND idx = ?", (list_id, idx)
            )
            if taken is None:
                break
        self.db.execute(
            "INSERT INTO elicense_status_slots (list_id, idx, licence_id, allocated_at) VALUES (?, ?, ?, ?)",
            (list_id, idx, licence_id, _now_iso()),
        )
        return list_id, idx

    def set_bit(
        self,
        licence_id: str,
        list_id: str,
        idx: int,
        reason: str,
        position: int,
        *,
        replaced_by: str | None = None,
        grounds: str | None = None,
    ) -> bool:
        """Inside a transaction: the credential's status bit set (its reason, the replacement number or the
        revocation's ground sealed), unless it is set already; never unset. True when this set it."""
        if self.db.fetchone("SELECT 1 FROM elicense_status_bits WHERE licence_id = ?", (licence_id,)):
            return False
        self.db.execute(
            "INSERT INTO elicense_status_bits (list_id, idx, licence_id, reason, sealed_replaced_by, position, "
            "set_at, sealed_grounds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                list_id,
                idx,
                licence_id,
                reason,
                None if replaced_by is None else self.seal_text(replaced_by, licence_id),
                position,
                _now_iso(),
                None if grounds is None else self.seal_text(grounds, f"grounds:{licence_id}"),
            ),
        )
        return True


def _due(row: tuple[Any, ...]) -> Due:
    return Due(
        application_id=str(row[0]),
        version=int(row[1]),
        number_digest=str(row[2]),
        printed_at=str(row[3]),
        due_at=datetime.fromtimestamp(float(row[4]), UTC),
        licence_id=str(row[5]),
        done_at=None if row[6] is None else str(row[6]),
        outcome=None if row[7] is None else str(row[7]),
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class ElicenseProcess(SqlFollowerLoop):
    """Schedules and issues the e-licences: a ``View`` for ``LogFollower`` plus the issuing loop ``run``."""

    NAME = NAME
    ROUND = "e-licence issuing"

    def __init__(
        self,
        applications: Applications,
        executor: Executor,
        store: ElicenseStore,
        keys: KeyRing,
        *,
        public_url: str,
        index_key: bytes,
        calendar: WorkingCalendar,
        type_code: str = DEFAULT_TYPE_CODE,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        super().__init__(store.db, executor, poll_seconds)
        self.applications = applications
        self.store = store
        self.keys = keys
        self.public_url = public_url.rstrip("/")
        self._index_key = index_key
        self.calendar = calendar
        self.type_code = type_code

    # ------------------------------------------------------------------ View (scheduling)

    async def redo(self, position: int, event: DomainEvent) -> None:
        """A parked print scheduled now (its row written if missing; the position untouched)."""
        if await self._run(self._schedule_late, position, event):
            self.wake()

    async def reset(self) -> None:
        """The schedule and the credentials are kept: nothing to rebuild in place."""
        raise RuntimeError("the e-licence schedule is kept permanently and cannot be rebuilt in place")

    def _page(self, page: Page, start: int, end: int) -> tuple[bool, int]:
        rows: list[tuple[Any, ...]] = []
        for position, event in page:
            row = self._row(position, event, rows) if position > start else None
            if row is not None:
                rows.append(row)
        with self.db.transaction():
            if not self.db.move(NAME, start, end):
                return False, 0
            for row in rows:
                self._insert_due(row)
        return True, len(rows)

    def _row(
        self, position: int, event: DomainEvent, earlier: list[tuple[Any, ...]]
    ) -> tuple[Any, ...] | None:
        """The schedule's row for a print, or for the amendment the police's registration brings (0048)."""
        if isinstance(event, _ISSUES):
            return self._due_row(position, event)
        if isinstance(event, BirthCertificateApplication.BundleServiceUpdated) and _registers(event):
            return self._amendment_row(position, event, earlier)
        return None

    def _schedule_late(self, position: int, event: DomainEvent) -> bool:
        row = self._row(position, event, [])
        if row is None:
            return False
        with self.db.transaction():
            self.db.check_fence(self.db.fence)
            return self._insert_due(row)

    def _due_row(self, position: int, event: DomainEvent) -> tuple[Any, ...]:
        app_id = str(event.originator_id)
        version = int(event.originator_version)
        app: object = self.applications.repository.get(UUID(app_id), version=version)
        if not isinstance(app, BirthCertificateApplication) or app.record is None:
            raise TypeError("an issued certificate whose application has no delivery record")
        profile = load_profiles().get(app.province)
        days = profile.elicense_working_days if profile is not None else None
        printed: datetime = getattr(event, "timestamp")  # noqa: B009  (every domain event of ours has one)
        due = due_at(printed, days, self.calendar)
        licence = licence_id_of_print(app, version, self._index_key, self.type_code)
        number = str(getattr(event, "certificate_number"))  # noqa: B009  (Issued, Reissued, Replaced have one)
        return (
            app_id,
            version,
            position,
            self.store.number_digest(number),
            printed.astimezone(UTC).isoformat(),
            due.timestamp(),
            licence,
        )

    def _amendment_row(
        self,
        position: int,
        event: BirthCertificateApplication.BundleServiceUpdated,
        earlier: list[tuple[Any, ...]],
    ) -> tuple[Any, ...] | None:
        """The police registered the newborn: where the province puts the registration into the e-licence's
        record, the print in force gets a new version of its licence (same sequence, next version), due at
        once. None where the province does not want it. The print's own row comes first in the log, so it is
        scheduled already (or earlier in this page); if not, this raises and the follower parks the event."""
        app_id = str(event.originator_id)
        app: object = self.applications.repository.get(UUID(app_id), version=int(event.originator_version))
        if not isinstance(app, BirthCertificateApplication):
            raise TypeError("not an application")
        if app.bundle_registration() is None or app.certificate_number is None:
            return None
        digest = self.store.number_digest(app.certificate_number)
        prints = [r for r in earlier if r[0] == app_id and r[3] == digest and _version_of(r[6]) == VERSION]
        if not prints:
            found = self.db.fetchall(
                "SELECT licence_id FROM elicense_due WHERE application_id = ? AND number_digest = ? "
                "ORDER BY version",
                (app_id, digest),
            )
            prints = [(None,) * 6 + (str(r[0]),) for r in found if _version_of(str(r[0])) == VERSION]
        if not prints:
            raise LookupError("a registration for a print not scheduled")
        registered: datetime = getattr(event, "timestamp")  # noqa: B009  (every domain event of ours has one)
        return (
            app_id,
            int(event.originator_version),
            position,
            digest,
            registered.astimezone(UTC).isoformat(),
            registered.timestamp(),
            str(LicenceId.parse(str(prints[-1][6])).next_version()),
        )

    def _insert_due(self, row: tuple[Any, ...]) -> bool:
        found = self.db.fetchone(
            "SELECT 1 FROM elicense_due WHERE application_id = ? AND version = ?", (row[0], row[1])
        )
        if found is not None:
            return False
        self.db.execute(
            "INSERT INTO elicense_due (application_id, version, position, number_digest, printed_at, due_at, "
            "licence_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        return True

    # ------------------------------------------------------------------ issuing

    def _round(self) -> int:
        return self.issue_due()

    def issue_due(self) -> int:
        """On the executor: issue every print due by the service's clock; how many e-licences were recorded."""
        now = self.applications.clock()
        rows = self.db.fetchall(
            "SELECT application_id, version, number_digest, printed_at, due_at, licence_id, done_at, outcome "
            "FROM elicense_due WHERE done_at IS NULL AND due_at <= ? ORDER BY due_at LIMIT 100",
            (now.timestamp(),),
        )
        issued = 0
        for row in rows:
            due = _due(row)
            try:
                issued += self._issue(due, now) == "issued"
            except Fenced:
                raise
            except Exception as error:
                log.error(
                    "e-licence of %s v%d not issued yet (%s)",
                    due.application_id,
                    due.version,
                    type(error).__name__,
                )
        return issued

    def _issue(self, due: Due, now: datetime) -> str:
        app: object = self.applications.repository.get(UUID(due.application_id))
        printed: object = self.applications.repository.get(UUID(due.application_id), version=due.version)
        if not isinstance(app, BirthCertificateApplication) or not isinstance(
            printed, BirthCertificateApplication
        ):
            raise TypeError("not an application")
        number = str(printed.certificate_number)  # the print's own number (the tables hold only its digest)
        outcome = _skip(app, number, due.licence_id)
        if outcome == WAITING:
            self._wait(due, now)
            return outcome
        amends, stored = None, None
        if outcome is None and _version_of(due.licence_id) != VERSION:
            amends, outcome = self._amending(app, number)
        if outcome is None:
            stored = self.store.credential_of_print(due.application_id, due.version) or self._sign(
                app, due, number, now
            )
            try:
                self.applications.issue_elicense(
                    PROCESS_ACTOR,
                    app.id,
                    licence_id=stored.licence_id,
                    certificate_number=stored.certificate_number,
                    key_id=stored.kid,
                    status_list=stored.status_list,
                    status_index=stored.status_idx,
                    amends=amends,
                )
                outcome = "issued"
            except (RuleViolated, Conflict):
                now_app: object = self.applications.repository.get(app.id)
                if not isinstance(now_app, BirthCertificateApplication):
                    raise
                outcome = _skip(now_app, number, due.licence_id)
                if outcome in (None, WAITING):
                    raise  # some other change raced it: the next round tries again
        with self.db.transaction():
            self.db.check_fence(self.db.fence)
            if outcome in VOIDED:
                stored = stored or self.store.credential_of_print(due.application_id, due.version)
                if stored is not None:
                    self._void_unissued(stored, outcome)
            self.db.execute(
                "UPDATE elicense_due SET done_at = ?, outcome = ? WHERE application_id = ? AND version = ?",
                (_now_iso(), outcome, due.application_id, due.version),
            )
        if outcome == "issued":
            log.info("e-licence issued for %s v%d", due.application_id, due.version)  # no licence id (0038)
        return outcome

    def _amending(self, app: BirthCertificateApplication, number: str) -> tuple[str | None, str | None]:
        """``(licence the amendment supersedes, None)``, or ``(None, "included")`` when the e-licence in force
        already carries the registration (it was signed after the police's result came)."""
        current = app.elicense_for(number)
        stored = None if current is None else self.store.credential(current["licence_id"])
        if current is None or stored is None:
            raise RuntimeError("an e-licence recorded without its stored credential")
        if "citizen_id_number" in disclosed_names(stored.credential):
            return None, "included"
        return str(current["licence_id"]), None

    def _wait(self, due: Due, now: datetime) -> None:
        """An amendment whose print has no e-licence yet: looked at again when that is due (a minute at least)."""
        row = self.db.fetchone(
            "SELECT MAX(due_at) FROM elicense_due WHERE application_id = ? AND number_digest = ? AND version < ?",
            (due.application_id, due.number_digest, due.version),
        )
        later = max(now.timestamp() + 60.0, float(row[0] or 0.0) if row else 0.0)
        with self.db.transaction():
            self.db.check_fence(self.db.fence)
            self.db.execute(
                "UPDATE elicense_due SET due_at = ? WHERE application_id = ? AND version = ? AND done_at IS NULL",
                (later, due.application_id, due.version),
            )

    def _void_unissued(self, stored: StoredCredential, outcome: str) -> None:
        """A credential signed and stored, then refused because the certificate was declared void or
        superseded in between: never handed to anyone, yet findable by its number, so its bit is set here
        (the status follower may have passed the voiding event before the row existed). Its position is the
        print's (the voiding event's is not known here)."""
        row = self.db.fetchone(
            "SELECT position FROM elicense_due WHERE application_id = ? AND version = ?",
            (stored.application_id, stored.version),
        )
        position = 0 if row is None else int(row[0])
        self.store.set_bit(
            stored.licence_id, stored.status_list, stored.status_idx, VOIDED[outcome], position
        )

    def _sign(
        self, app: BirthCertificateApplication, due: Due, number: str, now: datetime
    ) -> StoredCredential:
        form = app.form()
        if form is None:
            raise TypeError("an issued application without a complete form")
        printed = datetime.fromisoformat(due.printed_at)
        plain, personal = data_items(
            form,
            certificate_number=number,
            issued_at=printed,
            licence_id=due.licence_id,
            registration=app.bundle_registration(),
        )
        signer = self.keys.current()
        with self.db.transaction():
            self.db.check_fence(self.db.fence)
            list_id, idx = self.store.allocate_slot(due.licence_id)
            claims = {
                "iss": self.public_url,
                "iat": int(now.timestamp()),
                "vct": VCT,
                **plain,
                "status": {"status_list": {"idx": idx, "uri": status_uri(self.public_url, list_id)}},
            }
            credential = issue_sd_jwt(signer, claims, personal)
            issued_at = now.astimezone(UTC).isoformat()
            sealed = self.store.seal(credential, due.licence_id, due.application_id, due.version)
            self.db.execute(
                "INSERT INTO elicense_credentials (licence_id, application_id, version, number_digest, kid, "
                "status_list, status_idx, issued_at, sealed_credential) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    due.licence_id,
                    due.application_id,
                    due.version,
                    due.number_digest,
                    signer.kid,
                    list_id,
                    idx,
                    issued_at,
                    sealed,
                ),
            )
        return StoredCredential(
            licence_id=due.licence_id,
            application_id=due.application_id,
            version=due.version,
            certificate_number=number,
            kid=signer.kid,
            status_list=list_id,
            status_idx=idx,
            issued_at=issued_at,
            credential=credential,
        )


# A refused issue's outcome → the reason its never-issued credential's status bit records (both read as
# ``revoked`` by a verifier: a credential nobody was given stands for nothing).
VOIDED: Final = {"revoked": STATUS_REASON, "superseded": "reissued"}


# An amendment's outcome while its print's e-licence is not issued yet: not done, looked at again later.
WAITING: Final = "waiting"
# The status reason of a version superseded by its amendment (0048).
AMENDED: Final = "amended"


def _version_of(licence_id: str) -> str:
    return LicenceId.parse(licence_id).version


def _registers(event: BirthCertificateApplication.BundleServiceUpdated) -> bool:
    """The police's ``done``: the 户口 registered, its result the newborn's registration (0048)."""
    return event.state == "done" and event.service == REGISTRATION_SERVICE


def _skip(app: BirthCertificateApplication, number: str, licence_id: str) -> str | None:
    """Why a print (or an amendment, its licence of a later version) gets no (further) e-licence now, or None
    when it is to be issued."""
    amendment = _version_of(licence_id) != VERSION
    if any(e["licence_id"] == licence_id for e in app.elicenses):
        return "issued"
    if not amendment and app.elicense_for(number) is not None:
        return "issued"
    if app.certificate_number != number or number in app.voided_numbers:
        return "superseded"
    if app.state == LOST:
        return "lost"
    if app.state == REVOKED:  # declared void (0040): no e-licence for it
        return "revoked"
    if app.state not in ISSUED_STATES:
        return "not_issued"
    if amendment and app.elicense_for(number) is None:
        return WAITING
    return None


__all__ = [
    "AMENDED",
    "NAME",
    "PROCESS_ACTOR",
    "STATUS_LIST_SIZE",
    "Due",
    "ElicenseProcess",
    "ElicenseStore",
    "PrintedLicence",
    "StoredCredential",
    "licence_id_for",
    "licence_id_of_print",
    "status_uri",
    "verify_url",
]
