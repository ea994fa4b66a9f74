// The public verify page (docs/decisions/0041-verify-page.md). No framework, no build step, nothing from
// another origin. Everything that decides the result is checked here, in the browser:
//   1. the credential (from /api/v1/elicense/presentations by licence id, from the fragment, or pasted):
//      its ES256 signature with WebCrypto against the key of /api/v1/elicense/jwks.json named by its kid
//      (the key's RFC 7638 thumbprint must be that kid), and each disclosure's SHA-256 among the signed _sd;
//   2. the Token Status List it names (draft-ietf-oauth-status-list): its own signature, its subject, its
//      lst inflated with DecompressionStream("deflate") (ZLIB) and the credential's entry read in the
//      draft's bit order;
//   3. then POST /api/v1/verifications with the signed part only (no disclosure) for what the list cannot
//      say: whether an invalid certificate was revoked or superseded, and a receipt. The server's answer can
//      make the result worse, never better.
// Personal items are never shown: a shared credential's disclosures are checked and counted, not displayed,
// and the fragment is cut back to the licence id once the signature holds.

const JWKS_PATH = "/api/v1/elicense/jwks.json";
const PRESENTATIONS_PATH = "/api/v1/elicense/presentations";
const VERIFICATIONS_PATH = "/api/v1/verifications";
const CREDENTIAL_TYP = "dc+sd-jwt";
const STATUS_LIST_TYP = "statuslist+jwt";
const LICENCE_ID = /^1\.2\.156\.3005\.2\.[0-9A-Z]{1,40}\.[0-9A-Z]{1,40}\.[0-9A-Z]{1,40}\.[0-9]{3}\.[0-9A-Z]$/;
const STATUS_LIST_PATH = /^\/api\/v1\/status-lists\/[1-9][0-9]{0,8}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const STATUS_BITS = [1, 2, 4, 8];

// What a clerk reads: a word, large, and one plain sentence.
const OUTCOMES = {
  valid: { tone: "ok", title: "有效", note: "电子证照真实有效：签名完好，未被作废。" },
  revoked: { tone: "bad", title: "已作废", note: "此证已被签发机构作废，不能再作为有效证明。" },
  superseded: { tone: "bad", title: "已作废", note: "此证已被更正后的新证取代，请持证人出示新证。" },
  amended: { tone: "bad", title: "旧版本", note: "此电子证照已更新为新版本（出生医学证明本身仍有效），请持证人出示最新版本。" },
  invalid: { tone: "bad", title: "已作废", note: "状态列表显示此证已作废，不能再作为有效证明。" },
  bad_signature: { tone: "bad", title: "签名无效", note: "内容被改动过，或不是本系统签发的电子证照。" },
  unknown_key: { tone: "warn", title: "签发密钥未知", note: "签名所用的密钥不在本系统公布的密钥中，无法确认真伪。" },
  malformed: { tone: "warn", title: "格式错误", note: "这不是完整的电子证照或电子证照标识，请重新扫描或粘贴。" },
  not_found: { tone: "warn", title: "未找到", note: "本系统没有这个电子证照，请核对二维码是否完整、清晰。" },
  status_unknown: { tone: "warn", title: "无法确认状态", note: "签名有效，但未能核对状态列表，无法确认此证是否已作废。" },
  unavailable: { tone: "warn", title: "暂时无法核验", note: "网络或服务暂时不可用，请稍后再试。" },
  checking: { tone: "idle", title: "正在核验…", note: "正在核对签名和状态列表。" },
};
const PAPER_OUTCOMES = {
  valid: { tone: "ok", title: "相符，有效", note: "编号、姓名和出生日期与电子证照记录一致，证件有效。" },
  revoked: { tone: "bad", title: "相符，但已作废", note: "此证已被签发机构作废，不能再作为有效证明。" },
  superseded: { tone: "bad", title: "相符，但已作废", note: "此证已被更正后的新证取代，请持证人出示新证。" },
  not_found: { tone: "warn", title: "不相符", note: "没有编号、姓名和出生日期都相符的电子证照，请核对填写内容。" },
};
const SERVER_WORSE = new Set(["revoked", "superseded", "amended", "bad_signature", "unknown_key", "malformed", "not_found"]);

class Failure extends Error {
  constructor(code, why) {
    super(why || code);
    this.code = code;
    this.why = why || "";
  }
}

const $ = (id) => document.getElementById(id);
const utf8 = new TextEncoder();
let generation = 0; // a newer check (another fragment, a paste) makes an older one's answer moot

// ---------------------------------------------------------------- encodings

function b64urlBytes(text) {
  if (typeof text !== "string" || !BASE64URL.test(text) || text.length % 4 === 1) {
    throw new Failure("malformed", "不是 base64url 编码");
  }
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function b64url(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function jsonOf(part) {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(b64urlBytes(part)));
  } catch (error) {
    throw error instanceof Failure ? error : new Failure("malformed", "内容不是 JSON");
  }
}

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

async function sha256(text) {
  return b64url(await crypto.subtle.digest("SHA-256", utf8.encode(text)));
}

// ---------------------------------------------------------------- JWS (ES256)

async function thumbprint(jwk) {
  // RFC 7638: the required members in lexicographic order, no whitespace.
  return sha256(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }));
}

async function checkJws(token, jwks, typ) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3) throw new Failure("malformed", "不是 JWS");
  const header = jsonOf(parts[0]);
  if (!isObject(header) || header.alg !== "ES256" || header.typ !== typ) {
    throw new Failure("malformed", "签名算法或类型不受支持");
  }
  const keys = isObject(jwks) && Array.isArray(jwks.keys) ? jwks.keys : [];
  const jwk = keys.find((k) => isObject(k) && k.kid === header.kid);
  if (!jwk) throw new Failure("unknown_key", "密钥集中没有这个密钥");
  if (jwk.kty !== "EC" || jwk.crv !== "P-256" || (await thumbprint(jwk)) !== jwk.kid) {
    throw new Failure("unknown_key", "密钥与其标识不符");
  }
  let key;
  try {
    key = await crypto.subtle.importKey(
      "jwk",
      { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, ext: true },
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
  } catch {
    throw new Failure("unknown_key", "密钥无法使用");
  }
  const signature = b64urlBytes(parts[2]);
  // A JWS signature is R ‖ S (64 bytes), which is what WebCrypto's ECDSA takes.
  const holds =
    signature.length === 64 &&
    (await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      signature,
      utf8.encode(`${parts[0]}.${parts[1]}`),
    ));
  // Checked before the payload is read: any change to the signed part is a bad signature.
  if (!holds) throw new Failure("bad_signature", "签名不符");
  const payload = jsonOf(parts[1]);
  if (!isObject(payload)) throw new Failure("malformed", "内容不是 JSON 对象");
  return { header, payload, jwk };
}

// ---------------------------------------------------------------- the credential (SD-JWT)

async function checkCredential(credential, jwks) {
  const [jws, ...rest] = credential.split("~");
  if (rest.length && rest[rest.length - 1] === "") rest.pop();
  const { header, payload, jwk } = await checkJws(jws, jwks, CREDENTIAL_TYP);
  if (payload._sd_alg !== "sha-256") throw new Failure("malformed", "摘要算法不受支持");
  const digests = new Set(Array.isArray(payload._sd) ? payload._sd : []);
  for (const disclosure of rest) {
    if (!digests.has(await sha256(disclosure))) throw new Failure("bad_signature", "有一项披露不在签名内");
    const item = jsonOf(disclosure);
    if (!Array.isArray(item) || item.length !== 3 || typeof item[0] !== "string" || typeof item[1] !== "string") {
      throw new Failure("malformed", "披露格式不正确");
    }
  }
  const entry = isObject(payload.status) ? payload.status.status_list : null;
  if (!isObject(entry) || !Number.isInteger(entry.idx) || entry.idx < 0 || typeof entry.uri !== "string") {
    throw new Failure("malformed", "没有状态列表");
  }
  if (typeof payload.licence_id !== "string") throw new Failure("malformed", "没有电子证照标识");
  return { jws, claims: payload, kid: header.kid, keyStatus: jwk.status, disclosures: rest.length, entry };
}

// ---------------------------------------------------------------- the status list

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function checkStatus(entry, jwks) {
  let url;
  try {
    url = new URL(entry.uri);
  } catch {
    throw new Failure("status_unknown", "状态列表地址不正确");
  }
  if (!STATUS_LIST_PATH.test(url.pathname)) throw new Failure("status_unknown", "状态列表地址不正确");
  // From this page's own origin (the issuer that serves it), always fresh: a revocation must show at once.
  let response;
  try {
    response = await fetch(url.pathname, {
      cache: "no-cache",
      credentials: "omit",
      headers: { Accept: "application/statuslist+jwt" },
    });
  } catch {
    throw new Failure("status_unknown", "状态列表暂时取不到");
  }
  if (!response.ok) throw new Failure("status_unknown", "状态列表暂时取不到");
  let checked;
  try {
    checked = await checkJws((await response.text()).trim(), jwks, STATUS_LIST_TYP);
  } catch (error) {
    if (error instanceof Failure) throw new Failure("status_unknown", `状态列表的${OUTCOMES[error.code].title}`);
    throw error;
  }
  const claims = checked.payload;
  const list = claims.status_list;
  if (claims.sub !== entry.uri) throw new Failure("status_unknown", "状态列表与电子证照不符");
  if (!isObject(list) || !STATUS_BITS.includes(list.bits) || typeof list.lst !== "string") {
    throw new Failure("status_unknown", "状态列表格式不正确");
  }
  let raw;
  try {
    raw = await inflate(b64urlBytes(list.lst));
  } catch {
    throw new Failure("status_unknown", "状态列表无法解压");
  }
  // The draft's order: entry i takes `bits` bits from bit (i * bits) % 8 of byte (i * bits) / 8, least
  // significant first.
  const position = entry.idx * list.bits;
  const byte = raw[Math.floor(position / 8)];
  if (byte === undefined) throw new Failure("status_unknown", "序号超出状态列表");
  const value = (byte >> (position % 8)) & ((1 << list.bits) - 1);
  return { value, iat: claims.iat, exp: claims.exp, idx: entry.idx };
}

// ---------------------------------------------------------------- the server

async function postJson(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      credentials: "omit",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch {
    return { status: 0, body: null };
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null;
  }
  return { status: response.status, body: answer };
}

async function presentation(licenceId) {
  const { status, body } = await postJson(PRESENTATIONS_PATH, { licence_id: licenceId });
  if (status === 200 && body && typeof body.credential === "string") return body.credential;
  if (status === 404) throw new Failure("not_found");
  if (status === 422) throw new Failure("malformed", "电子证照标识不正确");
  throw new Failure("unavailable", body && body.detail ? body.detail : "");
}

async function keySet() {
  let response;
  try {
    response = await fetch(JWKS_PATH, { credentials: "omit" });
  } catch {
    throw new Failure("unavailable", "密钥集暂时取不到");
  }
  if (!response.ok) throw new Failure("unavailable", "密钥集暂时取不到");
  return response.json();
}

async function serverOpinion(jws) {
  // The signed part only: the server learns which e-licence was checked, never a disclosed item.
  const { status, body } = await postJson(VERIFICATIONS_PATH, { credential: `${jws}~` });
  return status === 200 && body && typeof body.result === "string" ? body : null;
}

// ---------------------------------------------------------------- reading the input

function understood(text) {
  let value = String(text || "").trim();
  const hash = value.indexOf("#");
  if (hash >= 0) value = value.slice(hash + 1);
  try {
    value = decodeURIComponent(value);
  } catch {
    // kept as it is
  }
  value = value.replace(/\s+/g, "");
  if (!value) return null;
  if (LICENCE_ID.test(value)) return { licenceId: value };
  if (value.includes("~")) return { credential: value };
  if (value.split(".").length === 3) return { credential: `${value}~` };
  return { garbage: true };
}

// ---------------------------------------------------------------- showing

const dateTime = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai",
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  hour12: false,
});

function age(seconds) {
  if (seconds < 60) return "刚刚";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} 分钟前`;
  if (seconds < 86400 * 2) return `${Math.floor(seconds / 3600)} 小时前`;
  return `${Math.floor(seconds / 86400)} 天前`;
}

function issueDate(text) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(text || ""));
  return match ? `${match[1]}年${Number(match[2])}月${Number(match[3])}日` : String(text || "");
}

function freshness(status, now) {
  if (!status || !Number.isFinite(status.iat)) return "";
  const signed = `更新于 ${dateTime.format(new Date(status.iat * 1000))}（${age(Math.max(0, now - status.iat))}）`;
  return Number.isFinite(status.exp) && now > status.exp ? `${signed}，已过期` : signed;
}

function show(view) {
  const outcome = OUTCOMES[view.code] || OUTCOMES.invalid;
  const result = $("result");
  result.dataset.tone = outcome.tone;
  result.dataset.result = view.code;
  result.setAttribute("aria-busy", view.code === "checking" ? "true" : "false");
  $("result-title").textContent = outcome.title;
  $("result-note").textContent = view.note || outcome.note;
  document.title = view.code === "checking" ? "出生医学证明电子证照核验" : `${outcome.title} · 出生医学证明电子证照核验`;
  const claims = view.claims;
  $("facts").hidden = !claims;
  if (claims) {
    $("fact-issuer").textContent = String(claims.issuer_name || "—");
    $("fact-date").textContent = issueDate(claims.issue_date) || "—";
    $("fact-number").textContent = String(claims.certificate_number || "—");
    $("fact-licence").textContent = String(claims.licence_id || "—");
    $("fact-freshness").textContent = view.freshness || "未能取得";
  }
  $("checked").hidden = !view.checked;
  $("checked").textContent = view.checked || "";
  $("receipt").hidden = !view.receipt;
  $("receipt").textContent = view.receipt || "";
}

function checkedLine(credential, status, server) {
  const parts = [`ES256 签名（密钥 ${String(credential.kid).slice(0, 8)}…${credential.keyStatus === "retired" ? "，已停用的历史密钥" : ""}）`];
  if (credential.disclosures) parts.push(`${credential.disclosures} 项披露的摘要`);
  if (status) parts.push(`状态列表的签名及第 ${status.idx} 位（${status.value === 0 ? "有效" : "已作废"}）`);
  let line = `已在本浏览器核对：${parts.join("、")}。不显示任何个人信息。`;
  if (server && server.result !== "valid" && status && status.value === 0) {
    line += `服务器记录为“${OUTCOMES[server.result] ? OUTCOMES[server.result].title : server.result}”，状态列表将在一分钟内更新。`;
  }
  return line;
}

// The result: the browser's own checks, made worse (never better) by the server's word.
function decided(status, server, now) {
  if (!status) return "status_unknown";
  if (status.value !== 0) {
    return server && ["revoked", "superseded", "amended"].includes(server.result) ? server.result : "invalid";
  }
  if (server && SERVER_WORSE.has(server.result)) return server.result;
  if (Number.isFinite(status.exp) && now > status.exp) return "status_unknown";
  return "valid";
}

async function check(text) {
  const mine = ++generation;
  const current = () => mine === generation;
  const input = understood(text);
  if (!input) return;
  if (input.garbage) return show({ code: "malformed" });
  show({ code: "checking" });
  if (!window.crypto || !crypto.subtle || typeof DecompressionStream === "undefined") {
    return show({ code: "unavailable", note: "此浏览器不能核验电子证照：请用最新版浏览器并通过 https 打开本页。" });
  }
  let credential;
  try {
    const jwks = await keySet();
    const serialized = input.credential || (await presentation(input.licenceId));
    if (!current()) return;
    credential = await checkCredential(serialized, jwks);
    if (input.licenceId && credential.claims.licence_id !== input.licenceId) {
      throw new Failure("malformed", "取得的电子证照与二维码中的标识不符");
    }
    if (input.credential && location.hash.length > 1 && understood(location.hash)?.credential === input.credential) {
      // Cut a shared credential (with its disclosures) out of the address bar and the history.
      history.replaceState(null, "", `#${credential.claims.licence_id}`);
    }
    let status = null;
    let statusWhy = "";
    try {
      status = await checkStatus(credential.entry, jwks);
    } catch (error) {
      if (!(error instanceof Failure)) throw error;
      statusWhy = error.why;
    }
    const server = await serverOpinion(credential.jws);
    if (!current()) return;
    const now = Date.now() / 1000;
    const code = decided(status, server, now);
    const prefill = $("paper-number");
    if (!prefill.value) prefill.value = String(credential.claims.certificate_number || "");
    show({
      code,
      note: code === "status_unknown" && statusWhy ? `签名有效，但${statusWhy}，无法确认此证是否已作废。` : "",
      claims: credential.claims,
      freshness: freshness(status, now),
      checked: checkedLine(credential, status, server),
      receipt: server ? `核验记录号 ${server.id}（${dateTime.format(new Date(server.checked_at))}）` : "",
    });
  } catch (error) {
    if (!current()) return;
    if (error instanceof Failure) {
      const note = error.code === "unavailable" && error.why ? error.why : "";
      return show({ code: error.code, note });
    }
    show({ code: "unavailable" });
  }
}

// ---------------------------------------------------------------- the paper certificate

async function checkPaper(event) {
  event.preventDefault();
  const box = $("paper-result");
  const body = {
    certificate_number: $("paper-number").value.trim().toUpperCase(),
    newborn_name: $("paper-name").value.trim(),
    birth_date: $("paper-date").value,
  };
  const say = (tone, title, note) => {
    box.hidden = false;
    box.dataset.tone = tone;
    $("paper-title").textContent = title;
    $("paper-note").textContent = note;
  };
  if (!body.certificate_number || !body.newborn_name || !body.birth_date) {
    return say("warn", "请填写完整", "请填写出生医学证明编号、新生儿姓名和出生日期。");
  }
  say("idle", "正在核对…", "");
  const { status, body: answer } = await postJson(VERIFICATIONS_PATH, body);
  if (status === 200 && answer) {
    const outcome = PAPER_OUTCOMES[answer.result] || {
      tone: "bad",
      title: String(answer.result_label || "已作废"),
      note: "",
    };
    return say(outcome.tone, outcome.title, outcome.note);
  }
  if (status === 422 && answer && Array.isArray(answer.errors)) {
    return say("warn", "填写有误", answer.errors.map((e) => e.message).join("；"));
  }
  return say("warn", "暂时无法核对", answer && answer.detail ? answer.detail : "网络或服务暂时不可用，请稍后再试。");
}

// ---------------------------------------------------------------- wiring

function start() {
  $("paper-form").addEventListener("submit", checkPaper);
  $("paste-form").addEventListener("submit", (event) => {
    event.preventDefault();
    check($("paste").value);
  });
  window.addEventListener("hashchange", () => check(location.hash));
  check(location.hash);
}

start();
