"""tools/verify_elicense.py, the offline e-licence check, against our own credentials and status lists.

The tool re-implements the checks of ``backend.credentials.verify_sd_jwt`` and ``backend.status_list`` from the
specifications, so that a department needs nothing of ours. Hypothesis drives both with the same altered
credentials and asserts that they give the same answer; the command line is run as a department runs it (its
own process, over files), and a lone copy of the file runs isolated (``-I``) importing nothing but the
standard library and ``cryptography``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from backend.credentials import (
    CredentialError,
    Es256Signer,
    b64url,
    b64url_decode,
    disclosure,
    issue_sd_jwt,
    present,
    sign_jwt,
    verify_sd_jwt,
)
from backend.status_list import compress, encode_bits, sign_token
from domain.elicense import FATHER_WITHHELD, PERSONAL_ITEMS

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "verify_elicense.py"
SIGNER = Es256Signer(ec.derive_private_key(0x5EED_0001, ec.SECP256R1()))
STRANGER = Es256Signer(ec.derive_private_key(0x5EED_0002, ec.SECP256R1()))  # not in the JWKS
JWKS = {"keys": [{**SIGNER.public_jwk(), "status": "current", "created_at": "2026-12-01T00:00:00+00:00"}]}
URI = "https://birthcert.example/api/v1/status-lists/7"
IDX = 40_123
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
PLAIN = {
    "iss": "https://birthcert.example",
    "iat": int(NOW.timestamp()) - 86400,
    "vct": "urn:birthcert:elicense:birth-medical-certificate:1",
    "certificate_number": "X440100071",
    "issuer_name": "广州市妇女儿童医疗中心",
    "issuer_code": "GZFY01",
    "issue_date": "2026-12-02",
    "licence_id": "1.2.156.3005.2.C0134.GZFY01.ABCDEFGHIJ0123456789.001.7",
    "status": {"status_list": {"idx": IDX, "uri": URI}},
}
PERSONAL = {
    "newborn_name": "张小花",
    "newborn_sex": "F",
    "born_at": "2026-11-30T08:30:00+08:00",
    "birthplace": "广东省广州市越秀区",
    "gestational_weeks": 39,
    "weight_g": 3250,
    "length_cm": 50,
    "mother_name": "王芳",
    "mother_nationality": "CHN",
    "mother_ethnicity": "01",
    "mother_id_type": "resident_id",
    "mother_id_number": "440104199001011234",
}
CREDENTIAL = issue_sd_jwt(SIGNER, PLAIN, PERSONAL)
FATHERS = present(CREDENTIAL, FATHER_WITHHELD)
PUBLIC = present(CREDENTIAL, PERSONAL_ITEMS)  # "<JWS>~": no disclosure at all


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_elicense_under_test", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def server_says(text: str) -> tuple[str, dict[str, Any] | None]:
    try:
        return "valid", verify_sd_jwt(text, JWKS).disclosed
    except CredentialError as e:
        return e.code, None


def tool_says(text: str) -> tuple[str, dict[str, Any] | None]:
    try:
        return "valid", tool.check_credential(text, JWKS).disclosed
    except tool.Rejected as e:
        return str(e.code), None


def resign(credential: str, signer: Es256Signer, **header: Any) -> str:
    """The same payload and disclosures under another key (or header)."""
    jws, rest = credential.split("~", 1)
    payload = json.loads(b64url_decode(jws.split(".")[1]))
    head = {"alg": signer.alg, "kid": signer.kid, "typ": "dc+sd-jwt", **header}
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(signer.sign(signing_input.encode()))}~{rest}"


# ---------------------------------------------------------------------- the tool and the server agree

CASES = {
    "valid, every disclosure": CREDENTIAL,
    "valid, the father's copy": FATHERS,
    "valid, no disclosure": PUBLIC,
    "valid, its final ~ lost": CREDENTIAL[:-1],
    "no ~ at all": CREDENTIAL.split("~")[0],
    "nonsense": "nonsense~",
    "empty JWS": "~",
    "an empty disclosure": CREDENTIAL + "~",
    "unknown kid": resign(CREDENTIAL, STRANGER),
    "kid of ours, key of another": resign(CREDENTIAL, STRANGER, kid=SIGNER.kid),
    "alg none": resign(CREDENTIAL, SIGNER, alg="none"),
    "another typ": resign(CREDENTIAL, SIGNER, typ="JWT"),
    "a disclosure not in _sd": CREDENTIAL + disclosure(b64url(b"0" * 16), "newborn_name", "李四") + "~",
    "a key binding JWT after the disclosures": CREDENTIAL + "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
    "a disclosure twice": CREDENTIAL + CREDENTIAL.split("~")[1] + "~",
    "a disclosure that is not ASCII": CREDENTIAL + "é~",
}
EXPECTED = {
    "valid, every disclosure": "valid",
    "valid, the father's copy": "valid",
    "valid, no disclosure": "valid",
    "valid, its final ~ lost": "valid",
    "no ~ at all": "malformed",
    "nonsense": "malformed",
    "empty JWS": "malformed",
    "an empty disclosure": "bad_signature",
    "unknown kid": "unknown_key",
    "kid of ours, key of another": "bad_signature",
    "alg none": "malformed",
    "another typ": "malformed",
    "a disclosure not in _sd": "bad_signature",
    "a key binding JWT after the disclosures": "bad_signature",
    "a disclosure twice": "malformed",
    "a disclosure that is not ASCII": "bad_signature",
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_named_case_gets_the_servers_answer(case: str) -> None:
    assert tool_says(CASES[case]) == server_says(CASES[case])
    assert tool_says(CASES[case])[0] == EXPECTED[case]


def test_the_fathers_copy_discloses_everything_but_the_mothers_id() -> None:
    _, disclosed = tool_says(FATHERS)
    assert disclosed is not None and "mother_id_number" not in disclosed
    assert disclosed["newborn_name"] == "张小花"
    assert tool_says(PUBLIC) == ("valid", {})


ALTERED_CHARS = "AQZaqz09-_~.=+/ \né"


@st.composite
def altered(draw: st.DrawFn) -> str:
    """A credential with a character changed, removed or added, or its disclosures cut, repeated or moved."""
    text = draw(st.sampled_from([CREDENTIAL, FATHERS, PUBLIC]))
    how = draw(st.sampled_from(["replace", "delete", "insert", "disclosures"]))
    if how == "disclosures":
        jws, *disclosures = text.split("~")
        chosen = draw(st.lists(st.sampled_from(disclosures), max_size=len(disclosures) + 2))
        return "~".join([jws, *chosen]) + draw(st.sampled_from(["~", ""]))
    at = draw(st.integers(0, len(text) - 1))
    char = draw(st.sampled_from(ALTERED_CHARS))
    if how == "replace":
        return text[:at] + char + text[at + 1 :]
    if how == "delete":
        return text[:at] + text[at + 1 :]
    return text[:at] + char + text[at:]


@given(altered())
def test_an_altered_credential_gets_the_servers_answer(text: str) -> None:
    assert tool_says(text) == server_says(text)


@given(st.sets(st.integers(0, 2**17 - 1), max_size=40), st.integers(0, 2**17 - 1))
def test_the_tool_reads_the_bit_the_service_set(invalid: set[int], probe: int) -> None:
    token = sign_token(SIGNER, URI, invalid, 2**17, now=int(NOW.timestamp()))
    listed = tool.read_status_list(token, JWKS)
    assert listed.claims["sub"] == URI
    for idx in [*invalid, probe]:
        assert listed.status(idx) == (idx in invalid)


def test_the_drafts_example_list_reads_as_published() -> None:
    """draft-ietf-oauth-status-list's one-bit example: indexes 0…15, lst ``eNrbuRgAAhcBXQ``."""
    statuses = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
    assert compress(encode_bits([i for i, s in enumerate(statuses) if s], 16)) == "eNrbuRgAAhcBXQ"
    token = sign_jwt(
        SIGNER, "statuslist+jwt", {"sub": URI, "iat": 1, "status_list": {"bits": 1, "lst": "eNrbuRgAAhcBXQ"}}
    )
    listed = tool.read_status_list(token, JWKS)
    assert [listed.status(i) for i in range(16)] == statuses
    with pytest.raises(tool.Rejected) as beyond:
        listed.status(16)
    assert beyond.value.code == "malformed"


# ---------------------------------------------------------------------- the command line, as a department runs it


def python(
    *args: str | Path, stdin: str | None = None, cwd: Path | str = "/", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )


def run(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The tool as a department runs it: its own process, from anywhere."""
    return python(TOOL, *args, stdin=stdin)


def isolated(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -I`` in ``folder``: no current directory, PYTHONPATH or user site on sys.path."""
    return python(
        "-I", *args, cwd=folder, env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(folder)}
    )


def saved(
    tmp_path: Path, invalid: tuple[int, ...] = (), signed: datetime = NOW - timedelta(minutes=3)
) -> Path:
    """A folder as ``--fetch --save`` leaves it: the JWKS, the list, when they were fetched."""
    folder = tmp_path / "saved"
    folder.mkdir(exist_ok=True)
    (folder / "jwks.json").write_text(json.dumps(JWKS), encoding="utf-8")
    token = sign_token(SIGNER, URI, invalid, 2**17, now=int(signed.timestamp()))
    (folder / "status-list-7.jwt").write_text(token, encoding="utf-8")
    fetched = (NOW - timedelta(minutes=2)).isoformat()
    (folder / "fetched.json").write_text(
        json.dumps({"files": {"status-list-7.jwt": {"url": URI, "fetched_at": fetched}}}), encoding="utf-8"
    )
    (tmp_path / "credential.txt").write_text(CREDENTIAL + "\n", encoding="utf-8")
    return folder


def answer(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.stdout)
    assert document["exit_code"] == result.returncode, result.stderr
    return document


def test_valid_with_a_saved_list_says_how_old_it_is_and_shows_no_personal_data(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    result = run(tmp_path / "credential.txt", "--dir", folder, "--now", NOW.isoformat())
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "结果 / result: 有效 — valid" in out and "未作废 / not revoked" in out
    assert "状态列表获取于 2 分钟前 / status list fetched 2 minutes ago" in out
    assert "状态列表签发于 3 分钟前 / status list signed 3 minutes ago" in out
    assert "X440100071" in out and f"第 {IDX} 位" in out  # what a clerk compares with the paper
    for value in (v for v in PERSONAL.values() if isinstance(v, str) and len(v) > 2):
        assert value not in out, value  # PIPL: no disclosed item without --show-claims
    shown = run(tmp_path / "credential.txt", "--dir", folder, "--now", NOW.isoformat(), "--show-claims")
    assert shown.returncode == 0
    assert "新生儿姓名 / newborn_name: 张小花" in shown.stdout and "440104199001011234" in shown.stdout


def test_the_credential_comes_from_an_argument_a_file_or_standard_input(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    for args, stdin in (
        ((CREDENTIAL,), None),
        ((tmp_path / "credential.txt",), None),
        (("-",), CREDENTIAL + "\n"),
        ((), CREDENTIAL),
    ):
        document = answer(run(*args, "--jwks", folder / "jwks.json", "--json", stdin=stdin))
        assert document["result"] == "valid" and document["status"]["checked"] is False
        assert [n["code"] for n in document["notes"]] == ["status_not_checked"]
        assert "claims" not in document and "张小花" not in json.dumps(document, ensure_ascii=False)
    shown = answer(run(CREDENTIAL, "--jwks", folder / "jwks.json", "--json", "--show-claims"))
    assert shown["claims"] == PERSONAL


def test_a_revoked_credential_exits_1_and_says_offline_cannot_tell_superseded(tmp_path: Path) -> None:
    folder = saved(tmp_path, invalid=(IDX,))
    result = run(tmp_path / "credential.txt", "--dir", folder, "--now", NOW.isoformat())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "结果 / result: 已作废 — revoked (invalid)" in result.stdout
    assert "离线无法区分" in result.stdout and "superseded" in result.stdout
    document = answer(run(tmp_path / "credential.txt", "--dir", folder, "--json"))
    assert (document["result"], document["status"]["status"]) == ("revoked", 1)
    assert "one_bit_status" in [n["code"] for n in document["notes"]]


def test_an_expired_list_warns_and_a_revocation_stays_a_revocation(tmp_path: Path) -> None:
    later = (NOW + timedelta(days=2)).isoformat()
    folder = saved(tmp_path)
    result = run(tmp_path / "credential.txt", "--dir", folder, "--now", later)
    assert result.returncode == 0
    assert "已过期 / EXPIRED" in result.stdout and "WARNING: the status list expired" in result.stdout
    assert "状态列表获取于 2 天前" in result.stdout
    revoked = saved(tmp_path, invalid=(IDX,))
    document = answer(run(tmp_path / "credential.txt", "--dir", revoked, "--now", later, "--json"))
    assert (document["result"], document["status"]["expired"]) == ("revoked", True)


def test_bad_inputs_exit_2_and_usage_errors_exit_3(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    jwks = folder / "jwks.json"
    for text, code in (
        (CASES["unknown kid"], "unknown_key"),
        (CASES["alg none"], "malformed"),
        (CASES["a disclosure not in _sd"], "bad_signature"),
        ("nonsense~", "malformed"),
    ):
        document = answer(run("--jwks", jwks, "--json", stdin=text))
        assert (document["result"], document["failed"], document["exit_code"]) == (code, "credential", 2)
    # A status list that does not verify is no answer about the credential's status: exit 2, saying which.
    forged = tmp_path / "forged.jwt"
    forged.write_text(sign_token(STRANGER, URI, (), 2**17, now=int(NOW.timestamp())), encoding="utf-8")
    document = answer(run(CREDENTIAL, "--jwks", jwks, "--status-list", forged, "--json"))
    assert (document["result"], document["failed"]) == ("unknown_key", "status_list")
    # Usage errors: exit 3.
    other = tmp_path / "other.jwt"
    other.write_text(sign_token(SIGNER, URI + "8", (), 2**17, now=int(NOW.timestamp())), encoding="utf-8")
    wrong_list = run(CREDENTIAL, "--jwks", jwks, "--status-list", other)
    assert wrong_list.returncode == 3 and "status-lists/78" in wrong_list.stderr
    assert run(CREDENTIAL).returncode == 3  # no JWKS
    assert run(CREDENTIAL, "--jwks", tmp_path / "missing.json").returncode == 3
    assert run(CREDENTIAL, "--jwks", tmp_path / "credential.txt").returncode == 3  # not a JWKS
    assert run(CREDENTIAL, "--jwks", jwks, "--bogus").returncode == 3
    assert run(CREDENTIAL, "--fetch", "https://birthcert.example").returncode == 3  # --save missing
    assert run("--jwks", jwks, stdin="  \n").returncode == 3  # no credential
    unreachable = run(CREDENTIAL, "--fetch", "http://127.0.0.1:1", "--save", tmp_path / "nowhere")
    assert unreachable.returncode == 3 and "cannot download" in unreachable.stderr


def test_a_credential_of_a_retired_key_still_verifies_with_the_jwks_history(tmp_path: Path) -> None:
    """Keys are retired, never deleted (decision 0038): a 2027 credential still verifies in 2040."""
    newer = Es256Signer(ec.derive_private_key(0x5EED_0003, ec.SECP256R1()))
    history = {
        "keys": [
            {**JWKS["keys"][0], "status": "retired", "retired_at": "2027-01-01T00:00:00+00:00"},
            {**newer.public_jwk(), "status": "current"},
        ]
    }
    (tmp_path / "jwks.json").write_text(json.dumps(history), encoding="utf-8")
    document = answer(
        run(CREDENTIAL, "--jwks", tmp_path / "jwks.json", "--json", "--now", "2040-06-01T00:00:00Z")
    )
    assert (document["result"], document["credential"]["key_status"]) == ("valid", "retired")


def test_ages_read_as_a_clerk_says_them() -> None:
    assert tool.ago(5) == ("5 秒前", "5 seconds ago")
    assert tool.ago(3 * 60 + 59) == ("3 分钟前", "3 minutes ago")
    assert tool.ago(5 * 3600) == ("5 小时前", "5 hours ago")
    assert tool.ago(3 * 86400) == ("3 天前", "3 days ago")
    assert tool.ago(-120) == ("2 分钟后", "2 minutes from now")


# ---------------------------------------------------------------------- standalone: nothing of ours


def test_it_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(TOOL.read_text(encoding="utf-8"))
    imported = {
        (alias.name if isinstance(node, ast.Import) else str(node.module)).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}


PROBE = textwrap.dedent(
    """
    import json, runpy, sys
    before = set(sys.modules)
    sys.argv = ["verify_elicense.py", *json.loads(sys.argv[1])]
    try:
        runpy.run_path("verify_elicense.py", run_name="__main__")
    except SystemExit as exit:
        code = exit.code
    loaded = {
        name: getattr(sys.modules[name], "__file__", None) or "built-in"
        for name in set(sys.modules) - before
        if name.split(".")[0] not in sys.stdlib_module_names
    }
    sys.stderr.write(json.dumps({"code": code, "loaded": loaded, "path": sys.path}))
    """
)


def test_a_lone_copy_runs_isolated_and_loads_nothing_of_ours(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(TOOL, lone / "verify_elicense.py")
    args = [str(tmp_path / "credential.txt"), "--dir", str(folder)]
    direct = isolated(lone, str(lone / "verify_elicense.py"), *args)
    assert direct.returncode == 0 and "结果 / result: 有效 — valid" in direct.stdout, direct.stderr
    probed = isolated(lone, "-c", PROBE, json.dumps(args))
    seen = json.loads(probed.stderr[probed.stderr.index("{") :])
    assert seen["code"] == 0
    assert str(ROOT) not in seen["path"] and str(lone) not in seen["path"]  # -I: neither ours nor PYTHONPATH
    # Beyond the standard library: cryptography and the binary modules it loads, nothing from our checkout.
    assert "cryptography" in seen["loaded"]
    crypto = Path(seen["loaded"]["cryptography"]).parent
    for name, file in seen["loaded"].items():
        # (a module without a file is compiled in, e.g. the ``_openssl`` of cryptography's Rust extension)
        assert file == "built-in" or Path(file).is_relative_to(crypto) or name == "_cffi_backend", (
            name,
            file,
        )
