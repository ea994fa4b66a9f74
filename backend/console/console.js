// 出生医学证明签发工作台 — the issuers' and auditors' console. One ES module, no build step, no framework.
// Everything is built with DOM calls (never innerHTML with data), so nothing from the API runs as markup.
// The token lives in sessionStorage (this tab only) and goes out as a Bearer header; documents and the
// pickup list are fetched with it and shown through blob: URLs.

const SESSION_KEY = "birthcert.console.session";
const TZ = "Asia/Shanghai";
const CERT_RE = /^[A-Z]\d{9}$/;
const TRACKING_RE = /^[A-Z0-9]{10,32}$/;

const ROLE_LABELS = { issuer: "签发人员", auditor: "审计人员", hospital: "助产机构", admin: "管理员" };
const QUEUE_STATES = [
  ["new", "新提交"],
  ["resubmitted", "再次提交"],
  ["returned", "已驳回待修改"],
  ["awaiting_dispatch", "待寄出"],
  ["awaiting_handover", "待现场领取"],
  ["awaiting_reissue", "待补发"],
  ["awaiting_departments", "待部门办结"],
];
const QUEUE_STATE_LABELS = Object.fromEntries(QUEUE_STATES);
// The hospital's worklist (GET /api/v1/hospital/worklist): what each kind of item asks of its staff.
const WORKLIST_KINDS = [
  ["dispute", "异议待答复"],
  ["missing", "产妇催录"],
  ["late_entry", "超期录入"],
];
const WORKLIST_KIND_LABELS = Object.fromEntries(WORKLIST_KINDS);
const STATE_LABELS = {
  draft: "填写中",
  submitted: "待审核",
  returned: "已驳回",
  issued: "已签发",
  dispatched: "已寄出",
  delivered: "已妥投",
  collected: "已现场领取",
  withdrawn: "已撤回",
  lost: "邮件丢失",
  counter_only: "转窗口办理",
  revoked: "已宣布作废",
};
const EVENT_LABELS = {
  ApplicationStarted: "发起申办",
  FaceVerificationRequested: "发起刷脸认证",
  FaceVerificationFailed: "刷脸认证未通过",
  FaceVerified: "刷脸认证通过",
  ProvinceAdopted: "按分娩机构所在省份办理",
  FatherInvited: "邀请父亲本人认证",
  FatherJoined: "父亲接受邀请",
  DeliveryRecordLinked: "关联医院分娩记录",
  DeliveryRecordRefreshed: "医院更正分娩记录",
  DeliveryInfoConfirmed: "确认分娩信息",
  DeliveryInfoDisputed: "对分娩信息提出异议",
  DeliveryRecordUpheld: "医院答复分娩信息无误",
  DeliveryReportedMissing: "催促医院录入分娩信息",
  AwaitedDeliveryRecorded: "医院录入催录的分娩信息",
  DetailsProvided: "填写新生儿姓名及父母信息",
  DocumentUploaded: "上传身份证件照片",
  FatherIdPhotoAccepted: "父亲手持身份证照片通过",
  FormSigned: "登记表电子签名",
  DeliveryMethodChosen: "选择领取方式",
  PostageOrderPlaced: "生成邮寄费订单",
  PostagePaid: "支付邮寄费",
  Submitted: "提交审核",
  Rejected: "驳回",
  ReferredToCounter: "转窗口办理",
  Withdrawn: "撤回申请",
  Issued: "签发",
  Dispatched: "交邮寄出",
  Delivered: "邮件妥投",
  CollectedOnSite: "现场领取",
  LossReported: "登记邮件丢失",
  Reissued: "补发",
  ELicenseIssued: "生成电子证照",
  CertificateReplaced: "换发（打印错误或毁损）",
  CertificateRevoked: "宣布作废",
  PickupBooked: "预约领取时间",
  CollectorAuthorized: "签署授权委托书",
  CollectorCheckOpened: "发起领取人现场刷脸",
  CollectorFaceCheckRequested: "领取人开始刷脸",
  CollectorFaceVerified: "领取人刷脸认证通过",
  CollectorFaceCheckFailed: "领取人刷脸认证未通过",
  BundleRequested: "申请出生“一件事”联办",
  BundleWithdrawn: "撤回出生“一件事”联办",
  BundleServiceUpdated: "出生“一件事”办理进展",
};
const REPLACEMENT_CAUSES = { misprinted: "打印错误", damaged: "毁损" };
// Done on the collector's own phone (through the counter's code): not the applicant, whatever the token's role.
const COLLECTOR_EVENTS = new Set(["CollectorFaceCheckRequested", "CollectorFaceVerified", "CollectorFaceCheckFailed"]);
const OLD_CERTIFICATE_FATES = { recovered: "已收回作废", destroyed: "已销毁作废" };
const KEY_EVENTS = new Set(["Submitted", "Rejected", "Issued", "Dispatched", "CollectedOnSite", "LossReported", "Reissued", "CertificateReplaced", "CertificateRevoked", "Withdrawn", "ReferredToCounter"]);
const ACTOR_LABELS = { parent: "申办人", hospital: "助产机构", issuer: "签发人员", auditor: "审计人员", system: "系统", ems: "邮政速递", admin: "管理员" };
const DOCUMENT_LABELS = {
  mother_id_front: "母亲身份证（人像面）",
  mother_id_back: "母亲身份证（国徽面）",
  father_id_front: "父亲身份证（人像面）",
  father_id_back: "父亲身份证（国徽面）",
  father_handheld_id: "父亲手持身份证照片",
  // 出生一件事's materials of 表1 (decision 0047), listed only while her opt-in asks for them.
  hukou_first_page: "落户方户口簿首页",
  hukou_head_page: "落户方户口簿户主页",
  marriage_certificate: "结婚证",
  signature: "申办人电子签名",
};
const DOCUMENT_ORDER = Object.keys(DOCUMENT_LABELS);
const MATERIAL_KINDS = new Set(["hukou_first_page", "hukou_head_page", "marriage_certificate"]);
// The registration form's fields (as flattened in changes_since_rejection) in Chinese.
const FORM_LABELS = {
  "newborn.name": "新生儿姓名",
  "mother.name": "母亲姓名",
  "mother.age": "母亲年龄",
  "mother.nationality": "母亲国籍",
  "mother.ethnicity": "母亲民族",
  "mother.id_type": "母亲证件类型",
  "mother.id_number": "母亲证件号码",
  "mother.address": "母亲住址",
  "father.name": "父亲姓名",
  "father.age": "父亲年龄",
  "father.nationality": "父亲国籍",
  "father.ethnicity": "父亲民族",
  "father.id_type": "父亲证件类型",
  "father.id_number": "父亲证件号码",
  "father.address": "父亲住址",
  "delivery.mother_name": "分娩记录·产妇姓名",
  "delivery.inpatient_no": "分娩记录·住院病历号",
  "delivery.newborn_sex": "分娩记录·新生儿性别",
  "delivery.born_at": "分娩记录·出生时间",
  "delivery.gestational_weeks": "分娩记录·出生孕周",
  "delivery.weight_g": "分娩记录·出生体重",
  "delivery.length_cm": "分娩记录·出生身长",
  "delivery.birthplace.province": "分娩记录·出生地（省）",
  "delivery.birthplace.city": "分娩记录·出生地（市）",
  "delivery.birthplace.county": "分娩记录·出生地（县/区）",
  "delivery.attendant": "分娩记录·接生人员",
  "delivery.institution_name": "分娩记录·助产机构",
  "delivery.entered_on": "分娩记录·录入日期",
  signature: "申办人电子签名",
  ...Object.fromEntries(Object.entries(DOCUMENT_LABELS).map(([k, v]) => [`documents.${k}`, v])),
};
// ------------------------------------------------------------------ small DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);
const main = () => $("#main");

function toast(text, kind = "ok") {
  const box = $("#toast");
  box.replaceChildren(h("div", { class: `toast-item toast-${kind}` }, text));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.replaceChildren(), 4000);
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ formatting

const dateTimeFmt = new Intl.DateTimeFormat("zh-CN", {
  timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
const dateFmt = new Intl.DateTimeFormat("zh-CN", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" });

function parts(fmt, date) {
  return Object.fromEntries(fmt.formatToParts(date).map((p) => [p.type, p.value]));
}

function fmtDateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = parts(dateTimeFmt, d);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
}

const auditTimeFmt = new Intl.DateTimeFormat("zh-CN", {
  timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

// An audit time: to the second, in Beijing time, with the offset written out (what the log records).
function fmtAuditTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = parts(auditTimeFmt, d);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} +08:00`;
}

function fmtDate(iso) {
  if (!iso) return "—";
  if (/^\d{4}-\d{2}-\d{2}$/.test(iso)) return iso;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = parts(dateFmt, d);
  return `${p.year}-${p.month}-${p.day}`;
}

function todayInChina() {
  const p = parts(dateFmt, new Date());
  return `${p.year}-${p.month}-${p.day}`;
}

function maskId(value) {
  if (!value || value.length < 8) return value || "—";
  return value.slice(0, 4) + "*".repeat(value.length - 8) + value.slice(-4);
}

// A personal value shown masked; the page's 显示完整信息 switch reveals it (CSS only, nothing refetched).
function pii(full, masked) {
  if (!full) return "—";
  return h("span", { class: "pii" }, h("span", { class: "pii-masked" }, masked ?? maskId(full)), h("span", { class: "pii-full" }, full));
}

const config = { fixable: [], rejectionReasons: [], relations: [], ethnic: {}, nationalities: {}, idTypes: { resident_id: "居民身份证" }, revocationReasons: [], bundleStates: {}, bundleResultLabels: {} };

function ethnicity(code) {
  return config.ethnic[code] ? config.ethnic[code] : code || "—";
}

function nationality(code) {
  return config.nationalities[code] || code || "—";
}

function sex(code) {
  return { M: "男", F: "女" }[code] || code || "—";
}

function place(value) {
  if (!value || typeof value !== "object") return value || "—";
  return [value.province, value.city, value.county].filter(Boolean).join(" ");
}

function comparisonValue(field, value) {
  if (value === null || value === undefined || value === "") return "—";
  switch (field) {
    case "newborn_sex": return sex(value);
    case "born_at": return fmtDateTime(value);
    case "gestational_weeks": return `${value} 周`;
    case "weight_g": return `${value} 克`;
    case "length_cm": return `${value} 厘米`;
    case "birthplace": return place(value);
    case "mother_id_number": return pii(value);
    default: return typeof value === "object" ? JSON.stringify(value) : String(value);
  }
}

function changeValue(field, value) {
  if (value === null || value === undefined || value === "") return "（无）";
  if (field.startsWith("documents.")) return `照片 ${String(value).slice(0, 8)}…`;
  if (field === "signature") return `签名（登记表摘要 ${String(value).slice(0, 8)}…）`;
  if (field.endsWith(".ethnicity")) return ethnicity(value);
  if (field.endsWith(".nationality")) return nationality(value);
  if (field.endsWith(".id_number")) return pii(value);
  if (field.endsWith("born_at")) return fmtDateTime(value);
  if (field.endsWith("newborn_sex")) return sex(value);
  return String(value);
}

function deliveryMethod(dm) {
  if (!dm) return "未选择";
  if (dm.method === "ems") return "邮政速递（EMS）到家";
  if (dm.method === "pickup") return "现场领取";
  return dm.method;
}

function actorText(actor) {
  if (!actor) return "";
  const role = ACTOR_LABELS[actor.role] || actor.role || "";
  return [role, actor.name, actor.institution && actor.role !== "issuer" ? actor.institution : null].filter(Boolean).join(" ");
}

// ------------------------------------------------------------------ session

let session = null;
let expiryTimer = null;
let warnTimer = null;

function jwtExpiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
    return typeof claims.exp === "number" ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (saved && saved.token && saved.expiresAt > Date.now() + 5000) return saved;
  } catch {
    /* a damaged entry is no session */
  }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

function startSession(answer) {
  const byClaim = jwtExpiry(answer.token);
  const byAnswer = Date.now() + (answer.expires_in || 3600) * 1000;
  session = {
    token: answer.token,
    role: answer.role,
    institution: answer.institution,
    name: answer.name,
    expiresAt: byClaim ? Math.min(byClaim, byAnswer) : byAnswer,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  armExpiry();
}

function armExpiry() {
  clearTimeout(expiryTimer);
  clearTimeout(warnTimer);
  if (!session) return;
  const left = session.expiresAt - Date.now();
  expiryTimer = setTimeout(() => endSession("登录已过期，请重新登录"), Math.max(left, 0));
  if (left > 5 * 60 * 1000) {
    warnTimer = setTimeout(() => toast("登录将在5分钟后过期，请及时保存操作", "warn"), left - 5 * 60 * 1000);
  }
}

let loginNotice = null;

function endSession(notice, { remember = true } = {}) {
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  clearTimeout(expiryTimer);
  clearTimeout(warnTimer);
  stream.stop();
  closeModal();
  loginNotice = notice || null;
  institutions = [];
  renderAuditBanner();
  // After an expiry the issuer comes back to the same page once logged in again; not after logging out.
  if (remember && location.hash && !location.hash.startsWith("#/login")) sessionStorage.setItem(`${SESSION_KEY}.next`, location.hash);
  if (location.hash === "#/login") render();
  else location.hash = "#/login"; // hashchange renders the login page (once, with the notice)
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, problem, headers) {
    const fallback = {
      0: "无法连接服务器，请检查网络后重试",
      401: "登录已过期，请重新登录",
      403: "没有权限进行此操作",
      404: "未找到相关记录",
      409: "该申请已被他人处理或已更新，请核对后重试",
      429: "操作过于频繁，请稍后再试",
    }[status] || (status >= 500 ? "服务暂时不可用，请稍后再试" : "请求未能完成");
    super((problem && problem.detail) || fallback);
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code || "";
    this.headers = headers;
  }
}

async function api(path, { method = "GET", body, headers = {}, raw = false, signal } = {}) {
  const sent = { Accept: "application/json", ...headers };
  if (session) sent.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, null);
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      /* not JSON */
    }
    if (response.status === 401 && session) endSession("登录已过期或已失效，请重新登录");
    throw new ApiError(response.status, problem, response.headers);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

let institutions = [];

async function loadInstitutions() {
  if (institutions.length) return institutions;
  try {
    institutions = (await api("/console/institutions.json")).institutions || [];
  } catch (error) {
    if (error.status === 401) throw error;
    institutions = [];
  }
  return institutions;
}

function institutionName(code) {
  const found = institutions.find((i) => i.code === code);
  return found ? found.name : code || "";
}

// ------------------------------------------------------------------ live queue stream (SSE over fetch)

const stream = {
  controller: null,
  institution: null,
  listeners: new Set(),
  state: "off",
  lastEventId: null,

  start(institution) {
    if (this.controller && this.institution === institution) return;
    this.stop();
    this.institution = institution;
    this.controller = new AbortController();
    this.run(this.controller.signal);
  },

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.setState("off");
  },

  setState(state, detail) {
    this.state = state;
    const el = $("#live-indicator");
    if (!el) return;
    el.dataset.state = state;
    const text = { live: "实时", connecting: "连接中…", retry: "重新连接中…", off: "未连接" }[state];
    el.querySelector(".live-text").textContent = text;
    el.title = state === "live" ? "队列实时更新已连接" : detail || "队列实时更新未连接，将自动重试";
  },

  async run(signal) {
    let attempt = 0;
    let retryBase = 1000;
    let connectedBefore = false;
    while (!signal.aborted && session) {
      this.setState(attempt ? "retry" : "connecting");
      try {
        const query = this.institution ? `?institution=${encodeURIComponent(this.institution)}` : "";
        const headers = { Accept: "text/event-stream", Authorization: `Bearer ${session.token}` };
        if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
        const response = await fetch(`/api/v1/review/queue/events${query}`, { headers, cache: "no-store", credentials: "omit", signal });
        if (response.status === 401) {
          endSession("登录已过期或已失效，请重新登录");
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        this.setState("live");
        if (connectedBefore) this.emit({ type: "reconnected" });
        connectedBefore = true;
        attempt = 0;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
          buffer = blocks.pop();
          for (const block of blocks) {
            const message = parseSse(block);
            if (message.retry) retryBase = message.retry;
            if (message.id) this.lastEventId = message.id;
            if (message.data !== null) this.dispatch(message);
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        this.setState("retry", `连接中断（${error.message || error}），将自动重试`);
      }
      if (signal.aborted) return;
      this.setState("retry");
      const delay = Math.min(30000, retryBase * 2 ** attempt) * (0.75 + Math.random() * 0.5);
      attempt = Math.min(attempt + 1, 6);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delay);
        signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
      });
    }
  },

  dispatch(message) {
    if ((message.event || "message") !== "queue") return;
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    this.emit({ type: "queue", data });
  },

  emit(event) {
    for (const listener of this.listeners) listener(event);
  },
};

function parseSse(block) {
  const message = { event: null, data: null, id: null, retry: null };
  const data = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") message.event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") message.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) message.retry = Number(value);
  }
  if (data.length) message.data = data.join("\n");
  return message;
}

// ------------------------------------------------------------------ modal dialogs

function closeModal() {
  const dialog = $("#modal");
  if (dialog && dialog.open) dialog.close();
}

function openModal(title, body, { wide = false } = {}) {
  const dialog = $("#modal");
  dialog.className = wide ? "modal modal-wide" : "modal";
  dialog.replaceChildren(
    h("div", { class: "modal-head" },
      h("h2", { id: "modal-title" }, title),
      h("button", { type: "button", class: "modal-close", "aria-label": "关闭", onclick: closeModal }, "×")),
    body,
  );
  dialog.showModal();
  const first = dialog.querySelector("[autofocus], input:not([type=hidden]), textarea, select");
  if (first) first.focus();
  return dialog;
}

// ------------------------------------------------------------------ forms in a dialog

// A form in the modal dialog that sends one command: its own Idempotency-Key (kept for a retry after no
// answer, a new one once the server answered), field errors shown beside their inputs, a conflict (409)
// handed to ``conflict`` after the dialog closed.
function dialogForm({ title, fields, build, send, done, conflict, submitLabel, danger, wide = false }) {
  let key = newKey();
  const error = h("div", { class: "alert alert-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: `btn ${danger ? "btn-danger" : "btn-primary"}` }, submitLabel);
  const form = h("form", { class: "action-form", novalidate: true },
    error, fields,
    h("div", { class: "modal-foot" },
      h("button", { type: "button", class: "btn", onclick: closeModal }, "取消"),
      submit));
  // A field's error goes once it is changed (the others stay until the next submit).
  const changed = (event) => {
    const holder = event.target.closest(".field");
    const stale = holder ? [...holder.querySelectorAll(".field-error")] : [];
    if (!stale.length) return;
    for (const el of stale) el.remove();
    for (const el of holder.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    if (!form.querySelector(".field-error")) error.hidden = true; // the summary of the errors now gone
  };
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    for (const el of form.querySelectorAll(".field-error")) el.remove();
    const built = build(form);
    if (built.errors && built.errors.length) {
      showErrors(form, error, built.errors);
      return;
    }
    submit.disabled = true;
    const label = submit.textContent;
    submit.textContent = "正在提交…";
    try {
      await send(built.body, key);
      closeModal();
      await done();
    } catch (e) {
      if (e.status !== 0) key = newKey(); // the server answered: a corrected retry is a new request
      if (e.status === 409) {
        closeModal();
        await conflict(e);
      } else if (e.status === 422 && Array.isArray(e.problem.errors) && e.problem.errors.length) {
        showErrors(form, error, e.problem.errors.map((x) => ({ field: x.field, message: x.message })), e.message);
      } else if (session) {
        error.textContent = e.message;
        error.hidden = false;
      }
    } finally {
      submit.disabled = false;
      submit.textContent = label;
    }
  });
  openModal(title, form, { wide });
}

function showErrors(form, box, errors, headline) {
  box.replaceChildren(headline || "请修正以下内容：", h("ul", {}, errors.map((x) => h("li", {}, x.message))));
  box.hidden = false;
  let first = null;
  for (const x of errors) {
    const name = String(x.field || "").replace(/\[\d+\]$/, "");
    const input = form.querySelector(`[data-name="${CSS.escape(name)}"]`);
    if (!input) continue;
    input.setAttribute("aria-invalid", "true");
    const holder = input.closest(".field") || input.parentElement;
    holder.append(h("div", { class: "field-error" }, x.message));
    first = first || input;
  }
  (first || box).focus?.();
}

function formField(id, label, input, hint) {
  input.id = id;
  if (hint) input.setAttribute("aria-describedby", `${id}-hint`);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("div", { class: "hint", id: `${id}-hint` }, hint) : null);
}

// ------------------------------------------------------------------ router

let renderSeq = 0;
let leaveView = () => {};

function route() {
  const hash = location.hash.replace(/^#/, "") || "/queue";
  const [path, query = ""] = hash.split("?");
  return { path, params: new URLSearchParams(query) };
}

async function render() {
  const seq = ++renderSeq;
  leaveView();
  leaveView = () => {};
  closeModal();
  $("#toast").replaceChildren();
  const { path, params } = route();
  if (!session) {
    $("#app-header").hidden = true;
    renderAuditBanner();
    if (path !== "/login" && location.hash) sessionStorage.setItem(`${SESSION_KEY}.next`, location.hash);
    renderLogin();
    return;
  }
  if (session.role === "manager") {
    location.replace("statistics.html");
    return;
  }
  const home = session.role === "hospital" ? "#/worklist" : "#/queue";
  if (path === "/login" || (session.role === "hospital" && path !== "/worklist")) {
    location.replace(home);
    return;
  }
  renderHeader(path);
  const isCurrent = () => seq === renderSeq;
  const match = path.match(/^\/applications\/([0-9a-fA-F-]{36})$/);
  const moved = path !== render.lastPath;
  render.lastPath = path;
  try {
    if (session.role === "hospital") await renderWorklist(params, isCurrent);
    else if (match) await renderApplication(match[1], isCurrent);
    else if (path === "/pickup" && session.role === "issuer") await renderPickup(params, isCurrent);
    else if (path === "/appointments" && session.role === "issuer") await renderAppointments(params, isCurrent);
    else await renderQueue(params, isCurrent);
    // A new page: screen readers and keyboards start at its heading (not on a filter change).
    if (moved && isCurrent() && !$("#modal").open) {
      const heading = main().querySelector("h1");
      if (heading) {
        heading.tabIndex = -1;
        heading.focus({ preventScroll: true });
      }
    }
  } catch (error) {
    if (!isCurrent() || error.name === "AbortError" || !session) return;
    main().replaceChildren(
      h("section", { class: "panel" },
        h("div", { class: "alert alert-error", role: "alert" }, error.message || String(error)),
        h("p", {}, h("a", { href: "#/queue" }, "返回审核队列"))),
    );
  }
}

function renderHeader(path) {
  const header = $("#app-header");
  header.hidden = false;
  const inst = session.role === "auditor" ? "全部机构（只读）" : `${institutionName(session.institution)}（${session.institution}）`;
  $("#header-institution").textContent = inst;
  $("#header-user").replaceChildren(
    h("span", { class: "role-tag" }, ROLE_LABELS[session.role] || session.role),
    " ",
    session.name || "",
  );
  $("#nav-pickup").hidden = session.role !== "issuer";
  $("#nav-queue").hidden = session.role === "hospital";
  $("#nav-worklist").hidden = session.role !== "hospital";
  $("#nav-appointments").hidden = session.role !== "issuer";
  $("#live-indicator").hidden = session.role === "hospital"; // the live stream is the review queue's
  renderAuditBanner();
  for (const [id, prefix] of [["#nav-queue", "/queue"], ["#nav-pickup", "/pickup"], ["#nav-appointments", "/appointments"], ["#nav-worklist", "/worklist"]]) {
    const active = path.startsWith(prefix) || (prefix === "/queue" && path.startsWith("/applications"));
    const link = $(id);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// An application id as pasted: the bare UUID, 32 hex digits, or a console link that contains one.
const UUID_RE = /[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}/i;

function applicationIdFrom(text) {
  const found = String(text || "").trim().match(UUID_RE);
  if (!found) return null;
  const hex = found[0].replace(/-/g, "").toLowerCase();
  if (hex.length !== 32) return null;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// Auditors: a read-only banner under the header on every page, with a search by application id (an
// application leaves the queue once issued; an auditor must still reach it).
function renderAuditBanner() {
  const banner = $("#audit-banner");
  if (!banner) return;
  const on = Boolean(session && session.role === "auditor");
  banner.hidden = !on;
  if (!on) {
    banner.replaceChildren();
    return;
  }
  if (banner.firstChild) return;
  const input = h("input", {
    id: "find-application", class: "mono", autocomplete: "off", spellcheck: "false", maxlength: 200,
    placeholder: "粘贴申请号，如 45603ed6-b09c-4d98-9afa-16018285f6ad", "aria-describedby": "find-error",
  });
  const error = h("span", { class: "find-error", id: "find-error", role: "alert" });
  const form = h("form", { class: "find-form", role: "search", "aria-label": "查找申请", novalidate: true },
    h("label", { for: "find-application" }, "按申请号查找"),
    input,
    h("button", { type: "submit", class: "btn btn-small btn-primary" }, "查找"),
    error);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = applicationIdFrom(input.value);
    if (!id) {
      error.textContent = "申请号格式不正确：应为36位编号（8-4-4-4-12位，含连字符）";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    input.value = "";
    location.hash = `#/applications/${id}`;
  });
  input.addEventListener("input", () => { error.textContent = ""; input.removeAttribute("aria-invalid"); });
  banner.replaceChildren(
    h("div", { class: "audit-banner-text" },
      h("span", { class: "readonly-tag" }, "审计 · 只读"),
      h("span", {}, "可查看全部签发机构的申请，不能办理任何业务；", h("strong", {}, "读取完整个人信息均被记录"), "并写入可验证日志。")),
    form);
}

// ------------------------------------------------------------------ login

function renderLogin() {
  const error = h("div", { class: "alert alert-error", role: "alert", id: "login-error", hidden: true });
  // Kept until the next login attempt: a page may render twice (a hash change right after an expiry).
  const notice = loginNotice ? h("div", { class: "alert alert-info", role: "status" }, loginNotice) : null;
  const username = h("input", { id: "username", name: "username", autocomplete: "username", required: true, autofocus: true, maxlength: 64, spellcheck: "false", autocapitalize: "none" });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true, maxlength: 200 });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "登 录");
  const form = h("form", { class: "login-form", novalidate: true, "aria-describedby": "login-error" },
    notice,
    error,
    h("div", { class: "field" }, h("label", { for: "username" }, "用户名"), username),
    h("div", { class: "field" }, h("label", { for: "password" }, "密码"), password),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    loginNotice = null;
    if (notice) notice.remove();
    if (!username.value.trim() || !password.value) {
      error.textContent = "请输入用户名和密码";
      error.hidden = false;
      (username.value.trim() ? password : username).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "正在登录…";
    try {
      const answer = await api("/api/v1/auth/staff", { method: "POST", body: { username: username.value.trim(), password: password.value } });
      if (!["issuer", "auditor", "hospital", "manager"].includes(answer.role)) {
        error.textContent = "该账号不是签发、助产机构、审计或统计管理人员，不能使用签发工作台";
        error.hidden = false;
        return;
      }
      startSession(answer);
      if (session.role === "manager") {
        location.assign("statistics.html"); // the managers' page of their own (decision 0043)
        return;
      }
      await loadInstitutions();
      const next = sessionStorage.getItem(`${SESSION_KEY}.next`);
      sessionStorage.removeItem(`${SESSION_KEY}.next`);
      if (session.role === "issuer") stream.start(session.institution);
      const home = session.role === "hospital" ? "#/worklist" : "#/queue";
      const target = next && next !== "#/login" ? next : home;
      if (location.hash === target) render();
      else location.hash = target;
    } catch (e) {
      let text = e.message;
      if (e.status === 429) {
        const wait = Number(e.headers && e.headers.get("Retry-After"));
        text = e.problem.detail || "登录失败次数过多，请稍后再试";
        if (wait > 0) text += `（约 ${Math.ceil(wait / 60)} 分钟后可重试）`;
      } else if (e.status === 401) {
        text = e.problem.detail || "用户名或密码不正确";
      }
      error.textContent = text;
      error.hidden = false;
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "登 录";
    }
  });
  main().replaceChildren(
    h("div", { class: "login-page" },
      h("section", { class: "login-card", "aria-labelledby": "login-title" },
        h("div", { class: "login-head" },
          h("span", { class: "brand-mark brand-mark-lg", "aria-hidden": "true" }, "证"),
          h("div", {},
            h("h1", { id: "login-title" }, "出生医学证明签发工作台"),
            h("p", { class: "muted" }, "出生医学证明网上申领 · 签发机构专用"))),
        form,
        h("p", { class: "login-foot muted" }, "本系统含个人敏感信息，仅限授权人员使用，所有操作均留痕可查。"))),
  );
  document.title = "登录 - 出生医学证明签发工作台";
  username.focus();
}

// ------------------------------------------------------------------ list pages (the queue, the worklist)

// A list page's table: its columns' headings (label, class), then a column of actions.
function gridTable(id, caption, headings) {
  const body = h("tbody");
  const table = h("table", { class: "grid queue-table", id },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {},
      headings.map(([label, cls]) => h("th", { scope: "col", class: cls || null }, label)),
      h("th", { scope: "col" }, h("span", { class: "sr-only" }, "操作")))),
    body);
  return { table, body };
}

// One filter tab with its count; ``data`` names it for tests and styles (data-state, data-kind).
function filterTab({ href, current, label, count, data, overdue = false }) {
  return h("a", { class: overdue ? "tab tab-overdue" : "tab", href, "aria-current": current ? "page" : null, dataset: data },
    label, h("span", { class: "count" }, count ?? "0"));
}

// Pages of a list the server hands out with a cursor: ``load(true)`` reads the first page again, ``load(false)``
// (the 加载更多 button) the next one; ``show(answer)`` draws what is loaded (``answer`` null after a failure).
function pagedList({ path, query, isCurrent, error, more, failure, show }) {
  const list = { items: [], cursor: null };
  list.load = async (reset) => {
    const params = query();
    params.set("limit", "100");
    if (!reset && list.cursor) params.set("cursor", list.cursor);
    try {
      const answer = await api(`${path}?${params}`);
      if (!isCurrent()) return;
      error.hidden = true;
      list.items = reset ? answer.items || [] : list.items.concat(answer.items || []);
      list.cursor = answer.next_cursor || null;
      more.hidden = !list.cursor;
      show(answer);
    } catch (e) {
      if (!isCurrent() || e.name === "AbortError") return;
      error.textContent = `${failure}：${e.message}`;
      error.hidden = false;
      if (reset) show(null);
    }
  };
  more.addEventListener("click", () => list.load(false));
  return list;
}

function listSummary(list, order) {
  const overdue = list.items.filter((i) => i.overdue).length;
  return `共 ${list.items.length} 件${list.cursor ? "（还有更多）" : ""}，${order}${overdue ? `；其中超期 ${overdue} 件` : ""}。更新于 ${fmtDateTime(new Date().toISOString()).slice(11)}`;
}

// ------------------------------------------------------------------ queue

function queueHref(params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v));
  const text = query.toString();
  return `#/queue${text ? `?${text}` : ""}`;
}

async function renderQueue(params, isCurrent) {
  document.title = "审核队列 - 出生医学证明签发工作台";
  const state = params.get("state") || "";
  const overdue = params.get("overdue") === "1";
  const bundleOverdue = params.get("bundle_overdue") === "1";
  const isAuditor = session.role === "auditor";
  await loadInstitutions();
  if (!isCurrent()) return;
  const institution = isAuditor ? params.get("institution") || (institutions[0] && institutions[0].code) || "" : session.institution;
  renderHeader("/queue");

  const tabs = h("nav", { class: "tabs", "aria-label": "按办理状态筛选" });
  const summary = h("p", { class: "queue-summary muted", "aria-live": "polite" });
  const { table, body: tableBody } = gridTable("queue-table", "待办申请，按首次提交时间从早到晚排列", [
    ["序号", "num"], ["新生儿"], ["母亲"], ["办理状态"], ["提交次数", "num"], ["首次提交"], ["最近提交"], ["办理时限"], ["领取方式"],
  ]);
  const more = h("button", { type: "button", class: "btn", hidden: true }, "加载更多");
  const error = h("div", { class: "alert alert-error", role: "alert", hidden: true });

  let picker = null;
  if (isAuditor) {
    const select = h("select", { id: "institution-picker" },
      institutions.map((i) => h("option", { value: i.code, selected: i.code === institution }, `${i.name}（${i.code}）`)));
    select.addEventListener("change", () => { location.hash = queueHref({ institution: select.value, state, overdue: overdue ? "1" : "" }); });
    picker = h("div", { class: "field field-inline" }, h("label", { for: "institution-picker" }, "签发机构"), select);
  }

  main().replaceChildren(
    h("section", { class: "page", "aria-labelledby": "queue-title" },
      h("div", { class: "page-head" },
        h("div", {},
          h("h1", { id: "queue-title" }, "审核队列"),
          summary),
        h("div", { class: "page-tools" }, picker,
          h("button", { type: "button", class: "btn", id: "queue-refresh", onclick: () => load(true) }, "刷新"))),
      error,
      tabs,
      h("div", { class: "panel panel-flush" }, table),
      h("div", { class: "more" }, more)),
  );

  const flash = new Map();

  function renderTabs(counts) {
    const total = counts.total ?? counts.all ?? QUEUE_STATES.reduce((sum, [key]) => sum + (Number(counts[key]) || 0), 0);
    const entries = [["", "全部", total], ...QUEUE_STATES.map(([key, label]) => [key, label, counts[key]])];
    const nodes = entries.map(([key, label, count]) => filterTab({
      href: queueHref({ institution: isAuditor ? institution : "", state: key }), current: !overdue && !bundleOverdue && state === key, label, count, data: { state: key || "all" },
    }));
    nodes.push(filterTab({
      href: queueHref({ institution: isAuditor ? institution : "", state, overdue: "1" }), current: overdue, label: "超期", count: counts.overdue, data: { state: "overdue" }, overdue: true,
    }));
    if (counts.bundle_overdue || bundleOverdue) {
      nodes.push(filterTab({
        href: queueHref({ institution: isAuditor ? institution : "", bundle_overdue: "1" }), current: bundleOverdue, label: "一件事超时", count: counts.bundle_overdue, data: { state: "bundle-overdue" }, overdue: true,
      }));
    }
    tabs.replaceChildren(...nodes);
  }

  // 出生一件事's time limit while a department has not answered (decision 0049): the earliest open deadline,
  // marked when passed, the services still open in its title.
  function bundleClock(item) {
    if (!item.bundle_due_at) return null;
    const open = (item.bundle_open || []).join("、");
    return h("div", { class: item.bundle_overdue ? "bundle-clock is-overdue" : "bundle-clock", title: open ? `尚未办结：${open}` : null },
      `一件事 ${fmtDate(item.bundle_due_at)}前`,
      item.bundle_overdue ? h("span", { class: "badge badge-overdue" }, "已超时") : null);
  }

  // Which working-day calendar counted the deadline (the queue item's calendar_source): the State
  // Council's schedule (loaded by the operator, or chinesecalendar's data), or an estimate from the
  // statutory holidays alone while that year's 调休 schedule is not loaded.
  function calendarNote(item) {
    if (!item.due_at || !item.calendar_source) return null;
    if (item.calendar_source === "statutory") {
      return h("div", { class: "calendar-note is-estimated", title: "运维人员载入当年国务院放假安排后（birthcert calendar import），期限按调休重新计算" },
        `按法定节假日估算（未载入${item.calendar_year}年调休安排）`);
    }
    return h("div", { class: "calendar-note", title: item.calendar_source === "official" ? "按已载入的国务院办公厅放假通知计算" : "按 chinesecalendar 收录的国务院办公厅放假通知计算" },
      `按${item.calendar_year}年国务院放假安排计算`);
  }

  function renderRows() {
    const sorted = list.items; // the server's order: oldest first submission first
    if (!sorted.length) {
      tableBody.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "empty" }, overdue ? "没有超期的申请" : "暂无待办申请",
        isAuditor ? h("div", { class: "small" }, "已办结（已寄出、已领取等）的申请不在队列中，可在上方按申请号查找。") : null)));
      return;
    }
    tableBody.replaceChildren(...sorted.map((item, index) => {
      const href = `#/applications/${item.application_id}`;
      const row = h("tr", { dataset: { applicationId: item.application_id, queueState: item.queue_state || "" }, class: [item.overdue ? "is-overdue" : "", flash.has(item.application_id) ? "is-updated" : ""].join(" ").trim() || null },
        h("td", { class: "num" }, index + 1),
        h("td", {}, h("a", { href, class: "row-link" }, item.newborn_name_masked || "—")),
        h("td", {}, item.mother_name_masked || "—"),
        h("td", {}, h("span", { class: `badge badge-${item.queue_state || item.state}` }, QUEUE_STATE_LABELS[item.queue_state] || STATE_LABELS[item.state] || item.state),
          bundleRefusedBadge(item.bundle_refused)),
        h("td", { class: "num" }, item.submissions ?? "—"),
        h("td", {}, fmtDateTime(item.submitted_at)),
        h("td", {}, fmtDateTime(item.last_submitted_at || item.submitted_at)),
        h("td", { title: item.due_working_days ? `自最近提交起 ${item.due_working_days} 个工作日${item.due_basis === "default" ? "（本省未规定，按默认时限）" : ""}` : null },
          item.due_at ? fmtDate(item.due_at) : h("span", { class: "muted" }, "—"),
          item.overdue ? h("span", { class: "badge badge-overdue" }, "超期") : null,
          calendarNote(item),
          bundleClock(item)),
        h("td", {}, deliveryMethod(item.delivery_method && typeof item.delivery_method === "object" ? item.delivery_method : { method: item.delivery_method })),
        h("td", { class: "actions" }, h("a", { href, class: "btn btn-small", "aria-label": `${isAuditor ? "查看" : "办理"} ${item.newborn_name_masked || ""}` }, isAuditor ? "查看" : "办理")));
      row.addEventListener("click", (event) => { if (!event.target.closest("a")) location.hash = href; });
      return row;
    }));
  }

  const list = pagedList({
    path: "/api/v1/review/queue",
    query() {
      const query = new URLSearchParams();
      if (state) query.set("state", state);
      if (overdue) query.set("overdue", "true");
      if (bundleOverdue) query.set("bundle_overdue", "true");
      if (isAuditor && institution) query.set("institution", institution);
      return query;
    },
    isCurrent, error, more,
    failure: "审核队列加载失败",
    show(answer) {
      renderTabs((answer && answer.counts) || {});
      if (!answer) return;
      renderRows();
      summary.textContent = listSummary(list, "按首次提交时间从早到晚排列");
    },
  });
  const load = list.load;

  let pending = null;
  const onLive = (event) => {
    if (event.type === "queue" && event.data && event.data.application_id) {
      flash.set(event.data.application_id, Date.now());
      setTimeout(() => { flash.delete(event.data.application_id); const row = tableBody.querySelector(`tr[data-application-id="${CSS.escape(event.data.application_id)}"]`); if (row) row.classList.remove("is-updated"); }, 6000);
    }
    clearTimeout(pending);
    pending = setTimeout(() => load(true), 150);
  };
  stream.listeners.add(onLive);
  if (institution) stream.start(institution);
  leaveView = () => { stream.listeners.delete(onLive); clearTimeout(pending); };
  renderTabs({});
  await load(true);
}

// A department refused one of the 出生一件事 services: the issuer opens the application to read why.
function bundleRefusedBadge(names) {
  if (!names || !names.length) return null;
  return h("span", { class: "badge badge-bundle-refused", title: `出生“一件事”：${names.join("、")}未予办理，原因见申请详情` },
    `一件事 ${names.length} 项未予办理`);
}

// ------------------------------------------------------------------ the hospital's worklist

function worklistHref(params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v));
  const text = query.toString();
  return `#/worklist${text ? `?${text}` : ""}`;
}

// "2026-11-21T08:30:00+08:00" ⇄ the value of an <input type="datetime-local"> in Beijing time.
function localInput(iso) {
  return iso ? fmtDateTime(iso).replace(" ", "T").slice(0, 16) : "";
}

function fromLocalInput(value) {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(value) ? `${value}:00+08:00` : "";
}

async function renderWorklist(params, isCurrent) {
  document.title = "分娩记录工作单 - 出生医学证明签发工作台";
  const kind = params.get("kind") || "";
  const overdue = params.get("overdue") === "1";
  await loadInstitutions();
  if (!isCurrent()) return;
  renderHeader("/worklist");

  const tabs = h("nav", { class: "tabs", "aria-label": "按类别筛选" });
  const summary = h("p", { class: "queue-summary muted", "aria-live": "polite" });
  const { table, body: tableBody } = gridTable("worklist-table", "待处理的分娩记录，按登记时间从早到晚排列", [
    ["序号", "num"], ["类别"], ["产妇"], ["详情"], ["登记时间"], ["录入时限"],
  ]);
  const more = h("button", { type: "button", class: "btn", hidden: true }, "加载更多");
  const error = h("div", { class: "alert alert-error", role: "alert", hidden: true });
  main().replaceChildren(
    h("section", { class: "page", "aria-labelledby": "worklist-title" },
      h("div", { class: "page-head" },
        h("div", {},
          h("h1", { id: "worklist-title" }, "分娩记录工作单"),
          summary),
        h("div", { class: "page-tools" },
          h("button", { type: "button", class: "btn", id: "worklist-refresh", onclick: () => load(true) }, "刷新"))),
      h("p", { class: "muted small" }, "产妇对分娩信息的异议须答复：更正分娩信息，或说明原记录无误（答复原因产妇可在小程序中看到）。分娩信息须在规定时限内录入（广东省产妇分娩后3日内，山东省24小时内）。"),
      error,
      tabs,
      h("div", { class: "panel panel-flush" }, table),
      h("div", { class: "more" }, more)),
  );

  function renderTabs(counts) {
    const entries = [["", "全部", counts.total], ...WORKLIST_KINDS.map(([key, label]) => [key, label, counts[key]])];
    const nodes = entries.map(([key, label, count]) => filterTab({
      href: worklistHref({ kind: key }), current: !overdue && kind === key, label, count, data: { kind: key || "all" },
    }));
    nodes.push(filterTab({ href: worklistHref({ kind, overdue: "1" }), current: overdue, label: "超期", count: counts.overdue, data: { kind: "overdue" }, overdue: true }));
    tabs.replaceChildren(...nodes);
  }

  function detail(item) {
    if (item.kind === "dispute") return h("div", { class: "dispute-reason" }, h("span", { class: "muted" }, "异议原因："), item.reason || "—");
    if (item.kind === "missing") {
      return h("div", {},
        h("div", {}, `产妇自述分娩日期 ${item.born_on || "—"} · 身份证 `, h("span", { class: "mono" }, item.mother_id_number_masked || "—")),
        h("div", { class: "small muted" }, "产妇刷脸认证后未查到分娩记录，请核实后在医院信息系统（HIS）录入"));
    }
    return h("div", {}, "分娩信息录入超过规定时限", item.application_id ? h("div", { class: "small muted" }, "已有申请使用此记录") : null);
  }

  function actions(item) {
    if (item.kind !== "dispute") return null;
    return [
      h("button", { type: "button", class: "btn btn-small btn-primary", onclick: () => correctDialog(item) }, "更正分娩信息"),
      " ",
      h("button", { type: "button", class: "btn btn-small", onclick: () => upholdDialog(item) }, "答复原记录无误"),
    ];
  }

  function renderRows() {
    const items = list.items;
    if (!items.length) {
      tableBody.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "empty" }, overdue ? "没有超期的记录" : "暂无待处理的分娩记录")));
      return;
    }
    tableBody.replaceChildren(...items.map((item, index) => h("tr", { dataset: { itemId: item.item_id, kind: item.kind }, class: item.overdue ? "is-overdue" : null },
      h("td", { class: "num" }, index + 1),
      h("td", {}, h("span", { class: `badge badge-${item.kind}` }, WORKLIST_KIND_LABELS[item.kind] || item.kind)),
      h("td", {}, item.mother_name_masked || "—"),
      h("td", {}, detail(item)),
      h("td", {}, fmtDateTime(item.since)),
      h("td", {}, item.due_at ? fmtDateTime(item.due_at) : h("span", { class: "muted" }, "—"),
        item.overdue ? h("span", { class: "badge badge-overdue" }, "超期") : null),
      h("td", { class: "actions" }, actions(item)))));
  }

  const list = pagedList({
    path: "/api/v1/hospital/worklist",
    query() {
      const query = new URLSearchParams();
      if (kind) query.set("kind", kind);
      if (overdue) query.set("overdue", "true");
      return query;
    },
    isCurrent, error, more,
    failure: "工作单加载失败",
    show(answer) {
      renderTabs((answer && answer.counts) || {});
      if (!answer) return;
      renderRows();
      summary.textContent = listSummary(list, "按登记时间从早到晚排列");
    },
  });
  const load = list.load;

  async function answered(message) {
    toast(message);
    await load(true);
  }

  function theirReason(item) {
    return h("div", { class: "alert alert-warn", role: "note" }, `产妇的异议：${item.reason || "—"}`);
  }

  function upholdDialog(item) {
    const reason = h("textarea", { rows: 4, dataset: { name: "reason" }, maxlength: 200, placeholder: "如：经核对产房称重记录，出生体重为3250克，原记录无误" });
    dialogForm({
      title: "答复异议：原记录无误",
      submitLabel: "提交答复",
      fields: [theirReason(item), formField("uphold-reason", "答复原因", reason, "产妇将在小程序的申请进度中看到这段答复。")],
      build() {
        const text = reason.value.trim();
        return text.length < 2 ? { errors: [{ field: "reason", message: "请填写2到200个字的答复原因" }] } : { body: { reason: text } };
      },
      send: (body, key) => api(`/api/v1/deliveries/${item.delivery_record_id}/uphold`, { method: "POST", body, headers: { "Idempotency-Key": key } }),
      done: () => answered("已答复，产妇可在申请进度中看到答复"),
      conflict: (e) => answered(`答复未完成：${e.message}`),
    });
  }

  async function correctDialog(item) {
    let record;
    try {
      record = await api(`/api/v1/deliveries/${item.delivery_record_id}`);
    } catch (e) {
      toast(`分娩记录读取失败：${e.message}`, "error");
      return;
    }
    const input = (name, value, attrs = {}) => h("input", { dataset: { name }, value: value ?? "", autocomplete: "off", ...attrs });
    const sex = h("select", { dataset: { name: "newborn.sex" } },
      [["F", "女"], ["M", "男"]].map(([v, label]) => h("option", { value: v, selected: record.newborn_sex === v }, label)));
    const bornAt = input("newborn.born_at", localInput(record.born_at), { type: "datetime-local" });
    const weeks = input("newborn.gestational_weeks", record.gestational_weeks, { type: "number", min: 20, max: 45 });
    const weight = input("newborn.weight_g", record.weight_g, { type: "number", min: 300, max: 8000 });
    const length = input("newborn.length_cm", record.length_cm, { type: "number", min: 20, max: 70, step: "0.1" });
    const place = record.birthplace || {};
    const province = input("birthplace.province", place.province, { maxlength: 20 });
    const city = input("birthplace.city", place.city, { maxlength: 20 });
    const county = input("birthplace.county", place.county, { maxlength: 20 });
    const attendant = input("attendant", record.attendant, { maxlength: 30 });
    const reason = h("textarea", { rows: 3, dataset: { name: "reason" }, maxlength: 200, placeholder: "如：按产妇异议核对产房称重记录，更正出生体重" });
    dialogForm({
      title: "答复异议：更正分娩信息",
      submitLabel: "保存更正",
      wide: true,
      fields: [
        theirReason(item),
        h("p", { class: "muted small" }, `住院病历号 ${record.inpatient_no} · 产妇 ${maskId(record.mother_id_number)}（产妇身份不能更正）`),
        h("div", { class: "field-row" },
          formField("correct-sex", "新生儿性别", sex),
          formField("correct-born-at", "出生时间", bornAt),
          formField("correct-weeks", "出生孕周", weeks)),
        h("div", { class: "field-row" },
          formField("correct-weight", "出生体重（克）", weight),
          formField("correct-length", "出生身长（厘米）", length),
          formField("correct-attendant", "接生人员", attendant)),
        h("div", { class: "field-row" },
          formField("correct-province", "出生地（省）", province),
          formField("correct-city", "出生地（市）", city),
          formField("correct-county", "出生地（县/区）", county)),
        formField("correct-reason", "更正原因", reason, "产妇将在小程序中看到更正原因，并须重新确认分娩信息。"),
      ],
      build() {
        const errors = [];
        const born = fromLocalInput(bornAt.value);
        if (!born) errors.push({ field: "newborn.born_at", message: "请填写出生时间" });
        if (reason.value.trim().length < 2) errors.push({ field: "reason", message: "请填写2到200个字的更正原因" });
        return {
          errors,
          body: {
            inpatient_no: record.inpatient_no,
            birth_order: record.birth_order,
            mother: { name: record.mother_name, id_number: record.mother_id_number },
            newborn: { sex: sex.value, born_at: born, gestational_weeks: Number(weeks.value), weight_g: Number(weight.value), length_cm: Number(length.value) },
            birthplace: { province: province.value.trim(), city: city.value.trim(), county: county.value.trim() },
            attendant: attendant.value.trim(),
            reason: reason.value.trim(),
          },
        };
      },
      send: (body, key) => api(`/api/v1/deliveries/${record.id}`, { method: "PUT", body, headers: { "Idempotency-Key": key, "If-Match": `"${record.version}"` } }),
      done: () => answered("已更正，产妇将核对更正后的分娩信息"),
      conflict: (e) => answered(`更正未完成：${e.message}（工作单已刷新，请核对后再操作）`),
    });
  }

  renderTabs({});
  await load(true);
}

// ------------------------------------------------------------------ one application

async function renderApplication(id, isCurrent) {
  document.title = "申请详情 - 出生医学证明签发工作台";
  await loadInstitutions();
  const blobUrls = [];
  const keptUrls = []; // archived PDFs and proof bundles: kept until the page is left (a tab may still load one)
  const docController = new AbortController();
  let doc = await api(`/api/v1/review/applications/${id}`);
  if (!isCurrent()) return;
  let staleBanner = null;
  // Built once: a history already read (and recorded) survives the page's redraws on live updates.
  const audit = session.role === "auditor" ? auditSection(doc.application.id, { isCurrent, urls: keptUrls }) : null;

  const onLive = (event) => {
    if (event.type !== "queue" || !event.data || event.data.application_id !== id) return;
    if (typeof event.data.version === "number" && event.data.version <= doc.application.version) return;
    if ($("#modal").open) {
      showStale();
    } else {
      reload("该申请刚刚有了新的变化，已自动刷新");
    }
  };
  stream.listeners.add(onLive);
  stream.start(session.role === "issuer" ? session.institution : doc.application.institution);
  leaveView = () => {
    stream.listeners.delete(onLive);
    docController.abort();
    for (const url of blobUrls.concat(keptUrls)) URL.revokeObjectURL(url);
  };

  function showStale() {
    if (staleBanner) return;
    staleBanner = h("div", { class: "alert alert-warn", role: "alert" }, "该申请已被更新，当前显示的可能不是最新内容。", " ",
      h("button", { type: "button", class: "btn btn-small", onclick: () => reload() }, "重新加载"));
    $(".app-alerts").append(staleBanner);
  }

  async function reload(message, kind = "info") {
    try {
      doc = await api(`/api/v1/review/applications/${id}`);
    } catch (e) {
      if (isCurrent()) toast(e.message, "error");
      return;
    }
    if (!isCurrent()) return;
    staleBanner = null;
    draw(message, kind);
  }

  function draw(message, kind = "info") {
    for (const url of blobUrls.splice(0)) URL.revokeObjectURL(url);
    const a = doc.application;
    const form = doc.form || {};
    const changes = doc.changes_since_rejection || [];
    const changed = new Set(changes.map((c) => c.field));
    const isIssuer = session.role === "issuer";
    const newborn = (form.newborn && form.newborn.name) || "（未填写）";
    const mother = (form.mother && form.mother.name) || "—";
    const alerts = h("div", { class: "app-alerts" });
    if (message) alerts.append(h("div", { class: `alert alert-${kind}`, role: kind === "error" ? "alert" : "status" }, message));
    if (a.signature && a.signature.valid === false) alerts.append(h("div", { class: "alert alert-error", role: "alert" }, "登记表电子签名已失效（签名后内容发生变化），不能签发。"));

    const revealToggle = h("button", { type: "button", class: "btn btn-small", "aria-pressed": "false", id: "reveal-pii" }, "显示完整证件号码");
    revealToggle.addEventListener("click", () => {
      const on = !page.classList.contains("reveal");
      page.classList.toggle("reveal", on);
      revealToggle.setAttribute("aria-pressed", on ? "true" : "false");
      revealToggle.textContent = on ? "隐藏完整证件号码" : "显示完整证件号码";
    });

    const page = h("section", { class: "page application", "aria-labelledby": "app-title", dataset: { state: a.state, version: a.version } },
      h("nav", { class: "breadcrumb", "aria-label": "位置" }, h("a", { href: "#/queue" }, "审核队列"), h("span", { "aria-hidden": "true" }, " › "), "申请详情"),
      h("div", { class: "page-head" },
        h("div", {},
          h("h1", { id: "app-title" }, `新生儿 ${newborn}`, h("span", { class: "title-sub" }, `母亲 ${mother}`)),
          h("p", { class: "meta" },
            h("span", { class: `badge badge-state badge-${a.state}`, id: "app-state" }, STATE_LABELS[a.state] || a.state),
            h("span", {}, `第 ${a.submissions || 0} 次提交`),
            h("span", {}, `首次提交 ${fmtDateTime(a.first_submitted_at)}`),
            a.submitted_at && a.submitted_at !== a.first_submitted_at ? h("span", {}, `最近提交 ${fmtDateTime(a.submitted_at)}`) : null,
            h("span", {}, `领取方式：${deliveryMethod(a.delivery_method)}`),
            a.certificate_number ? h("span", {}, "证件编号 ", h("strong", { class: "mono" }, a.certificate_number)) : null,
            a.sealer_name ? h("span", { id: "app-printed-by" }, `打证人 ${a.issuer_name || "—"} · 盖章人 ${a.sealer_name}`) : null,
            a.tracking_number ? h("span", {}, "邮件号 ", h("strong", { class: "mono" }, a.tracking_number)) : null,
            h("span", { class: "muted mono", title: a.id }, `申请号 ${a.id.slice(0, 8)}`))),
        h("div", { class: "page-tools" }, revealToggle)),
      alerts,
      actionBar(a),
      a.pickup && a.state !== "revoked" ? pickupPanel(a.pickup) : null,
      (a.replacements || []).length ? replacementsPanel(a.replacements) : null,
      a.revocation ? revocationPanel(a.revocation) : null,
      a.bundle ? bundlePanel(a.bundle) : null,
      audit ? audit.node : null,
      changes.length ? changesPanel(changes) : null,
      // Sent back before, resubmitted with nothing changed: say so, the issuer should not have to spot it.
      doc.changes_since_rejection && !changes.length && a.state === "submitted"
        ? h("div", { class: "alert alert-warn", id: "unchanged-since-rejection", role: "note" },
          h("strong", {}, "自上次驳回以来，申办人未修改任何内容。"), "请对照上次驳回原因（见办理记录）决定是否再次驳回。")
        : null,
      a.rejection ? rejectionPanel(a.rejection) : null,
      h("div", { class: "columns" },
        h("div", { class: "col-main" }, formPanel(form, changed, a)),
        h("div", { class: "col-side" },
          comparisonPanel(doc.comparison || [], doc.delivery_record),
          documentsPanel(doc.documents || [], changed),
          historyPanel(doc.history || []),
          audit ? null : archivePanel(a.id, { isCurrent, urls: keptUrls }))),
    );
    main().replaceChildren(page);
    if (audit) audit.refresh();
  }

  function actionBar(a) {
    if (session.role !== "issuer") {
      return h("div", { class: "action-bar action-bar-readonly", role: "note" }, "审计人员只读查看：不能对申请进行任何操作；本次查看（含证件照片）已记入可验证日志。");
    }
    const buttons = [];
    const method = a.delivery_method && a.delivery_method.method;
    if (a.state === "submitted") {
      buttons.push(h("button", { type: "button", class: "btn btn-danger", dataset: { action: "reject" }, onclick: () => rejectDialog() }, "驳回"));
      buttons.push(h("button", { type: "button", class: "btn btn-primary", dataset: { action: "issue" }, disabled: a.signature && a.signature.valid === false, onclick: () => issueDialog(false) }, "签发"));
    }
    if (a.state === "issued" && method === "ems") buttons.push(h("button", { type: "button", class: "btn btn-primary", dataset: { action: "dispatch" }, onclick: dispatchDialog }, "寄出"));
    if (a.state === "issued" && method === "pickup") {
      buttons.push(h("button", { type: "button", class: "btn", dataset: { action: "collector-check" }, onclick: collectorCheckDialog }, "领取人刷脸"));
      buttons.push(h("button", { type: "button", class: "btn btn-primary", dataset: { action: "handover" }, disabled: !(a.pickup && a.pickup.collector_check && a.pickup.collector_check.status === "verified"), onclick: handoverDialog }, "现场领取"));
    }
    if (["issued", "delivered", "collected"].includes(a.state)) buttons.push(h("button", { type: "button", class: "btn btn-danger", dataset: { action: "replacement" }, onclick: replacementDialog }, "换发"));
    if (a.state === "dispatched") buttons.push(h("button", { type: "button", class: "btn btn-danger", dataset: { action: "loss" }, onclick: lossDialog }, "邮件丢失"));
    if (a.state === "lost") buttons.push(h("button", { type: "button", class: "btn btn-primary", dataset: { action: "reissue" }, onclick: () => issueDialog(true) }, "补发"));
    if (["issued", "dispatched", "delivered", "collected"].includes(a.state)) buttons.push(h("button", { type: "button", class: "btn btn-danger", dataset: { action: "revoke" }, onclick: revokeDialog }, "宣布作废"));
    const hint = {
      submitted: "请核对登记表、分娩记录与证件照片后作出审核决定。",
      returned: "已驳回，等待申办人修改并重新提交。",
      issued: method === "ems" ? "已签发，交邮后请登记邮件号。" : "已签发，等待领取：领取人须先现场刷脸（与所出示的身份证件比对），再登记领取。",
      delivered: "已妥投。如发现本机构打印错误或证件毁损，可收回原证后换发。",
      collected: "已现场领取。如发现本机构打印错误或证件毁损，可收回原证后换发。",
      dispatched: "已交邮寄出。如邮件丢失或损毁，请登记后补发。",
      lost: "邮件已丢失，请使用新的空白证件补发（原编号作废，登记内容不变）。",
      revoked: "本机构已宣布该出生医学证明作废，网上不再办理；申办人已被告知到本机构窗口咨询。",
    }[a.state] || "当前状态无需操作。";
    return h("div", { class: "action-bar", role: "region", "aria-label": "审核操作" },
      h("span", { class: "action-hint" }, hint),
      h("div", { class: "action-buttons" }, buttons));
  }

  function changesPanel(changes) {
    return h("section", { class: "panel panel-changes", "aria-labelledby": "changes-title", id: "changes-since-rejection" },
      h("h2", { id: "changes-title" }, `自上次驳回以来的修改（${changes.length} 项）`),
      h("table", { class: "grid grid-compact changes" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "项目"), h("th", { scope: "col" }, "修改前"), h("th", { scope: "col" }, "修改后"))),
        h("tbody", {}, changes.map((c) => h("tr", {},
          h("th", { scope: "row" }, FORM_LABELS[c.field] || fixableLabel(c.field) || c.field),
          h("td", { class: "before" }, changeValue(c.field, c.before)),
          h("td", { class: "after" }, changeValue(c.field, c.after)))))));
  }

  function rejectionPanel(rejection) {
    return h("section", { class: "panel panel-rejection", "aria-labelledby": "rejection-title" },
      h("h2", { id: "rejection-title" }, "驳回意见"),
      rejection.reason_codes && rejection.reason_codes.length ? h("p", { id: "rejection-codes" }, "驳回原因：", rejection.reason_codes.map(rejectionLabel).join("、")) : null,
      h("ul", {}, (rejection.reasons || []).map((r) => h("li", {}, r))),
      rejection.fields && rejection.fields.length ? h("p", { class: "muted" }, "需修改：", rejection.fields.map(fixableLabel).join("、")) : null);
  }

  function formPanel(form, changed, a) {
    const d = form.delivery || {};
    const m = form.mother || {};
    const f = form.father;
    const cell = (field, content, attrs = {}) => h("td", { ...attrs, class: [attrs.class, changed.has(field) ? "is-changed" : ""].filter(Boolean).join(" ") || null, dataset: { field } },
      content, changed.has(field) ? h("span", { class: "changed-tag" }, "已修改") : null);
    const signature = (doc.documents || []).find((x) => x.kind === "signature");
    const sigSlot = h("span", { class: "sig-slot" }, signature ? "（加载中）" : "（未签名）");
    if (signature) loadImage(signature, sigSlot, "申办人电子签名", null, "sig-img");
    return h("section", { class: "panel form-sheet", "aria-labelledby": "form-title" },
      h("h2", { id: "form-title", class: "sheet-title" }, form.title || "出生医学证明首次签发登记表（网上申办专用）"),
      h("table", { class: "sheet" },
        h("colgroup", {}, h("col", { class: "c-label" }), h("col"), h("col", { class: "c-label" }), h("col")),
        h("tbody", {},
          h("tr", {}, h("th", { colspan: 4, class: "sheet-section", scope: "colgroup" }, "分娩信息（由助产机构录入）")),
          h("tr", {}, h("th", { scope: "row" }, "母亲姓名"), cell("delivery.mother_name", d.mother_name || "—"), h("th", { scope: "row" }, "住院病历号"), cell("delivery.inpatient_no", d.inpatient_no || "—", { class: "mono" })),
          h("tr", {}, h("th", { scope: "row" }, "新生儿性别"), cell("delivery.newborn_sex", sex(d.newborn_sex)), h("th", { scope: "row" }, "出生时间"), cell("delivery.born_at", fmtDateTime(d.born_at))),
          h("tr", {}, h("th", { scope: "row" }, "出生孕周"), cell("delivery.gestational_weeks", d.gestational_weeks ? `${d.gestational_weeks} 周` : "—"), h("th", { scope: "row" }, "体重 / 身长"), cell("delivery.weight_g", `${d.weight_g ?? "—"} 克 / ${d.length_cm ?? "—"} 厘米`)),
          h("tr", {}, h("th", { scope: "row" }, "出生地点"), cell("delivery.birthplace", place(d.birthplace), { colspan: 3 })),
          h("tr", {}, h("th", { scope: "row" }, "助产机构"), cell("delivery.institution_name", d.institution_name || "—"), h("th", { scope: "row" }, "接生人员"), cell("delivery.attendant", d.attendant || "—")),
          h("tr", {}, h("th", { scope: "row" }, "录入日期"), cell("delivery.entered_on", fmtDate(d.entered_on), { colspan: 3 })),
          h("tr", {}, h("th", { colspan: 4, class: "sheet-section", scope: "colgroup" }, "申办人填写")),
          h("tr", {}, h("th", { scope: "row" }, "新生儿姓名"), cell("newborn.name", h("strong", { class: "big" }, (form.newborn && form.newborn.name) || "—"), { colspan: 3 })),
        )),
      h("table", { class: "sheet sheet-parents" },
        h("colgroup", {}, h("col", { class: "c-label" }), h("col"), h("col")),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "项目"), h("th", { scope: "col" }, "母亲"), h("th", { scope: "col" }, f ? "父亲" : "父亲（单亲母亲申办，不填写）"))),
        h("tbody", {},
          [["name", "姓名", (v) => v || "—"],
            ["age", "年龄", (v) => (v || v === 0 ? `${v} 岁` : "—")],
            ["nationality", "国籍", nationality],
            ["ethnicity", "民族", ethnicity],
            ["id_type", "有效身份证件类型", (v) => config.idTypes[v] || v || "—"],
            ["id_number", "证件号码", (v) => pii(v)],
            ["address", "住址", (v) => v || "—"],
          ].map(([key, label, fmt]) => h("tr", {},
            h("th", { scope: "row" }, label),
            cell(`mother.${key}`, fmt(m[key]), { class: key === "id_number" ? "mono" : null }),
            f ? cell(`father.${key}`, fmt(f[key]), { class: key === "id_number" ? "mono" : null }) : h("td", { class: "muted" }, "—"))))),
      h("div", { class: "sheet-notice" }, h("strong", {}, "知情告知："), form.notice || ""),
      h("table", { class: "sheet sheet-signs" },
        h("colgroup", {}, h("col", { class: "c-label" }), h("col"), h("col", { class: "c-label" }), h("col")),
        h("tbody", {},
          h("tr", {},
            h("th", { scope: "row" }, "申办人签名"),
            h("td", { dataset: { field: "signature" }, class: changed.has("signature") ? "is-changed" : null }, sigSlot,
              a.signature ? h("span", { class: `sig-state ${a.signature.valid ? "ok" : "bad"}` }, a.signature.valid ? "签名有效" : "签名已失效") : null),
            h("th", { scope: "row" }, "签名日期"),
            h("td", {}, fmtDate(a.submitted_at))),
          h("tr", {},
            h("th", { scope: "row" }, "打证人签名"),
            h("td", {}, lastActor("Issued", "Reissued") || h("span", { class: "muted" }, "（签发时记录）")),
            h("th", { scope: "row" }, "出生医学证明编号"),
            h("td", { class: "mono" }, a.certificate_number || h("span", { class: "muted" }, "（签发时填写）"))))),
      h("p", { class: "sheet-hash muted" }, "登记表摘要（SHA-256）：", h("span", { class: "mono" }, doc.form_sha256 || "—")));
  }

  function lastActor(...events) {
    const found = [...(doc.history || [])].reverse().find((e) => events.includes(e.event));
    return found && found.actor ? found.actor.name : null;
  }

  function comparisonPanel(rows, record) {
    const differing = rows.filter((r) => r.differs).length;
    return h("section", { class: "panel", "aria-labelledby": "compare-title", id: "comparison" },
      h("div", { class: "panel-head" },
        h("h2", { id: "compare-title" }, "与医院分娩记录核对"),
        rows.length
          ? h("span", { class: `badge ${differing ? "badge-overdue" : "badge-ok"}` }, differing ? `${differing} 项不一致` : "全部一致")
          : null),
      record ? h("p", { class: "muted small" }, `${record.institution_name || ""} · 住院病历号 ${record.inpatient_no || "—"} · 录入于 ${fmtDate(record.entered_on)}${record.entered_late ? "（超期录入）" : ""}`) : h("p", { class: "alert alert-warn" }, "未关联医院分娩记录"),
      record && record.open_dispute ? h("p", { class: "alert alert-warn" }, `申办人对分娩记录有异议：${record.open_dispute}`) : null,
      rows.length ? h("table", { class: "grid grid-compact compare" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "核对项目"), h("th", { scope: "col" }, "申请表"), h("th", { scope: "col" }, "分娩记录"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "结果")))),
        h("tbody", {}, rows.map((r) => h("tr", { class: r.differs ? "differs" : null, dataset: { field: r.field } },
          h("th", { scope: "row" }, r.label),
          h("td", {}, comparisonValue(r.field, r.application)),
          h("td", {}, comparisonValue(r.field === "verified_mother_name" ? "mother_name" : r.field, r.record)),
          h("td", { class: "result" }, r.differs ? h("span", { class: "badge badge-overdue" }, "不一致") : h("span", { class: "ok-mark", "aria-label": "一致" }, "✓")))))) : null);
  }

  function documentsPanel(documents, changed) {
    const ordered = [...documents].sort((x, y) => DOCUMENT_ORDER.indexOf(x.kind) - DOCUMENT_ORDER.indexOf(y.kind));
    const list = h("ul", { class: "thumbs" }, ordered.map((d) => {
      const label = DOCUMENT_LABELS[d.kind] || d.kind;
      const slot = h("span", { class: "thumb-img" }, h("span", { class: "muted" }, "加载中…"));
      const button = h("button", { type: "button", class: "thumb", "aria-label": `放大查看：${label}`, disabled: true }, slot);
      loadImage(d, slot, label, button);
      return h("li", { class: changed.has(`documents.${d.kind}`) || (d.kind === "signature" && changed.has("signature")) ? "is-changed" : null, dataset: { kind: d.kind } },
        button,
        h("span", { class: "thumb-caption" }, label,
          changed.has(`documents.${d.kind}`) ? h("span", { class: "changed-tag" }, "已重新上传") : null),
        h("span", { class: "thumb-hash mono", title: d.sha256 }, `SHA-256 ${String(d.sha256).slice(0, 12)}…`));
    }));
    return h("section", { class: "panel", "aria-labelledby": "docs-title" },
      h("h2", { id: "docs-title" }, `证件照片及签名（${documents.length}）`),
      documents.length ? list : h("p", { class: "muted" }, "没有上传的照片"));
  }

  async function loadImage(d, slot, label, button, className = "doc-img") {
    try {
      const response = await api(d.url, { raw: true, headers: { Accept: d.content_type || "image/*" }, signal: docController.signal });
      const blob = await response.blob();
      if (!isCurrent()) return;
      const url = URL.createObjectURL(blob);
      blobUrls.push(url);
      slot.replaceChildren(h("img", { src: url, alt: label, class: className, dataset: { kind: d.kind } }));
      if (button) {
        button.disabled = false;
        button.onclick = () => openModal(label, h("figure", { class: "viewer" },
          h("img", { src: url, alt: label }),
          h("figcaption", { class: "muted" }, `${label} · SHA-256 ${d.sha256}`)), { wide: true });
      }
    } catch (e) {
      if (e.name === "AbortError") return;
      slot.replaceChildren(h("span", { class: "error-text" }, `加载失败：${e.message}`));
    }
  }

  function historyPanel(history) {
    return h("section", { class: "panel", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "办理记录"),
      h("ol", { class: "timeline", id: "history" }, [...history].reverse().map((e) => h("li", { class: KEY_EVENTS.has(e.event) ? "key" : null, dataset: { event: e.event } },
        h("span", { class: "tl-time mono" }, fmtDateTime(e.at)),
        h("span", { class: "tl-event" }, EVENT_LABELS[e.event] || e.event, historyDetail(e.detail || {})),
        h("span", { class: "tl-actor muted" }, COLLECTOR_EVENTS.has(e.event) ? "领取人（现场扫码）" : actorText(e.actor))))));
  }

  // Whose face check, why it was sent back, which number: enough to read the line without opening it.
  function historyDetail(d) {
    const parts = [];
    if (d.role) parts.push(PARENT_ROLES[d.role] || d.role);
    if (d.kind) parts.push(DOCUMENT_LABELS[d.kind] || d.kind);
    if (d.submission) parts.push(`第 ${d.submission} 次`);
    if (d.reason_codes && d.reason_codes.length) parts.push(`原因：${d.reason_codes.map(rejectionLabel).join("、")}`);
    if (d.reasons && d.reasons.length) parts.push(`${d.reason_codes && d.reason_codes.length ? "说明" : "原因"}：${d.reasons.join("；")}`);
    if (d.fields && d.fields.length) parts.push(`需修改：${d.fields.map(fixableLabel).join("、")}`);
    if (d.certificate_number) parts.push(`证件编号 ${d.certificate_number}`);
    if (d.tracking_number) parts.push(`邮件号 ${d.tracking_number}`);
    if (d.service) {
      const service = ((doc.application.bundle || {}).services || []).find((x) => x.code === d.service);
      parts.push(`${service ? service.name : d.service}：${config.bundleStates[d.state] || d.state}`);
    }
    return parts.length ? h("span", { class: "tl-detail" }, `（${parts.join("，")}）`) : null;
  }

  // ---- actions: each dialog keeps one Idempotency-Key until the server answers, so a retry after a
  // network failure cannot act twice; If-Match carries the version this page shows.

  function actionForm({ title, path, fields, build, done, submitLabel, danger }) {
    dialogForm({
      title, fields, build, submitLabel, danger,
      send: (body, key) => api(`/api/v1/review/applications/${id}/${path}`, {
        method: "POST",
        body,
        headers: { "Idempotency-Key": key, "If-Match": `"${doc.application.version}"` },
      }),
      async done() {
        await reload(done, "ok");
        toast(done);
      },
      conflict: (e) => reload(`操作未完成，该申请可能已被他人处理：${e.message}（页面已显示最新内容，请核对后再操作）`, "error"),
    });
  }

  const field = formField;

  function rejectDialog() {
    // 出生一件事's materials are offered "to fix" only when this application has them (decision 0047).
    const shownKinds = new Set((doc.documents || []).map((d) => d.kind));
    const offered = (f) => !f.startsWith("documents.") || !MATERIAL_KINDS.has(f.slice(10)) || shownKinds.has(f.slice(10));
    const hasMaterials = [...MATERIAL_KINDS].some((k) => shownKinds.has(k));
    // The reasons from the catalogue (docs/decisions/0045): the mother reads each one's explanation; the free
    // text adds the issuer's own words (required with 其他问题). Picking a reason that concerns one field
    // ticks that field.
    const reasons = h("textarea", { rows: 3, dataset: { name: "reasons" }, maxlength: 1000, placeholder: "每行一条，将原样告知申办人；选择“其他问题”时必填" });
    const picklist = h("fieldset", { class: "checks", dataset: { name: "reason_codes" } },
      h("legend", {}, "驳回原因（可多选，至少选一项）"),
      h("div", { class: "check-group" }, config.rejectionReasons.filter((r) => !r.fields.length || r.fields.some(offered)).map((r) => h("label", { class: "check" },
        h("input", {
          type: "checkbox", name: "reason_codes", value: r.code,
          onchange: (event) => {
            if (!event.target.checked || r.fields.length !== 1) return;
            const box = fieldset.querySelector(`input[name=fields][value="${CSS.escape(r.fields[0])}"]`);
            if (box && !box.checked) {
              box.checked = true;
              box.dispatchEvent(new Event("change", { bubbles: true }));
            }
          },
        }), r.label))));
    const groups = [
      ["新生儿及分娩信息", (f) => ["delivery_record", "newborn_name"].includes(f)],
      ["母亲信息", (f) => f.startsWith("mother.")],
      ["父亲信息", (f) => f.startsWith("father.")],
      [hasMaterials ? "证件照片及一件事材料" : "证件照片", (f) => f.startsWith("documents.") && offered(f)],
      ["其他", (f) => ["signature", "delivery_method"].includes(f)],
    ];
    const fieldset = h("fieldset", { class: "checks", dataset: { name: "fields" } },
      h("legend", {}, "需申办人修改的项目（至少选一项）"),
      groups.map(([title, test]) => {
        const entries = config.fixable.filter((x) => test(x.field));
        if (!entries.length) return null;
        return h("div", { class: "check-group" }, h("div", { class: "check-group-title" }, title),
          entries.map((x) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "fields", value: x.field }), x.label)));
      }));
    actionForm({
      title: "驳回申请",
      path: "reject",
      submitLabel: "确认驳回",
      danger: true,
      done: "已驳回，申办人将收到修改通知",
      // Each fieldset in a .field, so that its error shows beneath it.
      fields: [h("div", { class: "field" }, picklist), field("reject-reasons", "补充说明", reasons, "申办人将在小程序中看到所选原因的修改指引和这里的说明。"), h("div", { class: "field" }, fieldset)],
      build(form) {
        const codes = [...form.querySelectorAll("input[name=reason_codes]:checked")].map((x) => x.value);
        const list = reasons.value.split(/\n+/).map((s) => s.trim()).filter(Boolean);
        const fields = [...form.querySelectorAll("input[name=fields]:checked")].map((x) => x.value);
        const errors = [];
        if (!codes.length) errors.push({ field: "reason_codes", message: "请选择驳回原因" });
        if (codes.includes("other") && !list.length) errors.push({ field: "reasons", message: "选择“其他问题”时，请填写补充说明" });
        if (list.some((s) => s.length < 2 || s.length > 200)) errors.push({ field: "reasons", message: "每条说明应为2到200个字" });
        if (!fields.length) errors.push({ field: "fields", message: "请选择需要修改的项目" });
        return { errors, body: { reason_codes: codes, reasons: list, fields } };
      },
    });
  }

  function issueDialog(reissue) {
    const a = doc.application;
    const number = h("input", { dataset: { name: "certificate_number" }, maxlength: 10, autocomplete: "off", spellcheck: "false", class: "mono", placeholder: "如 X440100021", pattern: "[A-Z][0-9]{9}" });
    number.addEventListener("input", () => { const at = number.selectionStart; number.value = number.value.toUpperCase().replace(/\s/g, ""); number.setSelectionRange(at, at); });
    const sealer = h("input", { dataset: { name: "sealer" }, maxlength: 30, autocomplete: "off" });
    const summary = h("dl", { class: "summary" },
      h("dt", {}, "新生儿"), h("dd", {}, (doc.form && doc.form.newborn && doc.form.newborn.name) || "—"),
      h("dt", {}, "母亲"), h("dd", {}, (doc.form && doc.form.mother && doc.form.mother.name) || "—"),
      h("dt", {}, "打证人"), h("dd", {}, session.name || "—"),
      reissue ? [h("dt", {}, "作废原编号"), h("dd", { class: "mono" }, a.certificate_number || "—")] : null);
    actionForm({
      title: reissue ? "补发出生医学证明" : "签发出生医学证明",
      path: reissue ? "reissue" : "issue",
      submitLabel: reissue ? "确认补发" : "确认签发",
      done: reissue ? "已补发，原编号已作废" : "已签发",
      fields: [summary,
        field(reissue ? "reissue-number" : "issue-number", reissue ? "新空白证件编号" : "出生医学证明编号", number, "印在空白证件上的编号：1个大写字母加9位数字。每个编号只能使用一次。"),
        field(reissue ? "reissue-sealer" : "issue-sealer", "盖章人", sealer)],
      build() {
        const value = number.value.trim().toUpperCase();
        const errors = [];
        if (!CERT_RE.test(value)) errors.push({ field: "certificate_number", message: "出生医学证明编号应为1个大写字母加9位数字，如 X440100021" });
        if (reissue && value === a.certificate_number) errors.push({ field: "certificate_number", message: "补发须使用新的证件编号" });
        if (!sealer.value.trim()) errors.push({ field: "sealer", message: "请填写盖章人姓名" });
        return { errors, body: { certificate_number: value, sealer: sealer.value.trim() } };
      },
    });
  }

  function dispatchDialog() {
    const tracking = h("input", { dataset: { name: "tracking_number" }, maxlength: 32, autocomplete: "off", class: "mono", placeholder: "如 EA123456789CN" });
    const dm = doc.application.delivery_method || {};
    const r = dm.recipient || {};
    actionForm({
      title: "登记寄出",
      path: "dispatch",
      submitLabel: "确认寄出",
      done: "已登记寄出",
      fields: [
        h("dl", { class: "summary" }, h("dt", {}, "收件人"), h("dd", {}, r.name || "—"), h("dt", {}, "电话"), h("dd", {}, r.phone ? pii(r.phone, `${r.phone.slice(0, 3)}****${r.phone.slice(-4)}`) : "—"), h("dt", {}, "地址"), h("dd", {}, r.address || "—")),
        field("dispatch-tracking", "EMS 邮件号", tracking, "10到32位大写字母或数字")],
      build() {
        const value = tracking.value.trim().toUpperCase();
        return { errors: TRACKING_RE.test(value) ? [] : [{ field: "tracking_number", message: "邮件号格式不正确（10到32位大写字母或数字）" }], body: { tracking_number: value } };
      },
    });
  }

  function handoverDialog() {
    const name = h("input", { dataset: { name: "recipient_name" }, maxlength: 30, autocomplete: "off" });
    const relation = h("select", { dataset: { name: "relation" } }, h("option", { value: "" }, "请选择"),
      (config.relations.length ? config.relations : [{ value: "mother", label: "母亲" }, { value: "father", label: "父亲" }, { value: "authorized", label: "受委托人" }]).map((r) => h("option", { value: r.value }, r.label)));
    const idNumber = h("input", { dataset: { name: "id_number" }, maxlength: 18, autocomplete: "off", class: "mono" });
    actionForm({
      title: "现场领取登记",
      path: "handover",
      submitLabel: "确认领取",
      done: "已登记现场领取",
      fields: [
        h("p", { class: "hint" }, "领取人须与刚才现场刷脸认证的身份一致；非母亲本人领取的，按本省规定核对母亲签署的授权委托书。"),
        field("handover-name", "领取人姓名", name),
        field("handover-relation", "与新生儿关系", relation),
        field("handover-id", "领取人身份证号码", idNumber, "18位居民身份证号码")],
      build() {
        const errors = [];
        const id = idNumber.value.trim().toUpperCase();
        if (!name.value.trim()) errors.push({ field: "recipient_name", message: "请填写领取人姓名" });
        if (!relation.value) errors.push({ field: "relation", message: "请选择与新生儿关系" });
        if (!validResidentId(id)) errors.push({ field: "id_number", message: "身份证号码不正确，请核对" });
        return { errors, body: { recipient_name: name.value.trim(), relation: relation.value, id_number: id } };
      },
    });
  }

  function pickupPanel(p) {
    const check = p.collector_check;
    const letter = p.collector_letter;
    const checkText = !check ? "尚未发起" : {
      opened: `已发起，等待领取人用手机完成刷脸（${fmtDateTime(check.expires_at)} 前有效）`,
      verified: "刷脸认证通过",
      failed: `刷脸认证未通过（${check.failures} 次），可重新发起`,
    }[check.status] || check.status;
    return h("section", { class: "panel", id: "pickup-panel", "aria-labelledby": "pickup-panel-title" },
      h("h2", { id: "pickup-panel-title" }, "现场领取"),
      h("dl", { class: "summary" },
        h("dt", {}, "预约时间"), h("dd", { id: "pickup-appointment" }, p.appointment ? p.appointment.label : "未预约"),
        h("dt", {}, "授权委托书"), h("dd", { id: "pickup-letter" }, letter
          ? [`受托人 ${letter.name} `, pii(letter.id_number, `${letter.id_number.slice(0, 4)}**********${letter.id_number.slice(-4)}`), `，${fmtDateTime(letter.signed_at)} 母亲电子签名`]
          : (p.letter_required ? "未签署（本省非母亲本人领取须有委托书）" : "未签署")),
        h("dt", {}, "领取人刷脸"), h("dd", { id: "pickup-check" }, check ? [`${check.name} `, pii(check.id_number, `${check.id_number.slice(0, 4)}**********${check.id_number.slice(-4)}`), ` · ${checkText}`] : checkText)));
  }

  // 出生一件事 (only when she opted in): each service, the department doing it and where it stands; a refusal
  // with the department's reason, a finished service with its result as the server masked it (the police's
  // registered name and citizen ID number never reach the console in full).
  function bundlePanel(b) {
    const refused = b.services.filter((s) => s.state === "refused").length;
    const outcome = (s) => {
      if (s.state === "refused") return h("span", { class: "bundle-reason" }, `原因：${s.reason || "（部门未说明）"}`);
      // Not yet with the department: the delivery's own state (retrying with the next attempt's time, or refused outright).
      const d = s.delivery;
      if (d && d.state !== "sent" && (d.attempts || d.state === "rejected")) {
        return h("span", { class: d.state === "rejected" ? "bundle-reason" : "muted", dataset: { delivery: d.state } },
          d.label, d.next_attempt_at ? `（下次 ${fmtDateTime(d.next_attempt_at)}）` : "");
      }
      if (s.state !== "done" || !s.result) return s.state === "done" ? h("span", { class: "muted" }, "—") : null;
      return h("dl", { class: "bundle-result" }, Object.entries(s.result).map(([key, value]) => [
        h("dt", {}, config.bundleResultLabels[key] || key),
        h("dd", { class: /id_number$/.test(key) ? "mono" : null, dataset: { result: key } }, value)]));
    };
    return h("section", { class: "panel", id: "bundle-panel", "aria-labelledby": "bundle-title" },
      h("div", { class: "panel-head" },
        h("h2", { id: "bundle-title" }, "出生一件事", h("span", { class: "title-sub" }, `${b.name} · ${fmtDateTime(b.requested_at)} 申请`)),
        refused ? h("span", { class: "badge badge-overdue" }, `${refused} 项未予办理`) : null),
      h("table", { class: "grid grid-compact bundle" },
        h("thead", {}, h("tr", {}, ["事项", "办理部门", "办理状态", "原因或结果", "更新时间", "办理时限"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, b.services.map((s) => h("tr", { class: s.state === "refused" ? "is-refused" : null, dataset: { service: s.code, state: s.state } },
          h("th", { scope: "row" }, s.name),
          h("td", {}, s.department),
          h("td", {}, h("span", { class: `badge badge-service-${s.state}` }, s.state_label)),
          h("td", {}, outcome(s)),
          h("td", { class: "muted" }, s.at ? fmtDateTime(s.at) : "—"),
          h("td", { dataset: { clock: s.clock ? s.clock.state : "" }, title: s.clock ? `受理后 ${s.clock.working_days} 个工作日内` : null },
            s.clock ? [h("span", { class: `badge badge-clock-${s.clock.state}` }, s.clock.label), ` ${fmtDate(s.clock.due_at)}前`] : h("span", { class: "muted" }, "—")))))));
  }

  function replacementsPanel(list) {
    return h("section", { class: "panel", id: "replacements-panel", "aria-labelledby": "replacements-title" },
      h("h2", { id: "replacements-title" }, "换发记录"),
      h("ul", {}, list.map((r) => h("li", {},
        `${fmtDateTime(r.at)} 因${REPLACEMENT_CAUSES[r.cause] || r.cause}换发：原编号 `, h("span", { class: "mono" }, r.voided_certificate_number),
        ` ${OLD_CERTIFICATE_FATES[r.old_certificate] || r.old_certificate}，新编号 `, h("span", { class: "mono" }, r.certificate_number)))));
  }

  function replacementDialog() {
    const a = doc.application;
    const number = h("input", { dataset: { name: "certificate_number" }, maxlength: 10, autocomplete: "off", spellcheck: "false", class: "mono", placeholder: "如 X440100022", pattern: "[A-Z][0-9]{9}" });
    number.addEventListener("input", () => { number.value = number.value.toUpperCase().replace(/\s/g, ""); });
    const sealer = h("input", { dataset: { name: "sealer" }, maxlength: 30, autocomplete: "off" });
    const cause = h("select", { dataset: { name: "cause" } }, h("option", { value: "" }, "请选择"),
      Object.entries(REPLACEMENT_CAUSES).map(([value, label]) => h("option", { value }, label)));
    const fate = h("select", { dataset: { name: "old_certificate" } }, h("option", { value: "" }, "请选择"),
      Object.entries(OLD_CERTIFICATE_FATES).map(([value, label]) => h("option", { value }, label)));
    const note = h("textarea", { rows: 2, dataset: { name: "note" }, maxlength: 200, placeholder: "如：出生时间打印错位" });
    actionForm({
      title: "换发出生医学证明（本机构打印错误或毁损）",
      path: "replacement",
      submitLabel: "确认换发",
      danger: true,
      done: "已换发，原编号已作废，已通知申办人",
      fields: [
        h("p", { class: "hint" }, "用于本机构打印错误、毁损导致证件无效的情形；邮件丢失请使用「补发」。登记信息不变，原编号作废，不得再次使用。"),
        h("dl", { class: "summary" }, h("dt", {}, "作废原编号"), h("dd", { class: "mono" }, a.certificate_number || "—"), h("dt", {}, "打证人"), h("dd", {}, session.name || "—")),
        field("replacement-cause", "换发原因", cause),
        field("replacement-fate", "原证件", fate, "已领取或已寄达的，须收回原证件"),
        field("replacement-number", "新空白证件编号", number, "1个大写字母加9位数字，每个编号只能使用一次"),
        field("replacement-sealer", "盖章人", sealer),
        field("replacement-note", "说明（选填）", note)],
      build() {
        const value = number.value.trim().toUpperCase();
        const errors = [];
        if (!cause.value) errors.push({ field: "cause", message: "请选择换发原因" });
        if (!fate.value) errors.push({ field: "old_certificate", message: "请登记原证件已收回或已销毁" });
        if (!CERT_RE.test(value)) errors.push({ field: "certificate_number", message: "出生医学证明编号应为1个大写字母加9位数字" });
        if (value === a.certificate_number) errors.push({ field: "certificate_number", message: "换发须使用新的证件编号" });
        if (!sealer.value.trim()) errors.push({ field: "sealer", message: "请填写盖章人姓名" });
        return { errors, body: { certificate_number: value, sealer: sealer.value.trim(), cause: cause.value, old_certificate: fate.value, note: note.value.trim() } };
      },
    });
  }

  function revocationPanel(r) {
    const label = (config.revocationReasons.find((x) => x.value === r.reason) || {}).label || r.reason;
    return h("section", { class: "panel panel-rejection", id: "revocation-panel", "aria-labelledby": "revocation-title" },
      h("h2", { id: "revocation-title" }, "宣布作废"),
      h("dl", { class: "summary" },
        h("dt", {}, "作废编号"), h("dd", { class: "mono" }, r.certificate_number),
        h("dt", {}, "作废原因"), h("dd", { id: "revocation-reason" }, label),
        h("dt", {}, "审核说明"), h("dd", { id: "revocation-note" }, r.note),
        h("dt", {}, "作废时间"), h("dd", {}, fmtDateTime(r.at))));
  }

  function revokeDialog() {
    const a = doc.application;
    const reason = h("select", { dataset: { name: "reason" } }, h("option", { value: "" }, "请选择"),
      config.revocationReasons.map((x) => h("option", { value: x.value }, x.label)));
    const note = h("textarea", { rows: 4, dataset: { name: "note" }, maxlength: 500, placeholder: "审核经过与依据，如：经公安机关核查，申办时所持身份证件系冒用（仅本机构签发人员及审计人员可见）" });
    actionForm({
      title: "宣布出生医学证明作废",
      path: "revoke",
      submitLabel: "确认作废",
      danger: true,
      done: "已宣布作废，电子证照随之作废，已通知申办人",
      fields: [
        h("p", { class: "hint" }, "用于以欺骗等不正当手段取得、签发错误或人民法院生效法律文书认定的情形，须经本机构审核；作废后不可撤销，网上不再办理，申办人将被告知到本机构窗口咨询。打印错误或毁损请使用「换发」，邮件丢失请使用「补发」。"),
        h("dl", { class: "summary" }, h("dt", {}, "作废编号"), h("dd", { class: "mono" }, a.certificate_number || "—"), h("dt", {}, "操作人"), h("dd", {}, session.name || "—")),
        field("revoke-reason", "作废原因", reason),
        field("revoke-note", "审核说明", note, "2到500个字，申办人看不到")],
      build() {
        const text = note.value.trim();
        const errors = [];
        if (!reason.value) errors.push({ field: "reason", message: "请选择作废原因" });
        if (text.length < 2 || text.length > 500) errors.push({ field: "note", message: "请填写2到500个字的审核说明" });
        return { errors, body: { reason: reason.value, note: text } };
      },
    });
  }

  function collectorCheckDialog() {
    const name = h("input", { dataset: { name: "name" }, maxlength: 30, autocomplete: "off" });
    const idNumber = h("input", { dataset: { name: "id_number" }, maxlength: 18, autocomplete: "off", class: "mono" });
    const qr = h("div", { id: "collector-qr", "aria-live": "polite" });
    let key = newKey();
    const error = h("div", { class: "alert alert-error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "生成刷脸二维码");
    const form = h("form", { class: "action-form", novalidate: true },
      h("p", { class: "hint" }, "请按领取人出示的身份证件原件填写，领取人用本人手机微信扫码，在小程序中完成刷脸。"),
      error,
      field("check-name", "证件上的姓名", name),
      field("check-id", "证件号码", idNumber, "18位居民身份证号码"),
      qr,
      h("div", { class: "modal-foot" }, h("button", { type: "button", class: "btn", onclick: async () => { closeModal(); await reload(); } }, "完成，返回申请"), submit));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      const id = idNumber.value.trim().toUpperCase();
      if (!name.value.trim() || !validResidentId(id)) {
        error.textContent = "请填写证件上的姓名和正确的身份证号码";
        error.hidden = false;
        return;
      }
      submit.disabled = true;
      try {
        const answer = await api(`/api/v1/review/applications/${doc.application.id}/collector-check`, {
          method: "POST",
          body: { name: name.value.trim(), id_number: id },
          headers: { "Idempotency-Key": key, "If-Match": `"${doc.application.version}"` },
        });
        key = newKey();
        const image = new Image();
        image.alt = "领取人刷脸二维码";
        image.src = URL.createObjectURL(new Blob([answer.qr_svg], { type: "image/svg+xml" }));
        qr.replaceChildren(image, h("p", { class: "muted" }, `${fmtDateTime(answer.expires_at)} 前有效；认证通过后关闭本窗口，再登记领取。`));
      } catch (e) {
        key = newKey();
        error.textContent = e.message;
        error.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });
    openModal("领取人现场刷脸认证", form);
  }

  function lossDialog() {
    const reason = h("textarea", { rows: 3, dataset: { name: "reason" }, maxlength: 200, placeholder: "如：邮政反馈邮件在运输途中丢失" });
    actionForm({
      title: "登记邮件丢失",
      path: "loss",
      submitLabel: "确认登记",
      danger: true,
      done: "已登记邮件丢失，可进行补发",
      fields: [field("loss-reason", "丢失或损毁原因", reason, "2到200个字")],
      build() {
        const text = reason.value.trim();
        return { errors: text.length >= 2 && text.length <= 200 ? [] : [{ field: "reason", message: "请填写2到200个字的原因" }], body: { reason: text } };
      },
    });
  }

  draw();
}

// ------------------------------------------------------------------ auditors: the whole record, the archive, the log

const ARCHIVE_KINDS = { signed: "申办人签名版", issued: "签发版", reissued: "重新签发版" };
const PARENT_ROLES = { mother: "母亲", father: "父亲" };
// Values shown masked in a raw event until the reader asks for them (identity document numbers, phones).
const PII_KEY_RE = /(^|_)(id_number|phone)$/;

function maskPhone(value) {
  return value.length >= 7 ? `${value.slice(0, 3)}****${value.slice(-4)}` : maskId(value);
}

function piiValue(key, value) {
  return pii(String(value), /phone$/.test(key) ? maskPhone(String(value)) : maskId(String(value)));
}

async function copyText(text, what) {
  try {
    if (!navigator.clipboard) throw new Error("no clipboard");
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", { class: "copy-buffer", readonly: true, "aria-hidden": "true", tabindex: "-1" });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = typeof document.execCommand === "function" && document.execCommand("copy");
    area.remove();
    if (!ok) {
      toast(`复制失败，请手动选中${what}后复制`, "warn");
      return;
    }
  }
  toast(`已复制${what}`);
}

function copyButton(text, what, id) {
  return h("button", { type: "button", class: "btn btn-small btn-copy", id, "aria-label": `复制${what}`,
    onclick: () => copyText(typeof text === "function" ? text() : text, what) }, "复制");
}

async function sha256Hex(blob) {
  if (!crypto.subtle) return null; // only in a secure context (https, or this machine)
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// An event's data as indented JSON, built node by node; ID and phone numbers masked (revealed by CSS).
function jsonView(value) {
  const out = [];
  const walk = (v, depth, key) => {
    const inner = "  ".repeat(depth + 1);
    const outer = "  ".repeat(depth);
    if (Array.isArray(v)) {
      if (!v.length) return out.push("[]");
      out.push("[\n");
      v.forEach((x, i) => { out.push(inner); walk(x, depth + 1, key); out.push(i < v.length - 1 ? ",\n" : "\n"); });
      return out.push(`${outer}]`);
    }
    if (v !== null && typeof v === "object") {
      const entries = Object.entries(v);
      if (!entries.length) return out.push("{}");
      out.push("{\n");
      entries.forEach(([k, x], i) => {
        out.push(inner, h("span", { class: "j-key" }, JSON.stringify(k)), ": ");
        walk(x, depth + 1, k);
        out.push(i < entries.length - 1 ? ",\n" : "\n");
      });
      return out.push(`${outer}}`);
    }
    if (typeof v === "string" && key && PII_KEY_RE.test(key)) return out.push(h("span", { class: "j-string" }, "\"", piiValue(key, v), "\""));
    return out.push(h("span", { class: `j-${v === null ? "null" : typeof v}` }, JSON.stringify(v)));
  };
  walk(value, 0, null);
  return h("pre", { class: "json" }, out);
}

// One line in Chinese saying what an event carried (the raw data is one click away).
function eventSummary(e) {
  const d = e.data || {};
  const join = (...items) => items.filter((x) => x !== null && x !== undefined && x !== "").flatMap((x, i) => (i ? [" · ", x] : [x]));
  switch (e.event) {
    case "ApplicationStarted":
      return join(d.policy && d.policy.name, d.circumstances && { both: "父母双方", mother_only: "单亲母亲" }[d.circumstances.parents]);
    case "FaceVerificationRequested":
    case "FaceVerified":
    case "FaceVerificationFailed":
      return join(PARENT_ROLES[d.role] || d.role, d.name, d.id_number ? piiValue("id_number", d.id_number) : null);
    case "ProvinceAdopted":
      return join(d.policy && d.policy.name ? `按${d.policy.name}的规定` : d.province);
    case "DeliveryRecordLinked":
    case "DeliveryRecordRefreshed":
      return join(d.record && d.record.inpatient_no ? `住院病历号 ${d.record.inpatient_no}` : null, d.institution ? institutionName(d.institution) : null);
    case "DetailsProvided":
      return join(d.newborn_name ? `新生儿姓名 ${d.newborn_name}` : null, d.father ? "含父亲信息" : null);
    case "DocumentUploaded":
      return join(DOCUMENT_LABELS[d.kind] || d.kind, d.sha256 ? h("span", { class: "mono", title: d.sha256 }, `${String(d.sha256).slice(0, 10)}…`) : null);
    case "FormSigned":
      return join(d.form_sha256 ? h("span", {}, "登记表摘要 ", h("span", { class: "mono", title: d.form_sha256 }, `${d.form_sha256.slice(0, 12)}…`)) : null);
    case "DeliveryMethodChosen":
      return join(deliveryMethod(d), d.recipient && d.recipient.name ? `收件人 ${d.recipient.name}` : null);
    case "Submitted":
      return join(d.submission ? `第 ${d.submission} 次提交` : null);
    case "Rejected":
      return join((d.reason_codes || []).map(rejectionLabel).join("、"), (d.reasons || []).join("；"));
    case "CertificateReplaced":
      return join(`${REPLACEMENT_CAUSES[d.cause] || d.cause || ""}换发`, d.voided_certificate_number ? h("span", {}, "原编号 ", h("span", { class: "mono" }, d.voided_certificate_number), ` ${OLD_CERTIFICATE_FATES[d.old_certificate] || ""}`) : null, d.certificate_number ? h("span", {}, "新编号 ", h("span", { class: "mono" }, d.certificate_number)) : null);
    case "CertificateRevoked":
      return join(d.voided_certificate_number ? h("span", {}, "作废编号 ", h("span", { class: "mono" }, d.voided_certificate_number)) : null, (config.revocationReasons.find((x) => x.value === d.reason) || {}).label || d.reason, d.note);
    case "PickupBooked":
      return join(d.date ? `${d.date} ${d.start || ""}–${d.end || ""}` : null);
    case "Issued":
    case "Reissued":
      return join(d.certificate_number ? h("span", {}, "证件编号 ", h("span", { class: "mono" }, d.certificate_number)) : null, d.sealer_name ? `盖章人 ${d.sealer_name}` : null);
    case "Dispatched":
      return join(d.tracking_number ? h("span", {}, `${d.carrier ? `${d.carrier} ` : ""}邮件号 `, h("span", { class: "mono" }, d.tracking_number)) : null);
    case "LossReported":
      return join(d.reason);
    case "CollectedOnSite":
      return join(d.recipient_name ? `领取人 ${d.recipient_name}` : null, config.relations.find((r) => r.value === d.relation)?.label);
    default: {
      const keys = Object.keys(d);
      return keys.length ? h("span", { class: "muted" }, `字段：${keys.join("、")}`) : h("span", { class: "muted" }, "（无内容）");
    }
  }
}

function auditActor(actor) {
  if (!actor) return h("span", { class: "muted" }, "—");
  return [
    h("span", { class: "actor-role" }, ACTOR_LABELS[actor.role] || actor.role || ""),
    " ",
    actor.name ? h("span", { title: actor.id || null }, actor.name) : h("span", { class: "mono small" }, actor.id || ""),
    actor.institution ? h("div", { class: "muted small" }, `${institutionName(actor.institution)}（${actor.institution}）`) : null,
  ];
}

// The auditor's panel on an application: integrity, the verifiable log, the archived forms, the full record.
function auditSection(appId, { isCurrent, urls }) {
  const integrity = h("div", { class: "integrity", id: "integrity", role: "status" }, "正在读取数据完整性状态…");
  const log = logCard(appId, urls);
  const forms = archiveForms(appId, { isCurrent, urls, auditor: true });
  const history = historyCard(appId);
  const node = h("section", { class: "panel panel-audit", id: "audit", "aria-labelledby": "audit-title" },
    h("div", { class: "panel-head" },
      h("h2", { id: "audit-title" }, "审计"),
      h("span", { class: "audit-id" }, "申请号 ", h("span", { class: "mono", id: "audit-app-id" }, appId), " ", copyButton(appId, "申请号"))),
    integrity,
    history,
    h("div", { class: "audit-grid" },
      h("section", { class: "audit-card", id: "archive-forms", "aria-labelledby": "archive-title" },
        h("div", { class: "card-head" }, h("h3", { id: "archive-title" }, "存档登记表"), h("span", { class: "muted small" }, "打开 PDF 即查阅个人信息，将被记录")),
        forms.node),
      log.node));

  async function loadIntegrity() {
    try {
      const r = await api("/api/v1/audit/integrity");
      const ok = r.ok !== false;
      integrity.className = `integrity ${ok ? "integrity-ok" : "integrity-bad"}`;
      integrity.dataset.ok = ok ? "true" : "false";
      integrity.setAttribute("role", ok ? "status" : "alert");
      const checked = r.checked_size
        ? `服务启动时核对至已签名检查点（树大小 ${r.checked_size}）`
        : "服务启动时核对；当时尚无已签名的检查点";
      integrity.replaceChildren(
        h("span", { class: "integrity-mark", "aria-hidden": "true" }, ok ? "✓" : "✕"),
        h("div", {},
          ok
            ? [h("strong", {}, "数据完整性校验通过"), `：事件存储与审计日志一致（${checked}）。`]
            : [h("strong", {}, "数据完整性校验未通过"),
              r.position !== null && r.position !== undefined
                ? ["：日志位置 ", h("strong", { class: "mono", id: "integrity-position" }, r.position), " 处的事件与已签名的审计日志不一致。"]
                : "：事件存储与已签名的审计日志不一致。",
              "系统已暂停所有写入，请立即报告运维负责人。"],
          !ok && r.message ? h("div", { class: "small integrity-detail" }, "技术详情：", h("span", { class: "mono", lang: "en" }, r.message)) : null));
    } catch (e) {
      integrity.className = "integrity";
      delete integrity.dataset.ok;
      integrity.replaceChildren(`无法读取数据完整性状态：${e.message}`);
    }
  }

  return { node, refresh() { loadIntegrity(); log.load(); forms.load(); } };
}

function historyCard(appId) {
  const button = h("button", { type: "button", class: "btn btn-primary", id: "load-history" }, "查看完整记录（将被记录）");
  const status = h("span", { class: "small", id: "history-status", role: "status" });
  const result = h("div", { class: "history-result" });
  const node = h("section", { class: "audit-history", id: "full-history", "aria-labelledby": "full-history-title" },
    h("div", { class: "card-head" }, h("h3", { id: "full-history-title" }, "完整办理记录")),
    h("p", { class: "recorded-note" },
      "完整办理记录是该申请的全部事件，含申办人及父母的个人信息（姓名、身份证件号码、住址、联系电话等）。",
      h("strong", {}, "读取本身会被记录："), "系统先记下您的账号、时间和所查看的申请，再显示内容；这条查阅记录同样写入可验证日志，可供查验。"),
    h("div", { class: "toolbar" }, button, status),
    result);
  let controller = null;

  button.addEventListener("click", async () => {
    if (controller) controller.abort();
    controller = new AbortController();
    button.disabled = true;
    status.className = "small";
    status.textContent = "正在记录本次查阅并读取…";
    try {
      const answer = await api(`/api/v1/audit/applications/${appId}/events`, { signal: controller.signal });
      const events = answer.events || [];
      node.classList.remove("reveal");
      result.replaceChildren(eventsTable(events, node));
      status.textContent = `共 ${events.length} 个事件 · 读取于 ${fmtAuditTime(new Date().toISOString())} · 本次查阅已记录`;
      button.textContent = "重新读取（将被记录）";
    } catch (e) {
      if (e.name === "AbortError") return;
      status.className = "small error-text";
      status.textContent = `读取失败：${e.message}`;
    } finally {
      button.disabled = false;
    }
  });
  return node;
}

function eventsTable(events, holder) {
  const tbody = h("tbody");
  const toggles = [];
  const setOpen = (toggle, row, open) => {
    row.hidden = !open;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    toggle.textContent = open ? "收起" : "展开";
  };
  for (const e of events) {
    const dataId = `event-data-${e.version}`;
    const hasData = e.data && typeof e.data === "object" && Object.keys(e.data).length > 0;
    const dataRow = hasData ? h("tr", { class: "data-row", id: dataId, hidden: true }, h("td", { colspan: 8 }, jsonView(e.data))) : null;
    const toggle = hasData ? h("button", { type: "button", class: "btn btn-small data-toggle", "aria-expanded": "false", "aria-controls": dataId, "aria-label": `展开事件内容：${EVENT_LABELS[e.event] || e.event}` }, "展开") : null;
    if (toggle) {
      toggle.addEventListener("click", () => setOpen(toggle, dataRow, dataRow.hidden));
      toggles.push([toggle, dataRow]);
    }
    const unlogged = e.leaf_index === null || e.leaf_index === undefined;
    append(tbody, [
      h("tr", { class: ["event-row", KEY_EVENTS.has(e.event) ? "key" : ""].join(" ").trim(), dataset: { version: e.version, event: e.event, position: e.position ?? "", leafIndex: e.leaf_index ?? "" } },
        h("td", { class: "num" }, e.version),
        h("td", { class: "mono nowrap ev-time" }, fmtAuditTime(e.at)),
        h("td", {}, h("div", { class: "ev-name" }, EVENT_LABELS[e.event] || e.event), h("div", { class: "muted small mono" }, e.event)),
        h("td", { class: "ev-actor" }, auditActor(e.actor)),
        h("td", { class: "num mono", dataset: { col: "position" } }, e.position ?? "—"),
        h("td", { class: `num mono${unlogged ? " error-text" : ""}`, dataset: { col: "leaf" }, title: unlogged ? "尚未写入可验证日志" : null }, e.leaf_index ?? "未入日志"),
        h("td", { class: "ev-summary" }, eventSummary(e)),
        h("td", { class: "actions" }, toggle)),
      dataRow,
    ]);
  }
  const reveal = h("button", { type: "button", class: "btn btn-small", "aria-pressed": "false", id: "history-reveal" }, "显示完整证件号码");
  reveal.addEventListener("click", () => {
    const on = !holder.classList.contains("reveal");
    holder.classList.toggle("reveal", on);
    reveal.setAttribute("aria-pressed", on ? "true" : "false");
    reveal.textContent = on ? "隐藏完整证件号码" : "显示完整证件号码";
  });
  const expand = h("button", { type: "button", class: "btn btn-small", id: "history-expand" }, "全部展开");
  expand.addEventListener("click", () => {
    const open = toggles.some(([, row]) => row.hidden);
    for (const [toggle, row] of toggles) setOpen(toggle, row, open);
    expand.textContent = open ? "全部收起" : "全部展开";
  });
  return h("div", {},
    h("div", { class: "history-tools" },
      h("span", { class: "muted small" }, "按发生顺序排列；日志位置即事件存储中的序号，叶子序号即其在可验证日志中的位置（证明包中的 index）。证件号码和电话默认部分隐藏。"),
      h("span", { class: "history-buttons" }, expand, reveal)),
    h("table", { class: "grid grid-compact audit-events", id: "audit-events" },
      h("caption", { class: "sr-only" }, "该申请的全部事件，按发生顺序排列"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", class: "num" }, "序号"),
        h("th", { scope: "col" }, "时间（北京时间）"),
        h("th", { scope: "col" }, "事件"),
        h("th", { scope: "col" }, "操作人"),
        h("th", { scope: "col", class: "num" }, "日志位置"),
        h("th", { scope: "col", class: "num" }, "叶子序号"),
        h("th", { scope: "col" }, "内容摘要"),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "事件内容")))),
      tbody));
}

function logCard(appId, urls) {
  const file = `proof-${appId}.json`;
  const body = h("div", { class: "log-body" }, h("p", { class: "muted small" }, "正在读取最新检查点…"));
  const download = h("button", { type: "button", class: "btn btn-primary", id: "download-proof" }, "下载证明包");
  const status = h("span", { class: "small", id: "proof-status", role: "status" });
  const command = h("code", { id: "verify-command" });
  let key = null;
  const setCommand = () => { command.textContent = `python3 birthcert_verify.py bundle ${file} --key '${key || "<验证公钥>"}'`; };
  setCommand();

  async function load() {
    try {
      const cp = await api("/api/v1/audit/checkpoint");
      const keys = cp.verifier_keys || [];
      key = keys[0] || null;
      setCommand();
      body.replaceChildren(h("dl", { class: "kv", id: "checkpoint" },
        h("dt", {}, "最新检查点"),
        h("dd", {}, "树大小 ", h("strong", { id: "checkpoint-size", class: "mono" }, cp.tree_size), h("span", { class: "muted" }, ` · 签署于 ${fmtAuditTime(cp.created_at)}`)),
        h("dt", {}, "根哈希"),
        h("dd", { class: "mono hash", id: "checkpoint-root" }, cp.root_hash || "—"),
        h("dt", {}, "验证公钥"),
        h("dd", {}, keys.length
          ? keys.map((k, i) => h("div", { class: "key-line" }, h("code", { class: "mono hash", id: i ? null : "verifier-key" }, k), copyButton(k, "验证公钥", i ? null : "copy-key")))
          : h("span", { class: "muted" }, "—"))));
    } catch (e) {
      body.replaceChildren(h("div", { class: "alert alert-error", role: "alert" }, `检查点读取失败：${e.message}`));
    }
  }

  download.addEventListener("click", async () => {
    download.disabled = true;
    status.className = "small";
    status.textContent = "正在生成证明包…";
    try {
      const response = await api(`/api/v1/audit/applications/${appId}/proof`, { raw: true });
      const blob = await response.blob();
      let bundle = null;
      try {
        bundle = JSON.parse(await blob.text());
      } catch {
        /* still saved as is: the verifier will say what is wrong with it */
      }
      const url = URL.createObjectURL(new Blob([blob], { type: "application/json" }));
      urls.push(url);
      const link = h("a", { href: url, download: file, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      status.textContent = bundle && Array.isArray(bundle.leaves)
        ? `已下载 ${file}：${bundle.leaves.length} 个日志叶子，附树大小 ${bundle.tree_size} 的已签名检查点`
        : `已下载 ${file}`;
      load(); // the bundle may carry a checkpoint newer than the one shown
    } catch (e) {
      status.className = "small error-text";
      status.textContent = `证明包下载失败：${e.message}`;
    } finally {
      download.disabled = false;
    }
  });

  const node = h("section", { class: "audit-card", id: "audit-log", "aria-labelledby": "audit-log-title" },
    h("div", { class: "card-head" },
      h("h3", { id: "audit-log-title" }, "可验证日志"),
      h("button", { type: "button", class: "btn btn-small", id: "checkpoint-refresh", onclick: () => load() }, "刷新")),
    body,
    h("div", { class: "proof-bar" }, download, status),
    h("p", { class: "explain" },
      "证明包含有该申请每个事件的日志叶子、包含证明和已签名的检查点，不含个人信息。把 ",
      h("span", { class: "mono" }, file),
      " 和核验工具 birthcert_verify.py 放在同一目录，在任意电脑上离线运行（只需 Python 3.11 和 cryptography 包）："),
    h("div", { class: "command" }, h("pre", {}, command), copyButton(() => command.textContent, "核验命令", "copy-command")),
    h("p", { class: "hint" },
      "输出以 VERIFIED 开头的一行、退出码为 0 即核验通过；不符之处以 FAILED: 行指出叶子序号和原因。",
      "验证公钥应与运维方经可信渠道提供的一致（birthcert audit key），不要只凭本页核对。"));
  return { node, load };
}

// The archived registration forms (signed, issued, reissued), each PDF fetched with the token and opened
// in a new tab; its SHA-256 is checked against the archive's list. An auditor's opening is recorded.
function archiveForms(appId, { isCurrent, urls, auditor }) {
  const body = h("div", { class: "archive-body" }, h("p", { class: "muted small" }, "正在读取存档…"));
  const status = h("p", { class: "small archive-status", id: "archive-status", role: "status" });
  const node = h("div", {}, body, status);

  async function openPdf(form, button, check) {
    const tab = window.open("", "_blank"); // while the click still counts as the user's gesture
    button.disabled = true;
    status.className = "small archive-status";
    try {
      const response = await api(form.url, { raw: true, headers: { Accept: "application/pdf" } });
      const blob = await response.blob();
      const url = URL.createObjectURL(new Blob([blob], { type: "application/pdf" }));
      urls.push(url);
      if (tab && !tab.closed) tab.location.href = url;
      status.replaceChildren(`已打开${ARCHIVE_KINDS[form.kind] || form.kind} PDF${auditor ? "，本次查阅已记录" : ""}。如未自动打开，请点击 `,
        h("a", { href: url, target: "_blank", rel: "noopener", class: "pdf-link" }, "此链接"), "。");
      const digest = await sha256Hex(blob);
      if (digest) {
        check.replaceChildren(digest === form.pdf_sha256
          ? h("span", { class: "ok-mark", title: `SHA-256 ${digest}` }, "✓ 摘要一致")
          : h("span", { class: "error-text", title: `SHA-256 ${digest}` }, "✕ 摘要与存档不符"));
      }
    } catch (e) {
      if (tab && !tab.closed) tab.close();
      status.className = "small archive-status error-text";
      status.textContent = `PDF 打开失败：${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  function row(form) {
    const check = h("span", { class: "pdf-check small" });
    const open = h("button", { type: "button", class: "btn btn-small", dataset: { pdf: form.kind } }, "打开 PDF");
    open.addEventListener("click", () => openPdf(form, open, check));
    const people = form.issuer_name || form.sealer_name ? `${form.issuer_name || "—"} / ${form.sealer_name || "—"}` : "—";
    return h("tr", { dataset: { kind: form.kind, formId: form.id } },
      h("td", {},
        h("span", { class: `badge ${form.kind === "signed" ? "badge-submitted" : "badge-issued"}` }, ARCHIVE_KINDS[form.kind] || form.kind),
        h("div", { class: "muted small nowrap", title: `第 ${form.version} 个事件，日志位置 ${form.position}；登记表摘要 SHA-256 ${form.form_sha256}` }, `事件 ${form.version} · 位置 ${form.position}`)),
      h("td", { class: "nowrap" }, fmtDateTime(form.recorded_at)),
      h("td", { class: "mono" }, form.certificate_number || "—", form.voided_certificate_number ? h("div", { class: "muted small" }, `作废 ${form.voided_certificate_number}`) : null),
      h("td", {}, people),
      h("td", { class: "actions" }, form.pdf_sha256 ? [open, check] : h("span", { class: "muted small" }, "无 PDF")));
  }

  async function load() {
    try {
      const answer = await api(`/api/v1/archive/forms?application_id=${encodeURIComponent(appId)}`);
      if (!isCurrent()) return;
      const forms = answer.forms || [];
      body.replaceChildren(forms.length
        ? h("table", { class: "grid grid-compact archive-table", id: "archive-table" },
          h("caption", { class: "sr-only" }, "存档的登记表版本，按存档时间排列"),
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "版本"),
            h("th", { scope: "col" }, "存档时间"),
            h("th", { scope: "col" }, "证件编号"),
            h("th", { scope: "col" }, "打证人 / 盖章人"),
            h("th", { scope: "col" }, h("span", { class: "sr-only" }, "PDF")))),
          h("tbody", {}, forms.map(row)))
        : h("p", { class: "muted small" }, "尚无存档的登记表（申办人签名后存档）。"));
    } catch (e) {
      if (!isCurrent()) return;
      body.replaceChildren(h("div", { class: "alert alert-error", role: "alert" }, `存档登记表读取失败：${e.message}`));
    }
  }
  return { node, load };
}

// Issuers: their own institution's archived forms, in the side column.
function archivePanel(appId, ctx) {
  const forms = archiveForms(appId, { ...ctx, auditor: false });
  forms.load();
  return h("section", { class: "panel", id: "archive-forms", "aria-labelledby": "archive-title" },
    h("h2", { id: "archive-title" }, "存档登记表"),
    forms.node);
}

function rejectionLabel(code) {
  const found = config.rejectionReasons.find((x) => x.code === code);
  return found ? found.label : code;
}

function fixableLabel(field) {
  const found = config.fixable.find((x) => x.field === field);
  return found ? found.label : FORM_LABELS[field] || field;
}

function validResidentId(value) {
  if (!/^\d{17}[\dX]$/.test(value)) return false;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = weights.reduce((acc, w, i) => acc + w * Number(value[i]), 0);
  return "10X98765432"[sum % 11] === value[17];
}

// ------------------------------------------------------------------ the day's appointments to collect (预约取证)

async function renderAppointments(params, isCurrent) {
  document.title = "预约领取 - 出生医学证明签发工作台";
  const date = h("input", { type: "date", id: "appointments-date", value: params.get("date") || todayInChina(), required: true });
  const result = h("div", { class: "panel panel-flush", id: "appointments-result", "aria-live": "polite" });
  const form = h("form", { class: "toolbar", novalidate: true },
    h("div", { class: "field field-inline" }, h("label", { for: "appointments-date" }, "领取日期"), date),
    h("button", { type: "submit", class: "btn" }, "查询"));
  const hours = h("p", { class: "muted", id: "appointments-hours" });
  main().replaceChildren(
    h("section", { class: "page", "aria-labelledby": "appointments-title" },
      h("div", { class: "page-head" }, h("div", {},
        h("h1", { id: "appointments-title" }, "预约现场领取"),
        h("p", { class: "muted" }, `${institutionName(session.institution)} · 当天预约到本机构领取出生医学证明的申请`))),
      h("div", { class: "panel" }, form, hours),
      result));

  async function show() {
    history.replaceState(null, "", `#/appointments?date=${date.value}`);
    result.replaceChildren(h("p", { class: "muted pad" }, "正在查询…"));
    const answer = await api(`/api/v1/review/pickup-appointments?date=${encodeURIComponent(date.value)}`);
    if (!isCurrent()) return;
    hours.textContent = answer.hours.length ? `领取时段：${answer.hours.map((w) => w.label).join("；")}` : "本机构尚未设置预约领取时段（birthcert institutions pickup-hours）";
    const rows = answer.appointments || [];
    result.replaceChildren(
      h("table", { class: "grid", id: "appointments-table" },
        h("caption", { class: "table-caption" }, `${date.value} · 共 ${rows.length} 人预约`),
        h("thead", {}, h("tr", {}, ["时段", "母亲", "新生儿", "证件编号", "受托人（委托书）", "状态"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.length
          ? rows.map((r) => h("tr", { dataset: { applicationId: r.application_id } },
            h("td", { class: "mono" }, `${r.start}–${r.end || ""}`),
            h("td", {}, h("a", { href: `#/applications/${r.application_id}` }, r.mother_name || "—")),
            h("td", {}, r.newborn_name || "—"),
            h("td", { class: "mono" }, r.certificate_number || "—"),
            h("td", {}, r.collector ? r.collector.name : (r.letter_required ? "无（仅母亲本人可领取）" : "无")),
            h("td", {}, STATE_LABELS[r.state] || r.state)))
          : h("tr", {}, h("td", { colspan: 6, class: "empty" }, "当天没有预约")))));
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); show().catch((e) => { result.replaceChildren(h("div", { class: "alert alert-error", role: "alert" }, `查询失败：${e.message}`)); }); });
  await show();
}

// ------------------------------------------------------------------ EMS pickup list

async function renderPickup(params, isCurrent) {
  document.title = "揽件清单 - 出生医学证明签发工作台";
  const date = h("input", { type: "date", id: "pickup-date", value: params.get("date") || todayInChina(), max: todayInChina(), required: true });
  const error = h("div", { class: "alert alert-error", role: "alert", hidden: true });
  const result = h("div", { class: "panel panel-flush", id: "pickup-result", "aria-live": "polite" });
  const links = h("p", { class: "pickup-links", "aria-live": "polite" });
  const urls = [];
  const pdfButton = h("button", { type: "button", class: "btn btn-primary", id: "pickup-pdf" }, "打印揽件清单（PDF）");
  const csvButton = h("button", { type: "button", class: "btn", id: "pickup-csv" }, "下载 CSV");
  const showButton = h("button", { type: "submit", class: "btn" }, "查询");
  const form = h("form", { class: "toolbar", novalidate: true },
    h("div", { class: "field field-inline" }, h("label", { for: "pickup-date" }, "揽件日期"), date),
    showButton, pdfButton, csvButton);

  main().replaceChildren(
    h("section", { class: "page", "aria-labelledby": "pickup-title" },
      h("div", { class: "page-head" }, h("div", {},
        h("h1", { id: "pickup-title" }, "邮政速递揽件签收登记表"),
        h("p", { class: "muted" }, `${institutionName(session.institution)} · 按日期打印交邮政揽件员签收`))),
      h("div", { class: "panel" }, form, links),
      error,
      result),
  );
  leaveView = () => { for (const url of urls) URL.revokeObjectURL(url); };

  const path = (format) => `/api/v1/review/pickup-list?date=${encodeURIComponent(date.value)}&format=${format}`;
  const valid = () => {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(date.value)) {
      error.textContent = "请选择揽件日期";
      error.hidden = false;
      date.focus();
      return false;
    }
    error.hidden = true;
    return true;
  };

  async function show() {
    if (!valid()) return;
    history.replaceState(null, "", `#/pickup?date=${date.value}`);
    result.replaceChildren(h("p", { class: "muted pad" }, "正在查询…"));
    try {
      const answer = await api(path("json"));
      if (!isCurrent()) return;
      const rows = answer.rows || [];
      const count = answer.count ?? rows.length;
      const columns = [
        ["certificate_number", "出生医学证明编号", (v) => h("span", { class: "mono" }, v || "—")],
        ["mother_name", "母亲姓名", (v) => v || "—"],
        ["mother_id_number", "母亲身份证号码", (v) => (v && v.includes("*") ? v : pii(v))],
        ["newborn_name", "新生儿姓名", (v) => v || "—"],
        ["birth_date", "出生日期", (v, row) => fmtDate(v || row.born_on || row.born_at)],
        ["recipient_name", "收件人", (v, row) => v || (row.recipient && row.recipient.name) || "—"],
        ["recipient_phone", "收件人电话", (v, row) => v || (row.recipient && row.recipient.phone) || "—"],
        ["tracking_number", "邮件号", (v) => h("span", { class: "mono" }, v || "—")],
      ];
      result.replaceChildren(
        h("table", { class: "grid", id: "pickup-table" },
          h("caption", { class: "table-caption" }, `${answer.title || "揽件签收登记表"} · ${date.value} · ${answer.count_sentence || `共 ${count} 件`}`),
          h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "序号"), columns.map(([, label]) => h("th", { scope: "col" }, label)))),
          h("tbody", {}, rows.length
            ? rows.map((row, i) => h("tr", { dataset: { applicationId: row.application_id || "" } }, h("td", { class: "num" }, row.no ?? i + 1), columns.map(([key, , fmt]) => h("td", {}, fmt(row[key], row)))))
            : h("tr", {}, h("td", { colspan: columns.length + 1, class: "empty" }, "当天没有待揽件的证件")))));
    } catch (e) {
      if (!isCurrent()) return;
      result.replaceChildren();
      error.textContent = `揽件清单查询失败：${e.message}`;
      error.hidden = false;
    }
  }

  async function fetchFile(format, accept) {
    const response = await api(path(format), { raw: true, headers: { Accept: accept } });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    urls.push(url);
    return url;
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); show(); });
  pdfButton.addEventListener("click", async () => {
    if (!valid()) return;
    // Opened now, while the click still counts as the user's gesture, and pointed at the PDF once it is here.
    const tab = window.open("", "_blank");
    pdfButton.disabled = true;
    try {
      const url = await fetchFile("pdf", "application/pdf");
      const link = h("a", { href: url, target: "_blank", rel: "noopener", id: "pickup-pdf-link" }, `揽件清单 ${date.value}（PDF）`);
      links.replaceChildren("已生成：", link, "　如未自动打开，请点击链接。");
      if (tab && !tab.closed) tab.location.href = url;
    } catch (e) {
      if (tab && !tab.closed) tab.close();
      error.textContent = `揽件清单生成失败：${e.message}`;
      error.hidden = false;
    } finally {
      pdfButton.disabled = false;
    }
  });
  csvButton.addEventListener("click", async () => {
    if (!valid()) return;
    csvButton.disabled = true;
    try {
      const url = await fetchFile("csv", "text/csv");
      const link = h("a", { href: url, download: `揽件清单-${session.institution}-${date.value}.csv`, id: "pickup-csv-link" }, "下载");
      document.body.append(link);
      link.click();
      link.remove();
      toast("CSV 已下载");
    } catch (e) {
      error.textContent = `CSV 下载失败：${e.message}`;
      error.hidden = false;
    } finally {
      csvButton.disabled = false;
    }
  });
  await show();
}

// ------------------------------------------------------------------ start

async function boot() {
  try {
    const answer = await fetch("/console/config.json", { cache: "no-cache" }).then((r) => r.json());
    config.fixable = answer.fixable_fields || [];
    config.rejectionReasons = answer.rejection_reasons || [];
    config.relations = answer.relations || [];
    config.ethnic = answer.ethnic_groups || {};
    config.nationalities = answer.nationalities || {};
    config.idTypes = answer.id_types || config.idTypes;
    config.revocationReasons = answer.revocation_reasons || [];
    config.bundleStates = answer.bundle_states || {};
    config.bundleResultLabels = answer.bundle_result_labels || {};
  } catch {
    /* labels fall back to codes */
  }
  session = loadSession();
  if (session) {
    armExpiry();
    try {
      await loadInstitutions();
    } catch {
      /* a 401 has already ended the session */
    }
    if (session && session.role === "issuer") stream.start(session.institution);
  }
  $("#logout").addEventListener("click", () => {
    endSession("您已安全退出", { remember: false });
  });
  window.addEventListener("hashchange", render);
  render();
}

boot();
