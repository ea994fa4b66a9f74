// H5 simulator of the parents' WeChat mini-program (出生医学证明网上申领). Development aid, not the product.
// API calls go to this origin (the service); WeChat client APIs are played through the fake platform's
// control API (?platform=, default http://127.0.0.1:8765): wx.login → code "dev:<openid>:<nonce>",
// wx.requestFacialVerify → POST /_fake/face/verify, wx.requestPayment → POST /_fake/pay/notify.
// A parent may come from a provincial app instead (粤省事 and the others in /h5/channels.json): its login ticket
// from POST /_fake/oidc/<channel>/tickets, its face check a real navigation to the app's authorization URL,
// which redirects back to /h5/face-return (docs/decisions/0030), its messages the app's pushes.

const params = new URLSearchParams(location.search);
const S = {
  api: location.origin,
  platform: (params.get("platform") || "http://127.0.0.1:8765").replace(/\/+$/, ""),
  token: sessionStorage.getItem("h5.token"),
  openid: sessionStorage.getItem("h5.openid"),
  // null: a WeChat user; else the provincial app she came from ({channel, label, province, province_name}).
  via: JSON.parse(sessionStorage.getItem("h5.via") || "null"),
  appId: sessionStorage.getItem("h5.appId"),
  version: null,
  app: null,
  config: null,
  demo: JSON.parse(sessionStorage.getItem("h5.demo") || "null") || { name: "王芳", id: "" },
  father: JSON.parse(sessionStorage.getItem("h5.father") || "null") || { name: "", id: "" },
};
const DEMO_HIS = { username: "his1", password: "birthcert-dev" }; // seeded by `birthcert dev` (development only)
const DOC_LABELS = {
  mother_id_front: "母亲身份证人像面",
  mother_id_back: "母亲身份证国徽面",
  father_id_front: "父亲身份证人像面",
  father_id_back: "父亲身份证国徽面",
  father_handheld_id: "父亲手持身份证照片",
  // 出生一件事's materials of 表1 (decision 0047): asked only when her opt-in needs them.
  hukou_first_page: "落户方户口簿首页",
  hukou_head_page: "落户方户口簿户主页",
  marriage_certificate: "结婚证",
};
const MATERIALS = new Set(["hukou_first_page", "hukou_head_page", "marriage_certificate"]);
const PROVINCES = { GD: "广东省", SD: "山东省", BJ: "北京市", HE: "河北省" };
// The API's field names (RFC 9457 `errors[].field`) as a parent reads them.
const FIELD_NAMES = {
  reason: "原因",
  newborn_name: "新生儿姓名",
  "mother.ethnicity": "母亲民族",
  "mother.address": "母亲住址",
  "father.name": "父亲姓名",
  "father.id_number": "父亲身份证号",
  "father.ethnicity": "父亲民族",
  "father.address": "父亲住址",
  "recipient.name": "收件人",
  "recipient.phone": "手机号",
  "recipient.address": "收件地址",
  name: "姓名",
  id_number: "身份证号",
  file: "照片",
  kind: "材料类型",
};

// ------------------------------------------------------------------ DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
let uid = 0;
const nextId = (p) => `${p}-${++uid}`;
function field(label, control, hint) {
  const id = control.id || (control.id = nextId("f"));
  return h("div", { class: "cell" }, h("label", { for: id }, label), control, hint || null);
}
function stackField(label, control) {
  const id = control.id || (control.id = nextId("f"));
  return h("div", { class: "cell stack" }, h("label", { for: id }, label), control);
}
function info(k, v) {
  return h("div", { class: "cell" }, h("span", { class: "k" }, k), h("span", { class: "v" }, v ?? "—"));
}
function radios(name, options, value) {
  return h(
    "div",
    { class: "radio-row", role: "radiogroup" },
    options.map(([v, label, disabled]) =>
      h("label", {}, h("input", { type: "radio", name, value: v, checked: v === value, disabled: !!disabled }), label),
    ),
  );
}
const radioValue = (root, name) => root.querySelector(`input[name="${name}"]:checked`)?.value;
function button(text, onclick, cls = "btn") {
  return h("button", { type: "button", class: cls, onclick }, text);
}

function setTitle(title, back) {
  document.getElementById("nav-title").textContent = title;
  document.title = `${title} · 出生医学证明申领（H5 模拟器）`;
  const b = document.getElementById("nav-back");
  b.hidden = !back;
  b.onclick = back || null;
}
function show(title, back, ...content) {
  setTitle(title, back);
  const page = document.getElementById("page");
  page.replaceChildren(...content.flat().filter(Boolean));
  window.scrollTo(0, 0);
  return page;
}
function toast(text, ms = 1600) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), ms);
}
// `labels` names fields for this screen (e.g. reason → 异议原因) over FIELD_NAMES.
function problemBox(err, labels = {}) {
  const box = h("div", { class: "error", role: "alert" });
  if (err instanceof Problem) {
    // A referral's detail spells the counter and the materials out in one text: shown laid out below instead.
    const headline = err.body.referral ? err.body.referral.message : err.body.detail;
    box.append(h("b", {}, headline || err.body.title || `请求失败（HTTP ${err.status}）`));
    const errors = Array.isArray(err.body.errors) ? err.body.errors : [];
    if (errors.length) {
      box.append(h("ul", {}, errors.map((e) => {
        const label = labels[e.field] || FIELD_NAMES[e.field] || DOC_LABELS[e.field] || "";
        const text = e.message || e.detail || e.field;
        return h("li", {}, label ? `${label}：${text}` : text);
      })));
    }
    if (err.body.referral) box.append(referralDetails(err.body.referral, "problem-referral"));
    if (err.code) box.append(h("span", { class: "hint" }, `错误代码：${err.code}`));
  } else if (err instanceof TypeError) {
    // fetch() rejects with a TypeError when the network (or the server) cannot be reached.
    box.append(h("b", {}, "网络连接失败，请检查网络后重试"), h("span", { class: "hint" }, String(err.message || err)));
  } else {
    box.append(h("b", {}, err.message || String(err)));
  }
  return box;
}
// A referral to the counter (转现场办理): the institution's counter and what to bring, as the API says them.
function referralDetails(r, id) {
  const c = r.counter;
  return h("div", { class: "referral", id },
    c
      ? h("div", { class: "group counter", id: `${id}-counter` },
        info("办理地点", c.institution_name),
        info("地址", c.address || "请向该机构咨询"),
        info("咨询电话", c.phone || "请向该机构咨询"),
        info("办公时间", c.hours || "请向该机构咨询"))
      : h("p", {}, r.where),
    r.bring && r.bring.length
      ? [h("div", { class: "bring-title" }, "请携带："), h("ol", { class: "bring", id: `${id}-bring` }, r.bring.map((x) => h("li", {}, x)))]
      : null);
}
function showError(slot, err, labels) {
  slot.replaceChildren(problemBox(err, labels));
  slot.scrollIntoView({ block: "nearest" });
}
async function busy(btn, work) {
  const label = btn.textContent;
  btn.disabled = true;
  btn.textContent = "请稍候…";
  try {
    return await work();
  } finally {
    btn.disabled = false;
    btn.textContent = label;
  }
}

// ------------------------------------------------------------------ HTTP

class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.code = body.code || "";
  }
}
function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
async function api(method, path, { json, form, ifMatch = false, token = S.token } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (method === "POST" || method === "PUT") headers["Idempotency-Key"] = uuid();
  if (ifMatch && S.version !== null) headers["If-Match"] = `"${S.version}"`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) body = form;
  const r = await fetch(S.api + path, { method, headers, body });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const p = new Problem(r.status, data && typeof data === "object" ? data : {});
    if (p.code === "version_mismatch" && typeof data.current_version === "number") S.version = data.current_version;
    throw p;
  }
  if (S.appId && path.startsWith(`/api/v1/applications/${S.appId}`) && typeof data.version === "number") {
    S.version = Math.max(S.version ?? 0, data.version);
  }
  return data;
}
// The fake WeChat platform plays the client-side WeChat APIs.
// Without a payload: a GET (e.g. the messages a user received).
async function fake(path, payload) {
  let r;
  try {
    r = await fetch(S.platform + path, payload === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
  } catch (e) {
    throw new Error(`无法连接模拟微信平台 ${S.platform}（${e.message}）`);
  }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`模拟微信平台拒绝了请求（HTTP ${r.status}）：${data.error || JSON.stringify(data)}`);
  return data;
}
const base = () => `/api/v1/applications/${S.appId}`;

async function loadStatus(minVersion = S.version ?? 0) {
  // The status view is a projection: wait (briefly) until it shows the version our last command produced.
  let doc;
  for (let i = 0; i < 30; i++) {
    doc = await api("GET", base());
    if (doc.version >= minVersion) break;
    await new Promise((r) => setTimeout(r, 120));
  }
  S.app = doc;
  S.version = doc.version;
  return doc;
}
async function config() {
  if (!S.config) S.config = await (await fetch("/console/config.json")).json();
  return S.config;
}
const twoParents = (doc) => [...doc.next_steps, ...doc.done_steps].some((s) => s.code === "father_verified");
function save() {
  for (const [k, v] of [["h5.token", S.token], ["h5.openid", S.openid], ["h5.appId", S.appId]]) {
    if (v) sessionStorage.setItem(k, v);
    else sessionStorage.removeItem(k);
  }
  sessionStorage.setItem("h5.demo", JSON.stringify(S.demo));
  sessionStorage.setItem("h5.via", JSON.stringify(S.via));
  sessionStorage.setItem("h5.father", JSON.stringify(S.father));
}

// ------------------------------------------------------------------ GB 11643 demo ID numbers

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
function checkChar(body17) {
  const total = [...body17].reduce((s, d, i) => s + Number(d) * WEIGHTS[i], 0);
  return "10X98765432"[total % 11];
}
function demoIdNumber(region = "440106", female = true) {
  const rnd = (n) => Math.floor(Math.random() * n);
  const year = 1988 + rnd(10);
  const month = String(1 + rnd(12)).padStart(2, "0");
  const day = String(1 + rnd(28)).padStart(2, "0");
  let seq = 100 + rnd(899);
  if ((seq % 2 === 0) !== female) seq += 1; // the 17th digit: even for women, odd for men
  const body = `${region}${year}${month}${day}${seq}`;
  return body + checkChar(body);
}
function randomOpenid() {
  const abc = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  const b = crypto.getRandomValues(new Uint8Array(12));
  return "oH5Mother" + Array.from(b, (x) => abc[x % abc.length]).join("");
}
function shanghaiMinutes(date) {
  return new Date(date.getTime() + 8 * 3600e3).toISOString().slice(0, 16) + "+08:00";
}
function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return new Intl.DateTimeFormat("zh-CN", {
    timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  }).format(d);
}

// ------------------------------------------------------------------ 1. login (wx.login or a provincial app) + demo shortcut

function loginScreen() {
  const openid = h("input", { id: "openid", value: S.openid || randomOpenid(), autocomplete: "off", spellcheck: "false" });
  const platform = h("input", { id: "platform", value: S.platform, autocomplete: "off", spellcheck: "false" });
  // Where she comes from: WeChat, or one of the provincial apps this service is configured for (from data).
  const channel = h("select", { id: "channel" }, h("option", { value: "" }, "微信"));
  const holderName = h("input", { id: "account-name", value: S.demo.name || "", autocomplete: "off" });
  const holderId = h("input", { id: "account-id", value: S.demo.id || "", autocomplete: "off", spellcheck: "false", maxlength: "18" });
  const appBox = h("div", { hidden: true },
    h("div", { class: "section-title" }, "实名账号（与身份证一致）"),
    h("div", { class: "group" }, field("姓名", holderName), field("身份证号", holderId)));
  const loginTitle = h("div", { class: "section-title" });
  const loginHint = h("p", { class: "hint" });
  const chosen = () => S.channels?.find((c) => c.channel === channel.value) || null;
  const err = h("div");
  const loginBtn = button("模拟微信登录", () =>
    busy(loginBtn, async () => {
      try {
        const wanted = platform.value.trim().replace(/\/+$/, "");
        if (wanted !== S.platform) {
          // The page's Content-Security-Policy names the platform from ?platform=: reload with the new one.
          location.search = `?platform=${encodeURIComponent(wanted)}`;
          return;
        }
        const via = chosen();
        const answer = via
          ? await appLogin(via, openid.value.trim(), { name: holderName.value.trim(), id: holderId.value.trim().toUpperCase() })
          : await api("POST", "/api/v1/auth/wechat", {
            json: { code: `dev:${openid.value.trim()}:${uuid().slice(0, 8)}` }, token: null,
          });
        S.token = answer.token;
        S.openid = openid.value.trim();
        S.via = via;
        S.appId = null;
        save();
        toast("登录成功");
        await listScreen();
      } catch (e) {
        showError(err, e);
      }
    }), "btn primary");
  const showChannel = () => {
    const via = chosen();
    appBox.hidden = !via;
    setTitle(via ? `${via.label}登录` : "微信登录");
    loginBtn.textContent = via ? `模拟从${via.label}进入` : "模拟微信登录";
    loginTitle.textContent = via ? `模拟从${via.label}进入（实名账号登录）` : "模拟微信登录（wx.login）";
    loginHint.textContent = via
      ? `这里没有真的${via.label}：模拟平台为上面的实名账号签发${via.label}登录票据，本服务核验票据后登录。账号标识就是一个${via.label}用户；刷脸认证也在${via.label}中完成，消息通过${via.label}推送。`
      : "这里没有真的微信：登录码 dev:<openid>:<随机数> 由模拟微信平台兑换（code2session）。每个 openid 就是一个微信用户；换一个 openid 就是换一个人。";
  };
  channel.addEventListener("change", () => { err.replaceChildren(); showChannel(); });

  // Development shortcut: the demo hospital (HIS account his1) enters this mother's delivery record.
  const mName = h("input", { id: "demo-name", value: S.demo.name, autocomplete: "off" });
  const mId = h("input", { id: "demo-id", value: S.demo.id || demoIdNumber(), autocomplete: "off", spellcheck: "false", maxlength: "18" });
  const police = h("input", { type: "checkbox", id: "demo-police" });
  const out = h("div");
  const genBtn = button("换一个示例身份证号", () => { mId.value = demoIdNumber(); }, "btn small");
  const hisBtn = button("演示：让医院录入我的分娩记录", () =>
    busy(hisBtn, async () => {
      try {
        const id = mId.value.trim().toUpperCase();
        if (!/^\d{17}[\dX]$/.test(id) || checkChar(id.slice(0, 17)) !== id[17]) {
          throw new Error("身份证号码校验位不正确（GB 11643）：可点“换一个示例身份证号”");
        }
        const login = await api("POST", "/api/v1/auth/staff", { json: DEMO_HIS, token: null });
        const inpatient = "ZY" + String(Date.now()).slice(-10);
        await api("POST", "/api/v1/deliveries", {
          token: login.token,
          json: {
            inpatient_no: inpatient,
            mother: { name: mName.value.trim(), id_number: id },
            newborn: {
              sex: "F", born_at: shanghaiMinutes(new Date(Date.now() - 20 * 3600e3)),
              gestational_weeks: 39, weight_g: 3250, length_cm: 50,
            },
            birthplace: { province: "广东省", city: "广州市", county: "越秀区" },
            attendant: "陈助产",
          },
        });
        if (police.checked) {
          await fake("/_fake/registry/persons", {
            id_number: id, name: mName.value.trim(), ethnicity: "01", address: "广东省广州市越秀区中山二路58号",
          });
        }
        S.demo = { name: mName.value.trim(), id };
        save();
        holderName.value = S.demo.name; // her app account is a real-name one: hers
        holderId.value = id;
        out.replaceChildren(h("div", { class: "ok" },
          `已录入：广州市妇女儿童医疗中心，住院病历号 ${inpatient}，母亲 ${S.demo.name}（${id}）。`,
          police.checked ? "已同时登记到模拟公安人口信息。" : "",
          "登录后刷脸认证时使用这个姓名和身份证号。"));
      } catch (e) {
        showError(out, e);
      }
    }), "btn");

  show("微信登录", null,
    h("div", { class: "hero" }, h("h2", {}, "出生医学证明网上申领"), h("p", {}, "H5 模拟器：在浏览器中代替微信小程序（或粤省事等省级政务应用），走一遍家长（母亲）的申领流程。")),
    loginTitle,
    h("div", { class: "group" },
      field("登录渠道", channel),
      field("账号标识", openid),
      field("模拟平台", platform)),
    appBox,
    loginHint,
    err,
    h("div", { class: "btns" }, loginBtn),
    h("div", { class: "card dev" },
      h("h3", {}, "演示：让医院录入我的分娩记录"),
      h("p", { class: "hint" }, "开发调试捷径，真实系统中由医院 HIS 录入。以演示医院账号 his1（广州市妇女儿童医疗中心，由 birthcert dev 创建）调用 POST /api/v1/deliveries。仅适用于广东省的申请。"),
      h("div", { class: "group" },
        field("母亲姓名", mName),
        field("身份证号", mId),
        h("div", { class: "cell" }, h("label", { for: "demo-police" }, "公安信息"), police, h("span", { class: "hint" }, "同时登记到模拟公安人口信息（演示自动填充）"))),
      h("div", { class: "row-actions" }, genBtn),
      h("div", { class: "btns" }, hisBtn),
      out),
    h("p", { class: "footer-note" }, `API ${S.api} · 模拟微信平台 ${S.platform}`));
  showChannel();
  appChannels().then((list) => {
    if (!channel.isConnected) return; // already left the login screen
    channel.append(...list.map((c) => h("option", { value: c.channel }, `${c.label}（${c.province_name}）`)));
    if (S.via && list.some((c) => c.channel === S.via.channel)) channel.value = S.via.channel;
    showChannel();
  });
}

// ------------------------------------------------------------------ 2. my applications + new

async function listScreen() {
  S.appId = null;
  save();
  show("我的申请", null, h("p", { class: "loading" }, "加载中…"));
  const err = h("div");
  let items = [];
  try {
    items = (await api("GET", "/api/v1/applications")).items || [];
  } catch (e) {
    if (e.status === 401) return loginScreen();
    err.append(problemBox(e));
  }
  const list = items.length
    ? h("div", { class: "group" }, items.map((it) =>
      h("div", { class: "cell app-item", role: "button", tabindex: "0", onclick: () => openApp(it.id) },
        h("div", { class: "top" }, h("b", {}, it.role === "father" ? "出生医学证明申领（我是父亲）" : "出生医学证明首次申领"), stateTag(it)),
        h("div", { class: "meta" }, `${PROVINCES[it.province] || it.province || ""} · 申请编号 ${it.id.slice(0, 8)} · ${fmtTime(it.started_at || it.updated_at)}`))))
    : h("div", { class: "empty" }, "还没有申请。新生儿母亲可在下方发起申领。");
  show("我的申请", null,
    h("div", { class: "hero" }, h("h2", {}, "我的申请"), h("p", {}, `${S.via ? S.via.label : "微信"}用户 ${S.openid}`)),
    err,
    h("div", { class: "section-title" }, "申请记录"),
    list,
    h("div", { class: "btns" },
      button("新建申请", newScreen, "btn primary"),
      button("我是孩子父亲：凭邀请码加入", joinScreen),
      button(S.via ? `${S.via.label}消息` : "我的消息", messagesScreen),
      button("退出登录", () => { S.token = null; S.openid = null; S.via = null; save(); loginScreen(); })));
}
function stateTag(doc) {
  const color = { draft: "orange", returned: "red", submitted: "blue", withdrawn: "gray", counter_only: "red", revoked: "red" }[doc.state] || "";
  return h("span", { class: `tag ${color}` }, doc.state_label || doc.state);
}
async function openApp(id) {
  S.appId = id;
  S.version = null;
  save();
  await statusScreen();
}

function newScreen() {
  const root = h("div");
  const err = h("div");
  const prov = radios("province", [["GD", "广东省"], ["SD", "山东省"]], S.via?.province === "SD" ? "SD" : "GD");
  const parents = radios("parents", [["both", "双亲"], ["single_mother", "单母亲"]], "both");
  const note = h("p", { class: "hint" }, "单母亲（出生医学证明上无父亲信息）仅广东省可网上办理；山东省仅双亲首次签发可网上办理。");
  // Where she gave birth: the hospital's QR code carries it in the real mini-program. A referral names its counter.
  const hospital = h("select", { id: "institution" }, h("option", { value: "" }, "未选择"));
  const fillHospitals = async () => {
    const province = radioValue(root, "province");
    try {
      const { items } = await api("GET", `/api/v1/institutions?province=${province}`, { token: null });
      hospital.replaceChildren(h("option", { value: "" }, "未选择"), ...items.map((i) => h("option", { value: i.code }, i.name)));
    } catch {
      /* the list is a convenience: starting without it still works */
    }
  };
  prov.addEventListener("change", fillHospitals);
  const go = button("开始申办", () =>
    busy(go, async () => {
      try {
        const json = { province: radioValue(root, "province"), parents: radioValue(root, "parents") };
        if (hospital.value) json.institution = hospital.value;
        if (radioValue(root, "father_residency") === "hk_macao") json.father_residency = "hk_macao";
        const answer = await api("POST", "/api/v1/applications", { json });
        S.appId = answer.id;
        S.version = answer.version;
        save();
        toast("申请已创建");
        await faceScreen("mother");
      } catch (e) {
        showError(err, e);
      }
    }), "btn primary");
  root.append(
    h("div", { class: "section-title" }, "申办条件"),
    h("div", { class: "group" },
      h("div", { class: "cell" }, h("span", { class: "k" }, "申领省份"), prov),
      field("分娩医院", hospital),
      h("div", { class: "cell" }, h("span", { class: "k" }, "父母情况"), parents),
      h("div", { class: "cell" }, h("span", { class: "k" }, "父亲身份"),
        radios("father_residency", [["mainland", "内地居民"], ["hk_macao", "港澳居民"]], "mainland")),
      info("申办人", "新生儿母亲本人"),
      info("申领类型", "首次签发")),
    note,
    h("p", { class: "hint" }, "以下情形须到签发机构现场办理：外籍、台湾同胞，港澳居民或华侨（按省规定），无法通过刷脸认证，非医疗机构内分娩，换发、补发。"),
    err,
    h("div", { class: "btns" }, go));
  show("新建申请", listScreen, root);
  fillHospitals();
}

// The father joins on his own account with the code the mother shared (decision 0011: the card opens
// /pages/father/join?invitation=<code>; here he pastes it).
function joinScreen() {
  const code = h("input", { id: "invitation", autocomplete: "off", spellcheck: "false", placeholder: "孩子母亲分享的邀请码" });
  const err = h("div");
  const go = button("加入申请", () => busy(go, async () => {
    err.replaceChildren();
    try {
      if (!code.value.trim()) throw new Error("请填写邀请码");
      const answer = await api("POST", "/api/v1/father-invitations/accept", { json: { invitation: code.value.trim() } });
      toast("已加入申请");
      await openApp(answer.application_id);
    } catch (e) {
      showError(err, e, { invitation: "邀请码" });
    }
  }), "btn primary");
  show("加入申请", listScreen,
    h("div", { class: "section-title" }, "孩子父亲用本人微信加入孩子母亲发起的申请"),
    h("div", { class: "group" }, field("邀请码", code)),
    h("p", { class: "hint" }, "加入后，您在本人微信中完成父亲的刷脸认证和证件照片，并可查看申请进度和孩子的电子出生医学证明；孩子母亲的其他信息不向您显示。"),
    err,
    h("div", { class: "btns" }, go));
}

// ------------------------------------------------------------------ 3. status view and the journey's router

const SCREENS = {
  mother_verified: () => faceScreen("mother"),
  delivery_record_linked: () => recordScreen(),
  delivery_info_confirmed: () => recordScreen(),
  details_provided: () => detailsScreen(),
  father_verified: () => fatherScreen(),
  documents_uploaded: () => uploadScreen(),
  bundle_materials_uploaded: () => materialsScreen(),
  form_signed: () => signScreen(),
  delivery_method_chosen: () => deliveryScreen(),
  postage_paid: () => payScreen(),
  submit: () => submitScreen(),
  book_pickup: () => pickupScreen(),
};
// Steps to do once issued (the application itself is no longer editable): book a time, sign a letter.
const AFTER_ISSUE = new Set(["book_pickup", "collect_on_site"]);
const FIELD_SCREENS = [
  ["delivery_record", "delivery_info_confirmed"],
  ["newborn_name", "details_provided"],
  ["mother.", "details_provided"],
  ["father.", "details_provided"],
  ["documents.", "documents_uploaded"],
  ["signature", "form_signed"],
  ["delivery_method", "delivery_method_chosen"],
];
function screenForField(f) {
  const hit = FIELD_SCREENS.find(([prefix]) => f === prefix || f.startsWith(prefix));
  return SCREENS[hit ? hit[1] : "submit"];
}
// After each step: ask the status view what the parent has to do next, and go there.
async function continueJourney() {
  const doc = await loadStatus();
  const next = doc.next_steps.find((s) => s.by === "parent" && SCREENS[s.code]);
  if (next && (doc.state === "draft" || doc.state === "returned")) return SCREENS[next.code]();
  return statusScreen(doc);
}
const back = () => statusScreen();

async function statusScreen(doc, problem) {
  show("申请进度", listScreen, h("p", { class: "loading" }, "加载中…"));
  const err = h("div");
  if (problem) err.append(problemBox(problem));
  try {
    doc = doc || (await loadStatus());
  } catch (e) {
    return show("申请进度", listScreen, problemBox(e));
  }
  const icon = {
    draft: ["✎", "orange"], returned: ["!", "red"], submitted: ["⋯", ""], issued: ["✓", "green"],
    dispatched: ["✈", "green"], delivered: ["✓", "green"], collected: ["✓", "green"], withdrawn: ["×", "gray"],
    lost: ["!", "red"], counter_only: ["!", "red"], revoked: ["×", "red"],
  }[doc.state] || ["•", ""];
  // The joined father's reduced view (decision 0011): the state, his own part and the e-licence; nothing of hers.
  const fathers = doc.role === "father";
  const mine = fathers ? "father" : "parent";
  const parentNext = doc.next_steps.filter((s) => s.by === mine);
  const editable = doc.state === "draft" || doc.state === "returned";
  const parts = [
    h("div", { class: "status-hero" },
      h("div", { class: `icon ${icon[1]}` }, icon[0]),
      h("h2", { id: "state-label" }, doc.state_label),
      h("p", {}, `${PROVINCES[doc.province] || doc.province} · 申请编号 ${doc.id.slice(0, 8)}`
        + (fathers ? " · 父亲视图" : ` · 已提交 ${doc.submissions} 次`)),
      doc.submitted_at ? h("p", {}, `提交时间 ${fmtTime(doc.submitted_at)}`) : null),
  ];
  if (doc.rejection) {
    const r = doc.rejection;
    parts.push(h("div", { class: "error", id: "rejection" },
      h("b", {}, r.resign_required ? "签发机构退回了申请，请按意见修改后重新签名提交：" : "签发机构退回了申请，请按意见修改后重新提交（无需重新签名）："),
      // Each reason code's explanation (what is wrong, how to fix it), then the issuer's own words.
      (r.reason_messages || []).length ? h("ul", { id: "rejection-messages" }, r.reason_messages.map((x) => h("li", { dataset: { code: x.code } }, h("b", {}, `${x.label}：`), x.message))) : null,
      r.reasons.length ? h("div", { id: "rejection-words" }, (r.reason_messages || []).length ? "签发人员说明：" : null, h("ul", {}, r.reasons.map((x) => h("li", {}, x)))) : null,
      r.field_labels.length ? h("div", {}, "需修改：" + r.field_labels.join("、")) : null,
      h("div", { class: "row-actions" }, button("去修改", () => screenForField(r.fields[0] || "")(), "btn small primary"))));
  }
  if (doc.state === "withdrawn") {
    parts.push(h("div", { class: "ok", id: "withdrawn-note" },
      "您已撤回这份申请，签发机构不再办理。如仍需申领出生医学证明，请返回“我的申请”重新发起。"));
  }
  if (doc.counter_reason) {
    const r = doc.counter_reason;
    parts.push(h("div", { class: "error", id: "counter-reason" }, h("b", {}, r.message || "需到签发机构现场办理"),
      r.counter || r.bring ? referralDetails(r, "counter") : null));
  }
  if (doc.revocation) {
    const r = doc.revocation;
    parts.push(h("div", { class: "error", id: "revocation" }, h("b", {}, r.message),
      r.at ? h("div", {}, `作废时间 ${fmtTime(r.at)}`) : null,
      referralDetails(r, "revoked")));
  }
  if (doc.delivery_record_requested) {
    const r = doc.delivery_record_requested;
    parts.push(h("div", { class: "note", id: "record-awaited" },
      h("b", {}, `已提醒${r.institution_name}录入您的分娩信息`),
      r.reported_at ? h("div", {}, `提醒时间 ${fmtTime(r.reported_at)}`) : null,
      h("div", {}, "医院录入后，我们会通过微信服务通知告诉您；届时回到这里查看并确认分娩信息。医院录入前无需任何操作。"),
      h("div", { class: "row-actions" }, button("修改医院或分娩日期", () => missingRecordScreen(), "btn small"))));
  }
  if (doc.delivery_record_entered) {
    const r = doc.delivery_record_entered;
    parts.push(h("div", { class: "ok", id: "record-entered" },
      h("b", {}, `${r.institution_name || "医院"}已录入您的分娩信息`),
      r.entered_at ? h("div", {}, `录入时间 ${fmtTime(r.entered_at)}`) : null,
      h("div", {}, "请查看分娩信息，核对无误后确认；如有不符，可提出异议。"),
      h("div", { class: "row-actions" }, button("查看并确认", () => recordScreen(), "btn small primary"))));
  }
  if (doc.delivery_dispute) parts.push(disputeNote(doc.delivery_dispute, true));
  if (doc.certificate_number || doc.tracking_number) {
    const pickup = doc.delivery_method === "pickup";
    const shipping = {
      issued: pickup ? "待现场领取" : "等待签发机构交邮政寄出", dispatched: "已预约邮政上门揽收，揽收后寄出",
      delivered: "已签收", collected: "已现场领取", lost: "邮件遗失或损毁，等待补发",
      revoked: "已宣布作废，原证件不得再使用",
    }[doc.state];
    parts.push(h("div", { class: "section-title" }, pickup ? "证件与领取" : "证件与邮寄"), h("div", { class: "group numbers", id: "numbers" },
      doc.certificate_number ? numberRow("出生医学证明编号", doc.certificate_number, "certificate-number") : null,
      shipping ? info(pickup ? "领取状态" : "邮寄状态", shipping) : null,
      doc.tracking_number ? numberRow("EMS 邮件号", doc.tracking_number, "tracking-number") : null,
      elicenseEntry(doc)));
    if (pickup && doc.state === "issued") {
      const p = doc.pickup || {};
      parts.push(h("div", { class: "group", id: "pickup" },
        info("预约时间", p.appointment ? p.appointment.label : "未预约"),
        p.institution_name ? info("领取地点", p.institution_name) : null,
        info("委托他人领取", p.collector ? `${p.collector.name_masked}（已签署委托书）` : (p.letter_required ? "未委托（他人代领须先签署委托书）" : "未委托"))),
      h("div", { class: "row-actions" },
        button(p.appointment ? "改约时间" : "预约领取时间", () => pickupScreen(), "btn small"),
        button("委托他人领取", () => letterScreen(), "btn small"),
        button("领取须知", () => pickupGuideScreen(), "btn small primary")),
      h("p", { class: "hint" }, "领取时须出示本人身份证原件，并在现场用微信扫码刷脸认证。"));
    } else if (doc.tracking_number) {
      parts.push(h("p", { class: "hint" }, "可凭 EMS 邮件号在中国邮政速递物流官网或客服电话 11183 查询物流。"));
    }
  }
  if (fathers && elicenseEntry(doc)) {
    parts.push(h("div", { class: "section-title" }, "证件"), h("div", { class: "group numbers", id: "numbers" }, elicenseEntry(doc)),
      h("p", { class: "hint" }, "出生医学证明编号和孩子的信息见电子证照。"));
  }
  if (doc.delivery_record) {
    parts.push(h("div", { class: "section-title" }, "分娩信息"), h("div", { class: "group" },
      info("助产机构", doc.delivery_record.institution_name),
      info("母亲", doc.delivery_record.mother_name_masked),
      info("核对", { true: "已确认", false: "有异议，待医院更正" }[doc.delivery_record.confirmed]
        || { upheld: "医院答复无误，待您确认", corrected: "医院已更正，待您确认" }[doc.delivery_dispute?.status] || "未确认"),
      doc.delivery_method ? info("领取方式", doc.delivery_method === "ems" ? "邮政速递到家" : "现场领取") : null,
      doc.postage?.required ? info("邮寄费", doc.postage.paid ? "已支付" : "待支付") : null,
      info("电子签名", doc.signature_valid ? "有效" : "未签名或需重签")));
  }
  if (!fathers && (doc.bundle || (doc.bundle_offered && editable))) parts.push(...bundleEntry(doc, editable));
  parts.push(h("div", { class: "section-title" }, "办理进度"));
  parts.push(h("ul", { class: "steps", id: "steps" },
    doc.done_steps.map((s) => h("li", { class: "done" }, s.label)),
    doc.next_steps.map((s) => h("li", { class: "next" }, s.label,
      h("span", { class: "who" }, { [mine]: "待我办理", mother: "孩子母亲", issuer: "签发机构", hospital: "医院", courier: "邮政" }[s.by] || ""),
      (editable || AFTER_ISSUE.has(s.code)) && s.by === mine && SCREENS[s.code] ? button("去办理", () => SCREENS[s.code](), "btn small") : null))));
  parts.push(err);
  const btns = h("div", { class: "btns" });
  if (editable && parentNext.length) btns.append(button("继续办理", () => continueJourney().catch((e) => showError(err, e)), "btn primary"));
  btns.append(button("刷新", () => statusScreen()));
  if (!fathers && ["draft", "returned", "submitted"].includes(doc.state)) {
    const wd = button("撤回申请", async () => {
      err.replaceChildren();
      const sure = await confirmModal("撤回申请",
        "撤回后本申请即终止，不能再继续办理或恢复；医院的分娩记录将可用于重新发起申请。确定撤回吗？",
        "确定撤回", "暂不撤回");
      if (!sure) return;
      await busy(wd, async () => {
        try {
          await api("POST", `${base()}/withdraw`, { json: { reason: "申办人撤回" } });
        } catch (e) {
          // Refused (e.g. issued meanwhile): show why, over the application as it is now.
          return statusScreen(undefined, e);
        }
        toast("申请已撤回");
        await statusScreen();
      });
    }, "btn warn");
    btns.append(wd);
  }
  parts.push(btns);
  show("申请进度", listScreen, parts);
}

// ------------------------------------------------------------------ 3b. 出生一件事 (decision 0044)

// The status screen's part: the services she applied for with the certificate, or the way to apply.
function bundleEntry(doc, editable) {
  const b = doc.bundle;
  return [
    h("div", { class: "section-title" }, "出生一件事"),
    h("div", { class: "group", id: "bundle-entry" },
      b ? b.services.map(bundleService) : info("新生儿出生“一件事一次办”", "未申请"),
      editable ? h("div", { class: "row-actions" },
        button(b ? "查看或修改" : "了解并申请", () => bundleScreen(), `btn small${b ? "" : " primary"}`)) : null),
    b && b.services.some((s) => s.state === "refused")
      ? h("p", { class: "hint", id: "bundle-refused-hint" }, "未予办理的事项，请按原因联系办理部门。") : null,
  ];
}

// One service (decision 0046): its state in Chinese from the server, the department and when it last answered;
// a refusal with the department's reason; a result as the server masks it, each field under its server label.
const SERVICE_TAGS = { requested: "gray", sent: "blue", accepted: "orange", refused: "red", done: "" };
function bundleService(s) {
  const labels = s.result_labels || {};
  return h("div", { class: `cell bundle-service is-${s.state}`, "data-code": s.code, "data-state": s.state },
    h("div", { class: "top" },
      h("span", { class: "name" }, s.name),
      h("span", { class: `tag ${SERVICE_TAGS[s.state] ?? "gray"} state` }, s.state_label)),
    s.department || s.at
      ? h("div", { class: "meta" }, [s.department, s.at ? fmtTime(s.at) : null].filter(Boolean).join(" · ")) : null,
    s.state === "refused" && s.reason
      ? h("div", { class: "bundle-reason" }, h("b", {}, "未予办理原因："), s.reason) : null,
    s.result
      ? h("dl", { class: "bundle-result" }, Object.entries(s.result).map(([k, v]) =>
        h("div", { "data-result": k }, h("dt", {}, labels[k] || k), h("dd", {}, String(v ?? "—")))))
      : null);
}

const CONDITION_MARKS = { met: ["✓", "ok-mark"], unmet: ["✗", "bad-mark"], unknown: ["?", "unknown-mark"] };

function bundleControl(f) {
  const id = `bundle-${f.code}`;
  if (f.kind === "choice") {
    return h("select", { id, "data-code": f.code },
      h("option", { value: "" }, "请选择"),
      f.choices.map((c) => h("option", { value: c.value, selected: c.value === f.value }, c.label)));
  }
  const attrs = { id, "data-code": f.code, value: f.value || "", autocomplete: "off",
    placeholder: f.hint || (f.required ? "必填" : "选填") };
  if (f.kind === "mobile") Object.assign(attrs, { inputmode: "tel", maxlength: "11" });
  if (f.kind === "district_code") Object.assign(attrs, { inputmode: "numeric", maxlength: "12" });
  return f.kind === "address" ? h("textarea", { ...attrs, rows: "2" }, f.value || "") : h("input", attrs);
}

async function bundleScreen() {
  const title = "出生一件事";
  const back_ = () => statusScreen();
  show(title, back_, h("p", { class: "loading" }, "加载中…"));
  let b;
  try {
    b = await api("GET", `${base()}/bundle`);
  } catch (e) {
    return show(title, back_, problemBox(e));
  }
  if (!b.offered) return show(title, back_, h("div", { class: "note", id: "bundle-not-offered" }, b.message));
  const err = h("div");
  const chosen = new Set(b.requested ? b.requested.services : b.services.map((s) => s.code));
  const services = h("div", { class: "group", id: "bundle-services" },
    b.services.map((s) => h("label", { class: "cell check" },
      h("input", { type: "checkbox", value: s.code, checked: s.always || chosen.has(s.code), disabled: s.always }),
      h("span", { class: "k" }, s.name), h("span", { class: "v" }, s.department))));
  const married = h("input", { type: "checkbox", id: "bundle-married", checked: b.requested?.parents_married === true });
  const sections = new Map();
  for (const f of b.fields) {
    if (!sections.has(f.section)) sections.set(f.section, []);
    sections.get(f.section).push(f);
  }
  const groupOf = (f) => f.service || "always";
  const fieldGroups = [...sections].map(([section, fs]) => [
    h("div", { class: "section-title" }, section),
    h("div", { class: "group" }, fs.map((f) => h("div", { "data-service": groupOf(f) },
      (f.kind === "address" ? stackField : field)(f.label + (f.required ? "" : "（选填）"), bundleControl(f))))),
  ]);
  const derived = new Map();
  for (const d of b.derived) {
    if (!derived.has(d.section)) derived.set(d.section, []);
    derived.get(d.section).push(d);
  }
  const refresh = () => {
    const on = new Set([...services.querySelectorAll("input:checked")].map((i) => i.value));
    for (const row of document.querySelectorAll("[data-service]")) {
      const s = row.getAttribute("data-service");
      row.hidden = s !== "always" && !on.has(s);
    }
  };
  services.addEventListener("change", refresh);
  const save_ = button(b.requested ? "保存修改" : "申请一并办理", () => busy(save_, async () => {
    err.replaceChildren();
    const svc = [...services.querySelectorAll("input:checked")].map((i) => i.value);
    const fields = {};
    for (const el of document.querySelectorAll("[data-code]")) {
      if (el.closest("[data-service]")?.hidden) continue;
      const v = el.value.trim();
      if (v) fields[el.getAttribute("data-code")] = v;
    }
    try {
      await api("PUT", `${base()}/bundle`, { json: { services: svc, parents_married: married.checked, fields }, ifMatch: true });
      toast("已申请一件事一次办");
      await statusScreen();
    } catch (e) {
      showError(err, e, Object.fromEntries(b.fields.map((f) => [`fields.${f.code}`, f.label])));
    }
  }), "btn primary");
  const btns = h("div", { class: "btns" }, save_);
  if (b.requested) {
    const wd = button("不再一并办理", () => busy(wd, async () => {
      try {
        await api("DELETE", `${base()}/bundle`, { ifMatch: true });
        toast("已撤回一件事一次办");
        await statusScreen();
      } catch (e) {
        showError(err, e);
      }
    }), "btn warn");
    btns.append(wd);
  }
  show(title, back_,
    h("div", { class: "note", id: "bundle-intro" },
      h("b", {}, b.name),
      h("div", {}, `出生医学证明与以下事项一次申请、一套材料、一张表单，${b.working_days ? `${b.working_days}个工作日内办结，` : ""}不收费。`)),
    h("div", { class: "section-title" }, "一并办理的事项"),
    services,
    h("div", { class: "section-title" }, "办理条件"),
    h("ul", { class: "conditions", id: "bundle-conditions" },
      b.conditions.map((c) => h("li", { class: CONDITION_MARKS[c.state][1], "data-state": c.state },
        h("span", { class: "mark" }, CONDITION_MARKS[c.state][0]), c.label,
        c.state === "unmet" ? h("div", { class: "hint" }, c.message) : null))),
    h("label", { class: "cell check" }, married, h("span", {}, "新生儿为父母现行婚姻内生育（办理时须提供《结婚证》）")),
    h("div", { class: "section-title" }, "已从申请中带入（无需重复填写）"),
    h("div", { class: "group", id: "bundle-derived" },
      [...derived].flatMap(([, ds]) => ds.map((d) => info(d.label, d.value)))),
    fieldGroups.flat(),
    materialsPart(b),
    h("p", { class: "hint" }, b.signature_note),
    err,
    btns);
  refresh();
}

// The bundle's materials of 表1 (decision 0047): before she opts in, which service needs which; once she has,
// those her choices need, each uploaded or still missing, and the way to upload them.
function materialsPart(b) {
  const all = b.materials || [];
  if (!all.length) return null;
  const needed = all.filter((m) => m.needed);
  if (!b.requested || !needed.length) {
    const byService = new Map();
    for (const m of all) byService.set(m.service_name, [...(byService.get(m.service_name) || []), m.label]);
    return h("p", { class: "hint", id: "bundle-materials-hint" },
      [...byService].map(([name, labels]) => `申请${name}须拍照上传：${labels.join("、")}`).join("；"));
  }
  const missing = needed.filter((m) => !m.uploaded);
  return [
    h("div", { class: "section-title" }, "一套材料（拍照上传）"),
    h("div", { class: "group", id: "bundle-materials" },
      needed.map((m) => h("div", { "data-material": m.code }, info(m.label, m.uploaded ? "已上传 ✓" : "待上传"))),
      h("div", { class: "row-actions" },
        button(missing.length ? `上传材料（还差${missing.length}项）` : "重新上传", () => materialsScreen(),
          `btn small${missing.length ? " primary" : ""}`))),
  ];
}

// The materials her opt-in needs, as the ID photos are taken: camera or file, JPG or PNG, stored encrypted.
async function materialsScreen() {
  const title = "上传一件事材料";
  show(title, back, h("p", { class: "loading" }, "加载中…"));
  let b;
  try {
    b = await api("GET", `${base()}/bundle`);
  } catch (e) {
    return show(title, back, problemBox(e));
  }
  const needed = (b.materials || []).filter((m) => m.needed);
  if (!needed.length) return show(title, back, h("div", { class: "note" }, "您申请的事项无需上传其他材料"));
  const err = h("div");
  const slots = needed.map((m) => {
    const slot = photoSlot(m.code);
    if (m.uploaded) {
      slot.done = true;
      slot.el.querySelector(".pic").textContent = "✓ 已上传，点此替换";
      slot.state.textContent = "已上传 ✓";
      slot.state.className = "state done";
    }
    slot.input.addEventListener("change", () => err.replaceChildren());
    return slot;
  });
  const sample = button("使用示例照片", () => busy(sample, async () => {
    err.replaceChildren();
    for (const s of slots) if (!s.blob && !s.done) s.set(await examplePhoto(s.kind), "示例照片，待上传");
  }));
  const up = uploadButton(slots, err, "材料已上传");
  const missing = needed.filter((m) => !m.uploaded);
  show(title, back,
    h("div", { class: "section-title", id: "materials-title" }, missing.length
      ? `还需上传：${missing.map((m) => m.label).join("、")}`
      : "材料已齐全，如需替换可重新选择"),
    h("div", { class: "photo-grid", id: "materials-grid" }, slots.map((s) => s.el)),
    h("p", { class: "hint" }, "请将户口簿、结婚证原件平放拍摄，四角完整、字迹清晰。支持 JPG 或 PNG 格式、不超过 5MB 的图片，服务器去除 EXIF 信息后加密保存，仅推送给办理户口登记的公安派出所。"),
    err,
    h("div", { class: "btns" }, sample, up));
}

// ------------------------------------------------------------------ 3a. the electronic certificate (电子证照)

// The e-licence's state as a parent reads it. Anything else the API may say of it (an issuer's revocation, a
// state added later) is 已作废: the certificate is not in force, whatever the reason.
const ELICENSE_STATES = {
  none: ["未签发", "gray"],
  pending: ["待生成", "orange"],
  issued: ["已生成", ""],
};
const VOIDED = ["已作废", "red"];
const elicenseState = (state) => ELICENSE_STATES[state] || VOIDED;
// Why an e-licence was voided (the status list's reasons, decision 0039); an unknown code reads as plain 已作废.
const VOID_REASONS = {
  reissued: "证件遗失后已补发新证，原电子证照作废",
  replaced: "签发机构已换发新证（原证打印错误或毁损），原电子证照作废",
  superseded: "已换发或补发新证，原电子证照作废",
  amended: "户口登记后电子证照已更新为新版本，此旧版本停用（出生医学证明本身仍有效）",
  revoked: "签发机构已宣布该证件作废，其电子证照随之作废",
  revoked_by_issuer: "签发机构已宣布该证件作废，其电子证照随之作废",
};
// What the status view tells of a voided number: the last misprint replacement names its number.
function voidedBy(status, number) {
  return status?.replacement?.voided_certificate_number === number ? "replaced" : "superseded";
}
function voidReason(code) {
  return VOID_REASONS[code] || "不能再用于办理业务。如有疑问，请咨询签发机构";
}
// The data items of the credential (decision 0037), in the paper certificate's order, as a parent reads them.
const ITEM_LABELS = [
  ["newborn_name", "新生儿姓名"], ["newborn_sex", "性别"], ["born_at", "出生时间"], ["birthplace", "出生地点"],
  ["gestational_weeks", "出生孕周"], ["weight_g", "出生体重"], ["length_cm", "出生身长"],
  ["mother_name", "母亲姓名"], ["mother_nationality", "母亲国籍"], ["mother_ethnicity", "母亲民族"],
  ["mother_id_type", "母亲证件类型"], ["mother_id_number", "母亲证件号码"],
  ["father_name", "父亲姓名"], ["father_nationality", "父亲国籍"], ["father_ethnicity", "父亲民族"],
  ["father_id_type", "父亲证件类型"], ["father_id_number", "父亲证件号码"],
  // The police's registration of the newborn, where the province puts it into the record (decision 0048).
  ["registered_name", "登记姓名"], ["citizen_id_number", "公民身份号码"], ["household_place", "户籍地"],
];
// An SD-JWT (<jws>~<disclosure>~…~): its signed claims and what its disclosures reveal ([salt, name, value]).
function credentialContents(sdJwt) {
  const json = (part) => {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  };
  const [jws, ...disclosures] = sdJwt.split("~");
  const items = {};
  for (const d of disclosures.filter(Boolean)) {
    const [, name, value] = json(d);
    items[name] = value;
  }
  return { claims: json(jws.split(".")[1]), items };
}
const maskId = (v) => (v.length > 8 ? `${v.slice(0, 4)}${"*".repeat(v.length - 8)}${v.slice(-4)}` : v);
const chineseDate = (iso) => {
  const [y, m, d] = iso.slice(0, 10).split("-").map(Number);
  return `${y}年${m}月${d}日`;
};
// A moment's day in Beijing time, as a date is written to a parent: 2026年12月8日（星期二）.
function shanghaiDay(iso) {
  const d = new Date(new Date(iso).getTime() + 8 * 3600e3);
  return `${d.getUTCFullYear()}年${d.getUTCMonth() + 1}月${d.getUTCDate()}日（星期${"日一二三四五六"[d.getUTCDay()]}）`;
}
// A licence id breaks only after its dots (1.2.156.3005.2.C0134.…), never inside a part.
function licenceText(id) {
  return h("span", { class: "licence-id" }, id.split(".").flatMap((part, i, all) => [part + (i < all.length - 1 ? "." : ""), h("wbr")]));
}
// wx.setClipboardData: the Clipboard API, or a selected text area where the page may not use it.
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", { class: "offscreen", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) throw new Error("无法复制，请长按选择后手动复制");
  }
}
// The QR code as the API draws it (SVG, scaled to the box without blurring; the PNG where the SVG cannot be read).
async function qrImage(qr) {
  const headers = { Authorization: `Bearer ${S.token}` };
  const svgAnswer = await fetch(S.api + qr.svg, { headers });
  if (svgAnswer.ok) {
    const svg = new DOMParser().parseFromString(await svgAnswer.text(), "image/svg+xml").documentElement;
    if (svg.localName === "svg") {
      const [w, hgt] = [svg.getAttribute("width"), svg.getAttribute("height")];
      svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
      svg.removeAttribute("width");
      svg.removeAttribute("height");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", "电子证照二维码");
      svg.setAttribute("shape-rendering", "crispEdges");
      return document.importNode(svg, true);
    }
  }
  const png = await fetch(S.api + qr.png, { headers });
  if (!png.ok) throw new Error("二维码加载失败，请稍后重试");
  return h("img", { src: URL.createObjectURL(await png.blob()), alt: "电子证照二维码" });
}

async function elicenseScreen() {
  const title = "电子出生医学证明";
  show(title, back, h("p", { class: "loading" }, "加载中…"));
  let doc, cfg, status;
  try {
    [doc, cfg, status] = await Promise.all([api("GET", `${base()}/elicense`), config().catch(() => ({})), api("GET", base())]);
  } catch (e) {
    return show(title, back, problemBox(e), h("div", { class: "btns" }, button("返回申请进度", back)));
  }
  const [label, color] = elicenseState(doc.state);
  // Voided by the issuer: the API may say why in words (revocation.message, reason_label); else the code is all.
  const revocation = doc.revocation || {};
  const reason = revocation.reason ?? doc.reason ?? null;
  const father = doc.role === "father";
  const parts = [h("div", { class: "cert-head", id: "elicense-head" },
    h("div", { class: "cert-emblem", "aria-hidden": "true" }, "证"),
    h("div", { class: "cert-title" }, h("h2", {}, "出生医学证明"), h("div", {}, "电子证照")),
    h("span", { class: `tag big ${color}`, id: "elicense-state" }, label))];
  const err = h("div");

  if (doc.state === "none") {
    parts.push(h("div", { class: "note", id: "elicense-note" }, h("b", {}, "出生医学证明尚未签发"),
      h("div", {}, "签发机构打印纸质证件后，将生成电子证照，届时可在这里查看。")));
  } else if (doc.state === "pending") {
    parts.push(h("div", { class: "note", id: "elicense-note" },
      h("b", {}, doc.expected_at ? `预计 ${shanghaiDay(doc.expected_at)}前生成` : "电子证照生成中"),
      h("div", {}, doc.expected_at
        ? "按本省规定，电子证照在纸质证件打印后的几个工作日内生成。生成后可在这里查看和出示。"
        : "纸质证件已打印，电子证照稍后生成，请过一会儿再来查看。"),
      doc.certificate_number ? h("div", {}, `出生医学证明编号 ${doc.certificate_number}`) : null));
  } else if (doc.state !== "issued") {
    parts.push(h("div", { class: "error", id: "elicense-void" }, h("b", {}, "该电子证照已作废"),
      h("div", {}, revocation.message || voidReason(reason)),
      revocation.reason_label ? h("div", {}, `作废原因：${revocation.reason_label}`) : null,
      revocation.at ? h("div", {}, `作废时间：${fmtTime(revocation.at)}`) : null,
      reason && !revocation.reason_label && !VOID_REASONS[reason] ? h("span", { class: "hint" }, `原因代码：${reason}`) : null));
  }

  if (doc.credential) {
    const { claims, items } = credentialContents(doc.credential);
    if (doc.state === "issued" && doc.qr) {
      const box = h("div", { class: "qr-box", id: "elicense-qr" }, h("p", { class: "loading" }, "二维码加载中…"));
      parts.push(h("div", { class: "card qr-card" }, box,
        h("p", { class: "qr-tip" }, "办理业务时，请出示此二维码供工作人员扫码核验"),
        h("div", { class: "qr-id" }, "证照标识 ", licenceText(doc.licence_id))));
      qrImage(doc.qr)
        .then((img) => box.replaceChildren(img))
        .catch((e) => box.replaceChildren(problemBox(e)));
    }
    const nat = (c) => cfg.nationalities?.[c] || c;
    const eth = (c) => cfg.ethnic_groups?.[c] || c;
    const idType = (c) => cfg.id_types?.[c] || c;
    const shown = {
      newborn_sex: (v) => ({ F: "女", M: "男" })[v] || v,
      born_at: (v) => fmtTime(v),
      gestational_weeks: (v) => `${v} 周`,
      weight_g: (v) => `${v} 克`,
      length_cm: (v) => `${v} 厘米`,
      mother_nationality: nat, father_nationality: nat,
      mother_ethnicity: eth, father_ethnicity: eth,
      mother_id_type: idType, father_id_type: idType,
    };
    const rows = [numberRow("出生医学证明编号", claims.certificate_number, "elicense-number")];
    for (const [name, k] of ITEM_LABELS) {
      if (name in items) {
        const v = items[name];
        if (name.endsWith("_id_number")) {
          // Shown masked, as on any screen that may be seen over a shoulder; the full number on a tap.
          const value = h("span", { class: "v num", id: `item-${name}` }, maskId(v));
          const toggle = button("显示", () => {
            const masked = value.textContent !== v;
            value.textContent = masked ? v : maskId(v);
            toggle.textContent = masked ? "隐藏" : "显示";
          }, "link");
          rows.push(h("div", { class: "cell" }, h("span", { class: "k" }, k), value, toggle));
        } else {
          rows.push(h("div", { class: "cell" }, h("span", { class: "k" }, k),
            h("span", { class: "v", id: `item-${name}` }, (shown[name] || String)(v))));
        }
      } else if (father && name === "mother_id_number") {
        rows.push(h("div", { class: "cell" }, h("span", { class: "k" }, k),
          h("span", { class: "v muted", id: "item-mother_id_number" }, "仅母亲可见")));
      }
    }
    rows.push(
      info("签发机构", claims.issuer_name),
      info("签发日期", claims.issue_date ? chineseDate(claims.issue_date) : "—"),
      doc.issued_at ? info("电子证照生成", fmtTime(doc.issued_at)) : null);
    parts.push(h("div", { class: "section-title" }, "证照信息"), h("div", { class: "group numbers", id: "elicense-items" }, rows));
    if (doc.registration) {
      parts.push(h("p", { class: "hint", id: "elicense-registration" }, doc.registration.in_elicense
        ? `户口登记信息（${doc.registration.items.map((i) => i.label).join("、")}）已写入电子证照，当前为第 ${doc.licence_version} 版。`
        : "户口已登记，电子证照正在更新，稍后可查看新版本。"));
    }
    if (father) parts.push(h("p", { class: "hint" }, "您看到的是父亲持有的电子证照：不含孩子母亲的证件号码，签名同样有效。"));
  }

  if (doc.state === "issued" && doc.credential) {
    const copyBtn = button("复制电子证照", () => busy(copyBtn, async () => {
      try {
        await copyText(doc.credential);
        toast("电子证照已复制");
      } catch (e) {
        showError(err, e);
      }
    }), "btn primary");
    const shareBtn = button("分享核验链接", () => busy(shareBtn, async () => {
      try {
        if (navigator.share) {
          await navigator.share({ title: "出生医学证明电子证照核验", url: doc.verify_url });
        } else {
          await copyText(doc.verify_url);
          toast("核验链接已复制");
        }
      } catch (e) {
        if (e?.name !== "AbortError") showError(err, e);
      }
    }));
    parts.push(err, h("div", { class: "btns row" }, copyBtn, shareBtn),
      h("div", { class: "note", id: "elicense-verify" },
        h("b", {}, "有关部门如何核验"),
        h("ol", { class: "verify-steps" },
          h("li", {}, "工作人员用扫码枪或手机扫描上方二维码；"),
          h("li", {}, "打开“出生医学证明电子证照核验”页面，页面核对签名和是否作废，显示“有效”即为真实有效；"),
          h("li", {}, "也可在核验页面输入证件编号、新生儿姓名和出生日期，核验纸质证件。")),
        h("div", { class: "verify-url" }, "核验页面 ", h("span", { class: "url" }, doc.verify_url.split("#")[0])),
        h("div", { class: "hint" }, "复制的电子证照可交给需要电子文件的部门，由其在核验页面或接口上校验签名。")));
  }

  if (doc.superseded?.length) {
    parts.push(h("div", { class: "section-title" },
      doc.superseded.some((s) => s.state === "amended") ? "已作废的电子证照及旧版本" : "已作废的电子证照"),
      h("div", { class: "group", id: "elicense-superseded" }, doc.superseded.map((s) =>
        h("div", { class: s.state === "amended" ? "cell stack" : "cell stack voided" },
          h("div", { class: "top" }, h("span", { class: "num" }, s.certificate_number),
            h("span", { class: "tag red" }, s.state === "amended" ? "旧版本" : "已作废")),
          h("div", { class: "meta" }, licenceText(s.licence_id)),
          h("div", { class: "meta" }, `生成于 ${fmtTime(s.issued_at)}`),
          h("div", { class: "meta" }, voidReason(s.state === "amended" ? "amended" : s.reason ?? voidedBy(status, s.certificate_number)))))));
  }
  parts.push(h("div", { class: "btns" }, button("刷新", elicenseScreen), button("返回申请进度", back)));
  show(title, back, parts);
}
// The status screen's line for the e-licence: its state, and the way to it.
function elicenseEntry(doc) {
  const e = doc.elicense;
  if (!e || e.state === "none") return null;
  const [label, color] = elicenseState(e.state);
  return h("div", { class: "cell link-cell", id: "elicense-entry", role: "button", tabindex: "0", onclick: () => elicenseScreen() },
    h("span", { class: "k" }, "电子证照"),
    h("span", { class: "v" }, h("span", { class: `tag ${color}` }, label)),
    h("span", { class: "chevron", "aria-hidden": "true" }, "›"));
}

// ------------------------------------------------------------------ 预约取证 and the 授权委托书 (after issue)

async function pickupScreen() {
  show("预约领取", back, h("p", { class: "loading" }, "加载中…"));
  let offered;
  try {
    offered = await api("GET", `${base()}/pickup-slots`);
  } catch (e) {
    return show("预约领取", back, problemBox(e), h("div", { class: "btns" }, button("返回申请进度", back)));
  }
  const open = offered.slots.filter((x) => x.remaining > 0);
  const root = h("div");
  const err = h("div");
  const choice = radios("slot", open.map((x) => [`${x.date} ${x.start}`, `${x.label}（余 ${x.remaining}）`]), open[0] ? `${open[0].date} ${open[0].start}` : "");
  const go = button("确认预约", () => busy(go, async () => {
    try {
      const picked = radioValue(root, "slot");
      if (!picked) throw new Error("请选择领取时间");
      const [date, start] = picked.split(" ");
      await api("PUT", `${base()}/pickup-appointment`, { json: { date, start } });
      toast("预约成功");
      await statusScreen();
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  choice.style.flexDirection = "column";
  choice.style.alignItems = "flex-start";
  root.append(...[
    h("div", { class: "section-title" }, `到${offered.institution_name || "签发机构"}领取的时间`),
    offered.appointment ? h("p", { class: "hint", id: "current-appointment" }, `当前预约：${offered.appointment.label}`) : null,
    open.length ? h("div", { class: "group" }, h("div", { class: "cell" }, choice)) : h("p", { class: "hint" }, "近期暂无可预约的时段，请稍后再试或咨询签发机构。"),
    err, h("div", { class: "btns" }, go)].filter(Boolean));
  show("预约领取", back, root);
}

async function letterScreen() {
  const root = h("div");
  const err = h("div");
  const name = h("input", { id: "collector-name", autocomplete: "off" });
  const idNumber = h("input", { id: "collector-id", maxlength: "18", autocomplete: "off" });
  const paperSlot = h("div");
  const next = button("生成委托书", () => busy(next, async () => {
    try {
      const who = { collector_name: name.value.trim(), collector_id_number: idNumber.value.trim().toUpperCase() };
      const answer = await api("POST", `${base()}/collector-letter/preview`, { json: who });
      const l = answer.letter;
      const canvas = h("canvas", { id: "sigpad", "aria-label": "签名板" });
      const pad = signaturePad(canvas);
      const sign = button("签署委托书", () => busy(sign, async () => {
        try {
          if (!pad.strokes()) throw new Error("请先在签名框内手写签名");
          const form = new FormData();
          for (const [k, v] of Object.entries(who)) form.append(k, v);
          form.append("letter_sha256", answer.sha256);
          form.append("file", await pad.png(), "signature.png");
          await api("POST", `${base()}/collector-letter`, { form });
          toast("委托书已签署");
          await statusScreen();
        } catch (e) {
          showError(err, e);
        }
      }), "btn primary");
      paperSlot.replaceChildren(
        h("div", { class: "paper", id: "letter-paper" },
          h("h3", {}, l.title),
          formTable([["委托人（母亲）", l.principal.name], ["受托人", l.agent.name], ["受托人证件号码", l.agent.id_number], ["新生儿", l.newborn.name], ["签发机构", l.institution_name]]),
          h("p", { class: "notice" }, l.text)),
        h("div", { class: "sha", id: "letter-sha" }, answer.sha256),
        h("div", { class: "sigpad-wrap" }, h("div", { class: "head" }, h("span", {}, "委托人（母亲）手写签名"), button("清除", () => pad.clear(), "link")), canvas),
        h("div", { class: "btns" }, sign));
      pad.fit();
    } catch (e) {
      showError(err, e);
    }
  }), "btn");
  root.append(
    h("div", { class: "section-title" }, "受托人（代为领取的人）"),
    h("div", { class: "group" }, field("姓名", name), field("身份证号码", idNumber)),
    h("p", { class: "hint" }, "受托人领取时须出示本人身份证原件，并在现场刷脸认证。"),
    err, h("div", { class: "btns" }, next), paperSlot);
  show("委托他人领取", back, root);
}

async function pickupGuideScreen() {
  show("领取须知", back, h("p", { class: "loading" }, "加载中…"));
  let doc;
  let offered;
  try {
    doc = await loadStatus();
    offered = await api("GET", `${base()}/pickup-slots`);
  } catch (e) {
    return show("领取须知", back, problemBox(e), h("div", { class: "btns" }, button("返回申请进度", back)));
  }
  const p = doc.pickup || {};
  const c = offered.counter;
  show("领取须知", back,
    h("div", { class: "hero", id: "pickup-guide" }, h("h2", {}, "现场领取出生医学证明"),
      h("p", {}, "可截图或转发本页给代为领取的人。领取时在窗口出示证件，用本人微信扫工作人员出示的二维码刷脸，核对无误后当场领取。")),
    h("div", { class: "section-title" }, "预约时间"),
    h("div", { class: "group", id: "guide-appointment" },
      info("预约时段", p.appointment ? p.appointment.label : "尚未预约（请先预约领取时间）")),
    h("div", { class: "section-title" }, "领取地点"),
    h("div", { class: "group counter", id: "guide-counter" },
      info("签发机构", c?.institution_name || offered.institution_name || "签发机构"),
      info("地址", c?.address || "请向该机构咨询"),
      info("咨询电话", c?.phone || "请向该机构咨询"),
      info("办公时间", c?.hours || "请向该机构咨询")),
    h("div", { class: "section-title" }, "谁可以领取"),
    h("ul", { class: "guide-list", id: "guide-who" }, (p.who_may_collect || []).map((x) => h("li", {}, x))),
    h("div", { class: "section-title" }, "请携带"),
    h("ol", { class: "guide-list", id: "guide-bring" }, (p.bring || []).map((x) => h("li", {}, x))),
    p.appointment ? null : h("div", { class: "btns" }, button("预约领取时间", () => pickupScreen(), "btn primary")),
    h("div", { class: "btns" }, button("返回申请进度", back)));
}

function numberRow(k, v, id) {
  return h("div", { class: "cell" }, h("span", { class: "k" }, k), h("span", { class: "v num", id }, v));
}
// wx.showModal: a title, the consequence, and two buttons; resolves true for the confirming one.
function confirmModal(title, text, yes, no = "取消") {
  return new Promise((resolve) => {
    const close = (v) => { mask.remove(); resolve(v); };
    const titleId = nextId("modal");
    const mask = h("div", { class: "modal-mask" },
      h("div", { class: "modal", role: "alertdialog", "aria-modal": "true", "aria-labelledby": titleId },
        h("div", { class: "modal-title", id: titleId }, title),
        h("div", { class: "modal-text" }, text),
        h("div", { class: "modal-btns" }, button(no, () => close(false), "modal-btn"), button(yes, () => close(true), "modal-btn warn"))));
    document.getElementById("phone").append(mask);
    mask.querySelector(".modal-btn").focus();
  });
}

// ------------------------------------------------------------------ 4. face verification (wx.requestFacialVerify)

// `problem`: how the last attempt ended (a provincial app's check, answered after its redirect back).
function faceScreen(role, problem) {
  const who = role === "mother" ? "母亲" : "父亲";
  const preset = role === "mother" ? S.demo : S.father;
  const name = h("input", { id: `${role}-name`, value: preset.name || "", autocomplete: "off" });
  const idn = h("input", { id: `${role}-id`, value: preset.id || "", autocomplete: "off", spellcheck: "false", maxlength: "18" });
  const err = h("div");
  const refused = (e) => {
    showError(err, e);
    // Sent to the counter (the day's last allowed failure: the application is closed):
    // no further attempt here; the status view keeps where to go.
    if (e instanceof Problem && e.code === "face_verification_failed") {
      go.replaceWith(button("查看申请进度", () => statusScreen(), "btn"));
    }
  };
  const go = button(S.via ? `去${S.via.label}刷脸认证` : "开始刷脸认证", () =>
    busy(go, async () => {
      err.replaceChildren();
      try {
        const person = { name: name.value.trim(), id: idn.value.trim().toUpperCase() };
        const started = await api("POST", `${base()}/face-verifications`, {
          json: { role, name: person.name, id_number: person.id },
        });
        if (role === "mother") S.demo = { ...S.demo, ...person };
        else S.father = person;
        save();
        if (S.via) return await appFaceCheck(role, person, started);
        const verdict = await simulatedFaceCheck(person);
        if (verdict === null) return;
        await fake("/_fake/faces", { cert_no: person.id, verify_ret: verdict });
        await fake("/_fake/face/verify", { verify_id: started.verify_id, openid: S.openid });
        await api("POST", `${base()}/face-verifications/${started.out_seq_no}/result`);
        toast(`${who}刷脸认证通过`);
        await continueJourney();
      } catch (e) {
        refused(e);
      }
    }), "btn primary");
  show(`${who}刷脸认证`, back,
    h("div", { class: "hero" }, h("h2", {}, `${who}刷脸认证`),
      h("p", {}, role === "mother"
        ? "须新生儿母亲本人刷脸。身份须与医院分娩记录上的母亲一致（防冒领）。"
        : "父亲本人刷脸认证，与登记的父亲身份一致。")),
    S.via ? h("div", { class: "note", id: "face-in-app" },
      h("b", {}, `刷脸认证在${S.via.label}中进行`),
      h("div", {}, `点击下方按钮后，页面将跳转到${S.via.label}，由${S.via.label}核验是否为您本人（与您的${S.via.label}实名账号一致）；完成后自动回到这里继续办理。本服务不保存您的人脸照片。`)) : null,
    h("div", { class: "section-title" }, "身份信息（与身份证一致）"),
    h("div", { class: "group" }, field("姓名", name), field("身份证号", idn)),
    h("p", { class: "hint" }, S.via
      ? `模拟器：跳转前由下一屏的按钮决定${S.via.label}刷脸的结果（模拟平台的 /_fake/oidc/${S.via.channel}/faces）。`
      : "点击后将调用 wx.requestFacialVerify；在模拟器中由下一屏的按钮决定刷脸结果。"),
    err,
    h("div", { class: "btns" }, go));
  if (problem) refused(problem);
}
// The WeChat face-check screen; resolves with the verify_ret to script (10000 pass) or null (cancelled).
function simulatedFaceCheck(person) {
  return new Promise((resolve) => {
    const close = (v) => { overlay.remove(); resolve(v); };
    const overlay = h("div", { class: "face-screen", role: "dialog", "aria-label": "微信刷脸认证（模拟）" },
      h("div", { class: "bar" }, "微信 · 人脸核身（模拟）"),
      faceRing(),
      h("div", { class: "tip" }, "请正对手机，保持光线充足"),
      h("div", { class: "sub" }, `正在核验 ${person.name}（${person.id.slice(0, 4)}**********${person.id.slice(-4)}）。模拟器：选择本次刷脸的结果。`),
      h("div", { class: "btns" },
        button("通过", () => close(10000), "btn primary"),
        button("人脸不符（10004）", () => close(10004), "btn warn"),
        button("身份证不符（10003）", () => close(10003), "btn warn"),
        button("取消", () => close(null))));
    document.getElementById("phone").append(overlay);
  });
}

// The ring a face-check screen frames the face in.
function faceRing() {
  const face = new DOMParser().parseFromString(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><circle cx="50" cy="38" r="20" fill="#c9d3db"/><path d="M14 96c4-22 20-32 36-32s32 10 36 32z" fill="#c9d3db"/></svg>',
    "image/svg+xml").documentElement;
  return h("div", { class: "face-ring" }, document.importNode(face, true));
}

// ------------------------------------------------------------------ 4a. provincial apps (粤省事 …): login, face check, messages

// The provincial apps this service is configured for (/h5/channels.json: from channels.json, not written here).
async function appChannels() {
  if (!S.channels) {
    try {
      S.channels = (await (await fetch("/h5/channels.json")).json()).channels || [];
    } catch {
      S.channels = []; // WeChat alone
    }
  }
  return S.channels;
}
// Entering from the app: it hands over a signed ticket for its real-name account (played by the fake's control
// API), which the service checks (POST /api/v1/auth/channels/<channel>).
async function appLogin(via, sub, holder) {
  if (!sub) throw new Error("请填写账号标识");
  if (!holder.name || !/^\d{17}[\dX]$/.test(holder.id)) {
    throw new Error(`请填写${via.label}实名账号的姓名和 18 位身份证号`);
  }
  const { ticket } = await fake(`/_fake/oidc/${via.channel}/tickets`, { openid: sub, name: holder.name, id_number: holder.id });
  return api("POST", `/api/v1/auth/channels/${via.channel}`, { json: { ticket }, token: null });
}
// The app's face check: the simulator scripts its outcome, then the page goes to the app's authorization URL;
// the app redirects to /h5/face-return, which brings the redirect back here (finishAppFace).
async function appFaceCheck(role, person, started) {
  const outcome = await simulatedAppFaceCheck(person);
  if (outcome === null) return;
  await fake(`/_fake/oidc/${S.via.channel}/faces`, { openid: S.openid, outcome });
  sessionStorage.setItem("h5.face", JSON.stringify({
    appId: S.appId, outSeqNo: started.out_seq_no, role, platform: S.platform,
  }));
  location.assign(started.authorization_url);
}
// The app's own face-check screen, as the simulator plays it; resolves with the fake's outcome or null.
function simulatedAppFaceCheck(person) {
  return new Promise((resolve) => {
    const close = (v) => { overlay.remove(); resolve(v); };
    const overlay = h("div", { class: "face-screen app", role: "dialog", "aria-label": `${S.via.label}刷脸认证（模拟）` },
      h("div", { class: "bar" }, `${S.via.label} · 人脸识别（模拟）`),
      faceRing(),
      h("div", { class: "tip" }, `${S.via.label}将核验 ${person.name} 本人`),
      h("div", { class: "sub" }, `模拟器：选择本次在${S.via.label}中刷脸的结果，然后页面跳转到${S.via.label}的认证地址，再自动返回。`),
      h("div", { class: "btns" },
        button("本人刷脸通过", () => close("pass"), "btn primary"),
        button("刷脸未通过", () => close("fail"), "btn warn"),
        button("他人代刷", () => close("wrong_person"), "btn warn"),
        button("取消", () => close(null))));
    document.getElementById("phone").append(overlay);
  });
}
// /h5/face-return?code=&state= (or ?error=&state=): the app redirected here. Keep its answer for the simulator
// and go back to it, with the fake platform it was using (this page's address does not name it).
function faceReturned() {
  const pending = JSON.parse(sessionStorage.getItem("h5.face") || "null");
  if (!pending) {
    return show("刷脸认证", null,
      h("div", { class: "error", role: "alert" }, h("b", {}, "没有进行中的刷脸认证"), "请回到申请页面重新发起刷脸认证。"),
      h("div", { class: "btns" }, button("返回首页", () => location.replace("/h5/"), "btn primary")));
  }
  const answer = Object.fromEntries(["code", "state", "error"].filter((k) => params.get(k)).map((k) => [k, params.get(k)]));
  sessionStorage.setItem("h5.faceReturn", JSON.stringify(answer));
  show("刷脸认证", null, h("p", { class: "loading" }, "正在返回，确认刷脸结果…"));
  location.replace(`/h5/?platform=${encodeURIComponent(pending.platform)}`);
}
// Back from the app: its redirect goes to the same endpoint WeChat's verdict does, and the journey goes on.
async function finishAppFace(answer) {
  const pending = JSON.parse(sessionStorage.getItem("h5.face") || "null");
  sessionStorage.removeItem("h5.face");
  sessionStorage.removeItem("h5.faceReturn");
  if (!pending) return listScreen();
  S.appId = pending.appId;
  S.version = null;
  save();
  const who = pending.role === "mother" ? "母亲" : "父亲";
  show(`${who}刷脸认证`, back, h("p", { class: "loading" }, "正在确认刷脸结果…"));
  try {
    await api("POST", `${base()}/face-verifications/${pending.outSeqNo}/result`, { json: answer });
  } catch (e) {
    if (e instanceof Problem && e.status === 401) return loginScreen();
    return faceScreen(pending.role, e);
  }
  toast(`${who}刷脸认证通过`);
  await continueJourney();
}

// The messages she received: WeChat's subscribe messages, or her app's pushes (as the fake platform took them).
async function messagesScreen() {
  const where = S.via ? `${S.via.label}消息` : "微信服务通知";
  show(where, listScreen, h("p", { class: "loading" }, "加载中…"));
  let items;
  try {
    const touser = encodeURIComponent(S.openid || "");
    items = S.via
      ? (await fake(`/_fake/oidc/${S.via.channel}/pushes?touser=${touser}`)).pushes
      : (await fake(`/_fake/messages?touser=${touser}`)).messages;
  } catch (e) {
    return show(where, listScreen, problemBox(e), h("div", { class: "btns" }, button("返回", listScreen)));
  }
  // A template's values in its keys' order: the short status word (phrase…) as the headline, its time beside it.
  const card = (m) => {
    const entries = Object.entries(m.data || {}).map(([k, v]) => [k, v && typeof v === "object" ? v.value : v]);
    const headline = entries.find(([k]) => k.startsWith("phrase"));
    const when = entries.find(([k]) => k.startsWith("time"));
    return h("div", { class: "card message" },
      h("div", { class: "top" }, h("b", {}, headline ? headline[1] : "出生医学证明申领"),
        h("span", { class: "meta" }, when ? when[1] : fmtTime(new Date(m.received_at * 1000).toISOString()))),
      h("ul", {}, entries.filter((e) => e !== headline && e !== when).map(([, v]) => h("li", {}, v))));
  };
  show(where, listScreen,
    h("div", { class: "section-title" }, S.via ? `${S.via.label}推送给您的消息` : "您订阅的微信服务通知"),
    h("div", { id: "messages" }, items.length
      ? items.slice().reverse().map(card)
      : h("div", { class: "empty" }, "还没有消息。审核结果、证件签发和邮寄进度都会通知您。")),
    h("div", { class: "btns" }, button("刷新", messagesScreen), button("返回我的申请", listScreen)));
}

// ------------------------------------------------------------------ 5. the hospital's delivery record

async function recordScreen() {
  show("核对分娩信息", back, h("p", { class: "loading" }, "加载中…"));
  const err = h("div");
  let rec;
  let doc;
  try {
    rec = (await api("GET", `${base()}/delivery-record`)).delivery_record;
    doc = await loadStatus();
  } catch (e) {
    // No record of hers yet (the hospital has not entered it): she can ask the hospital to.
    if (e instanceof Problem && e.code === "not_delivery_mother") {
      return missingRecordScreen();
    }
    return show("核对分娩信息", back, problemBox(e), h("div", { class: "btns" }, button("返回申请进度", back)));
  }
  const n = rec.newborn;
  const reason = h("textarea", { id: "dispute-reason", rows: "3", placeholder: "例如：出生时间应为 10:25" });
  const disputeErr = h("div");
  const sendDispute = button("提交异议", () => busy(sendDispute, async () => {
    disputeErr.replaceChildren();
    try {
      await api("POST", `${base()}/delivery-record/dispute`, { json: { reason: reason.value.trim() } });
      toast("已提交异议，等待医院核实");
      await statusScreen();
    } catch (e) {
      showError(disputeErr, e, { reason: "异议原因" });
    }
  }), "btn warn");
  const disputeBox = h("div", { hidden: true, id: "dispute-box" },
    h("div", { class: "section-title" }, "对分娩信息有异议"),
    h("div", { class: "group" }, stackField("异议原因", reason)),
    h("p", { class: "hint" }, "请写明哪一项不对、应当是什么。提交后由助产机构核实更正；更正后请重新核对确认。"),
    disputeErr,
    h("div", { class: "btns" }, sendDispute));
  const ok = button("确认无误", () => busy(ok, async () => {
    try {
      await api("POST", `${base()}/delivery-record/confirm`);
      toast("已确认分娩信息");
      await continueJourney();
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  const bp = rec.birthplace;
  show("核对分娩信息", back,
    h("div", { class: "section-title" }, "医院录入的分娩信息（已脱敏）"),
    h("div", { class: "group" },
      info("助产机构", rec.institution_name),
      info("住院病历号", rec.inpatient_no),
      info("母亲姓名", rec.mother_name),
      info("母亲身份证号", rec.mother_id_number),
      info("新生儿性别", { F: "女", M: "男" }[n.sex] || n.sex),
      info("出生时间", fmtTime(n.born_at)),
      info("出生孕周", `${n.gestational_weeks} 周`),
      info("出生体重", `${n.weight_g} 克`),
      info("出生身长", `${n.length_cm} 厘米`),
      info("出生地点", `${bp.province}${bp.city}${bp.county}`),
      info("接生人员", rec.attendant),
      info("录入日期", rec.entered_on)),
    rec.disputed ? h("div", { class: "error", id: "dispute-note" }, h("b", {}, "已提交异议，等待医院核实更正"), `异议原因：${rec.dispute_reason || "—"}`) : null,
    !rec.disputed && doc.delivery_dispute ? disputeNote(doc.delivery_dispute, false) : null,
    err,
    rec.confirmed
      ? h("div", { class: "btns" }, h("div", { class: "ok" }, "已确认分娩信息"), button("下一步", () => continueJourney(), "btn primary"))
      : h("div", { class: "btns row" }, button("有异议", () => { disputeBox.hidden = false; reason.focus(); }, "btn warn"), ok),
    disputeBox);
}

// The hospital's answer to her dispute (status view's delivery_dispute): upheld with its reason, or corrected.
function disputeNote(d, withAction) {
  if (d.status === "open") {
    return h("div", { class: "note", id: "dispute-answer" }, h("b", {}, d.label),
      d.disputed_at ? h("div", {}, `提出时间 ${fmtTime(d.disputed_at)}`) : null,
      h("div", {}, "医院核实后会答复：更正分娩信息，或说明原记录无误。答复后我们会通过微信服务通知告诉您。"));
  }
  return h("div", { class: d.status === "upheld" ? "note" : "ok", id: "dispute-answer" },
    h("b", {}, d.status === "upheld" ? "医院已答复：原分娩信息无误" : "医院已答复：已更正分娩信息"),
    h("div", {}, `医院答复：${d.answer || "—"}`),
    d.answered_at ? h("div", {}, `答复时间 ${fmtTime(d.answered_at)}`) : null,
    h("div", {}, d.status === "upheld"
      ? "请再次核对分娩信息：无误请确认；如仍有异议，可再次提出，或到助产机构咨询。"
      : "请核对更正后的分娩信息，无误后确认。"),
    withAction ? h("div", { class: "row-actions" }, button("去核对", () => recordScreen(), "btn small primary")) : null);
}

// No delivery record of hers yet: she names the hospital and the day of the birth, and the hospital is asked to
// enter it (its worklist shows it, overdue past the province's limit). Then she waits; the status view says so.
async function missingRecordScreen() {
  show("分娩信息未录入", back, h("p", { class: "loading" }, "加载中…"));
  let doc;
  let items = [];
  try {
    doc = await loadStatus();
    ({ items } = await api("GET", `/api/v1/institutions?province=${doc.province}`, { token: null }));
  } catch (e) {
    return show("分娩信息未录入", back, problemBox(e), h("div", { class: "btns" }, button("返回申请进度", back)));
  }
  const asked = doc.delivery_record_requested;
  const hospital = h("select", { id: "missing-institution" },
    h("option", { value: "" }, "请选择"),
    ...items.map((i) => h("option", { value: i.code }, i.name)));
  const today = new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10);
  const bornOn = h("input", { id: "born-on", type: "date", max: today });
  const err = h("div");
  for (const control of [hospital, bornOn]) control.addEventListener("change", () => err.replaceChildren());
  const go = button(asked ? "重新提醒医院录入" : "提醒医院录入", () => busy(go, async () => {
    err.replaceChildren();
    try {
      if (!hospital.value) throw new Error("请选择分娩的医疗机构");
      if (!bornOn.value) throw new Error("请选择分娩日期");
      await api("POST", `${base()}/delivery-record/missing`, { json: { institution: hospital.value, born_on: bornOn.value } });
      toast("已提醒医院录入");
      await statusScreen();
    } catch (e) {
      // Entered meanwhile: look at it now.
      if (e instanceof Problem && e.code === "delivery_record_entered") {
        toast("医院已录入，请核对");
        return recordScreen();
      }
      showError(err, e, { institution: "分娩医院", born_on: "分娩日期" });
    }
  }), "btn primary");
  show("分娩信息未录入", back,
    h("div", { class: "note", id: "record-missing" },
      h("b", {}, "暂未查到您的分娩信息"),
      h("div", {}, "出生医学证明须依据助产机构录入的分娩信息办理。医院可能尚未录入；请选择分娩的医院和日期，我们会提醒医院尽快录入。")),
    asked ? h("p", { class: "hint", id: "already-asked" }, `已于 ${fmtTime(asked.reported_at)} 提醒${asked.institution_name}录入。如选错医院或日期，可重新提交。`) : null,
    h("div", { class: "section-title" }, "分娩情况"),
    h("div", { class: "group" }, field("分娩医院", hospital), field("分娩日期", bornOn)),
    h("p", { class: "hint" }, "在医疗机构外分娩的，不能网上申领，请到签发机构现场办理。"),
    err,
    h("div", { class: "btns" }, go, button("返回申请进度", back)));
}

// ------------------------------------------------------------------ 6. details (names, ethnicity, address; police prefill)

function ethnicSelect(id, groups, value) {
  // In GB 3304 code order (汉族 "01" first): a JS object lists integer-like keys ("10" 朝鲜族…) before "01".
  return h("select", { id },
    Object.entries(groups).sort(([a], [b]) => a.localeCompare(b)).map(([code, label]) => h("option", { value: code, selected: code === (value || "01") }, label)));
}
async function detailsScreen() {
  show("填写信息", back, h("p", { class: "loading" }, "加载中…"));
  const err = h("div");
  let cfg, prefill, doc;
  try {
    [cfg, prefill, doc] = await Promise.all([config(), api("GET", `${base()}/details/prefill`), loadStatus()]);
  } catch (e) {
    return show("填写信息", back, problemBox(e));
  }
  const groups = cfg.ethnic_groups;
  const both = twoParents(doc);
  const reg = prefill.mother;
  const newborn = h("input", { id: "newborn-name", placeholder: "与户口登记一致", autocomplete: "off" });
  const mEth = ethnicSelect("mother-ethnicity", groups, reg?.ethnicity);
  const mAddr = h("textarea", { id: "mother-address", rows: "2", placeholder: "身份证或户口簿上的住址" }, reg?.address || "");
  if (reg) { mEth.disabled = true; mAddr.readOnly = true; }
  const fName = h("input", { id: "father-name", value: S.father.name, autocomplete: "off" });
  const fId = h("input", { id: "father-id", value: S.father.id, maxlength: "18", autocomplete: "off", spellcheck: "false" });
  const fEth = ethnicSelect("father-ethnicity", groups, prefill.father?.ethnicity);
  const fAddr = h("textarea", { id: "father-address", rows: "2" }, prefill.father?.address || "");
  const same = button("同母亲住址", () => { fAddr.value = mAddr.value; }, "btn small");
  const save_ = button("保存并继续", () => busy(save_, async () => {
    try {
      const mother = { nationality: "CHN", ethnicity: mEth.value, address: mAddr.value.trim() };
      if (reg) Object.assign(mother, reg);
      const body = { newborn_name: newborn.value.trim(), mother, father: null };
      if (both) {
        body.father = {
          name: fName.value.trim(), id_number: fId.value.trim().toUpperCase(), nationality: "CHN",
          ethnicity: fEth.value, address: fAddr.value.trim(),
        };
        S.father = { name: body.father.name, id: body.father.id_number };
        save();
      }
      await api("PUT", `${base()}/details`, { json: body, ifMatch: true });
      toast("已保存");
      await continueJourney();
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  const src = reg ? h("span", { class: "badge-src" }, "公安信息") : null;
  show("填写信息", back,
    h("div", { class: "section-title" }, "新生儿"),
    h("div", { class: "group" }, field("新生儿姓名", newborn)),
    h("div", { class: "section-title" }, "母亲信息", src),
    h("div", { class: "group" },
      info("姓名", S.demo.name || "（刷脸认证的姓名）"),
      info("国籍", "中国"),
      field("民族", mEth),
      stackField("住址", mAddr)),
    reg ? h("p", { class: "hint" }, "民族和住址取自公安部门人口信息（共享），请核对；如有出入请到派出所更正。") : h("p", { class: "hint" }, "请按身份证或户口簿填写。"),
    both ? [
      h("div", { class: "section-title" }, "父亲信息"),
      h("div", { class: "group" },
        field("姓名", fName),
        field("身份证号", fId),
        info("国籍", "中国"),
        field("民族", fEth),
        stackField("住址", fAddr)),
      h("div", { class: "row-actions", style: null }, same),
    ] : h("p", { class: "hint" }, "单母亲申请：出生医学证明上不填写父亲信息。"),
    err,
    h("div", { class: "btns" }, save_));
}

// ------------------------------------------------------------------ 7. father: face check, or (Shandong) handheld-ID photo

async function fatherScreen() {
  const doc = S.app || (await loadStatus());
  // A provincial app checks the face of its logged-in account: the father verifies on his own (an invitation).
  const hisFace = () => (S.via ? inviteFatherScreen() : faceScreen("father"));
  if (doc.province !== "SD") return hisFace();
  const err = h("div");
  const slot = photoSlot("father_handheld_id");
  const up = button("上传手持身份证照片", () => busy(up, async () => {
    try {
      if (!slot.blob) slot.blob = await examplePhoto("father_handheld_id");
      await uploadDoc("father_handheld_id", slot.blob);
      toast("已上传");
      await continueJourney();
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  show("父亲身份核验", back,
    h("div", { class: "section-title" }, "方式一：父亲本人刷脸认证"),
    h("div", { class: "btns" }, button("父亲刷脸认证", hisFace)),
    h("div", { class: "section-title" }, "方式二：父亲不在场，上传父亲手持身份证照片（山东省）"),
    h("div", { class: "photo-grid" }, slot.el),
    err,
    h("div", { class: "btns" }, up));
}

// From a provincial app, the father cannot verify on the mother's account: she invites him to join on his own.
function inviteFatherScreen() {
  const label = S.via.label;
  const err = h("div");
  const slot = h("div");
  const invite = button("生成邀请码", () => busy(invite, async () => {
    err.replaceChildren();
    try {
      const answer = await api("POST", `${base()}/father-invitation`, { ifMatch: true });
      slot.replaceChildren(
        h("div", { class: "group" }, numberRow("邀请码", answer.invitation, "invitation-code"), info("有效期至", fmtTime(answer.expires_at))),
        h("p", { class: "hint" }, `请孩子父亲在他的手机上打开${label}，用本人实名账号登录后凭邀请码加入申请，并完成本人刷脸认证。完成后点“刷新进度”继续办理。`));
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  show("父亲身份核验", back,
    h("div", { class: "note", id: "father-own-account" },
      h("b", {}, `父亲须用本人的${label}账号刷脸认证`),
      h("div", {}, `${label}核验的是登录账号的实名本人，不能在您的账号上为孩子父亲刷脸。请邀请孩子父亲加入这份申请。`)),
    slot,
    err,
    h("div", { class: "btns" }, invite, button("刷新进度", () => continueJourney().catch((e) => showError(err, e)))));
}

// ------------------------------------------------------------------ 8. ID photos

function photoSlot(kind) {
  // The service accepts JPG and PNG only (it re-encodes them without EXIF).
  const input = h("input", { type: "file", accept: "image/jpeg,image/png", id: `file-${kind}`, "aria-label": DOC_LABELS[kind] });
  const pic = h("label", { class: "pic", for: input.id }, "+ 拍照或选择");
  const state = h("div", { class: "state" }, "未选择");
  const slot = { kind, blob: null, done: false, input, state };
  slot.set = (blob, text = "待上传") => {
    slot.blob = blob;
    slot.done = false;
    const img = h("img", { src: URL.createObjectURL(blob), alt: DOC_LABELS[kind] });
    // Not a picture the phone can show (a PDF, a damaged file): say so now rather than after uploading.
    img.addEventListener("error", () => { if (slot.blob === blob) slot.fail("无法识别的图片，请重新选择"); });
    pic.replaceChildren(img);
    state.textContent = text;
    state.className = "state";
  };
  slot.fail = (text = "上传失败，请重新选择") => {
    slot.blob = null;
    slot.done = false;
    pic.replaceChildren("+ 重新选择");
    state.textContent = text;
    state.className = "state failed";
  };
  input.addEventListener("change", () => {
    if (input.files[0]) slot.set(input.files[0], "已选择，待上传");
    input.value = ""; // choosing the same file again after a failure fires "change" again
  });
  slot.el = h("div", { class: "photo-slot" }, pic, input, h("div", {}, DOC_LABELS[kind]), state);
  return slot;
}
async function uploadDoc(kind, blob) {
  const form = new FormData();
  form.append("kind", kind);
  form.append("file", blob, blob.name || `${kind}.jpg`);
  return api("POST", `${base()}/documents`, { form });
}
// A drawn stand-in for an ID photo, for people without one at hand ("示例" in the image).
function examplePhoto(kind) {
  const c = document.createElement("canvas");
  c.width = 640;
  c.height = 404;
  const g = c.getContext("2d");
  const grad = g.createLinearGradient(0, 0, 640, 404);
  grad.addColorStop(0, "#e7f0fb");
  grad.addColorStop(1, "#f8efe2");
  g.fillStyle = "#6b6f76";
  g.fillRect(0, 0, 640, 404);
  g.fillStyle = grad;
  g.beginPath();
  g.roundRect(24, 20, 592, 364, 22);
  g.fill();
  g.fillStyle = "#1d2a44";
  if (MATERIALS.has(kind)) {  // a page of the household register or the marriage certificate
    g.font = "bold 34px sans-serif";
    g.fillText(DOC_LABELS[kind], 60, 90);
    g.font = "20px sans-serif";
    const rows = kind === "marriage_certificate"
      ? [["持证人", S.demo.name || "李娜"], ["登记日期", "2020年05月20日"], ["结婚证字号", "J130102-2020-000123"]]
      : [["户别", "家庭户"], ["户主姓名", S.father.name || "赵强"], ["住址", "河北省石家庄市长安区中山东路88号"]];
    rows.forEach(([k, v], i) => {
      g.fillStyle = "#5a6a86";
      g.fillText(k, 60, 170 + i * 56);
      g.fillStyle = "#1d2a44";
      g.fillText(v, 180, 170 + i * 56);
    });
  }
  const father = kind.startsWith("father");
  const name = father ? S.father.name || "张伟" : S.demo.name || "王芳";
  g.font = "bold 26px sans-serif";
  if (MATERIALS.has(kind)) {
    // drawn above
  } else if (kind.endsWith("_back")) {
    g.fillStyle = "#c8102e";
    g.beginPath();
    g.arc(110, 110, 52, 0, Math.PI * 2);
    g.fill();
    g.fillStyle = "#ffd700";
    g.font = "bold 40px sans-serif";
    g.fillText("★", 90, 125);
    g.fillStyle = "#1d2a44";
    g.font = "bold 34px sans-serif";
    g.fillText("中华人民共和国", 200, 110);
    g.fillText("居 民 身 份 证", 200, 160);
    g.font = "20px sans-serif";
    g.fillText("签发机关  示例市公安局示例分局", 120, 290);
    g.fillText("有效期限  2020.01.01-2040.01.01", 120, 330);
  } else {
    g.font = "20px sans-serif";
    const rows = [["姓名", name], ["性别", father ? "男" : "女"], ["民族", "汉"], ["住址", "广东省广州市越秀区中山二路58号"]];
    rows.forEach(([k, v], i) => {
      g.fillStyle = "#5a6a86";
      g.fillText(k, 60, 80 + i * 52);
      g.fillStyle = "#1d2a44";
      g.fillText(v, 130, 80 + i * 52);
    });
    g.fillStyle = "#5a6a86";
    g.fillText("公民身份号码", 60, 340);
    g.fillStyle = "#1d2a44";
    g.font = "bold 24px monospace";
    g.fillText("4401**********" + String(Math.floor(1000 + Math.random() * 8999)), 210, 340);
    g.fillStyle = "#cfd8e3";
    g.fillRect(450, 60, 130, 160);
    g.fillStyle = "#9aa9bb";
    g.beginPath();
    g.arc(515, 120, 32, 0, Math.PI * 2);
    g.fill();
    g.fillRect(470, 165, 90, 55);
    if (kind === "father_handheld_id") {
      g.fillStyle = "rgba(240,200,170,.9)";
      g.beginPath();
      g.ellipse(560, 330, 70, 40, -0.5, 0, Math.PI * 2);
      g.fill();
    }
  }
  g.save();
  g.translate(320, 220);
  g.rotate(-0.35);
  g.fillStyle = "rgba(220,40,40,.28)";
  g.font = "bold 64px sans-serif";
  g.textAlign = "center";
  g.fillText("示例 SAMPLE", 0, 0);
  g.restore();
  return new Promise((resolve) => c.toBlob((b) => resolve(b), "image/jpeg", 0.85));
}
// The photos to take: all of them the first time; after a rejection, only those the issuer sent back.
function rejectedPhotos(doc) {
  return (doc.state === "returned" && doc.rejection ? doc.rejection.fields : [])
    .filter((f) => f.startsWith("documents.")).map((f) => f.slice("documents.".length));
}
function photoKinds(doc) {
  const rejected = rejectedPhotos(doc);
  if (rejected.length) return rejected;
  const kinds = ["mother_id_front", "mother_id_back"];
  if (twoParents(doc)) kinds.push("father_id_front", "father_id_back");
  return kinds;
}
// "上传并继续": each chosen photo not uploaded yet, one after the other, then the journey's next step; a failure
// names the photo that failed (the ID photos' screen and the bundle's materials' alike).
function uploadButton(slots, err, uploaded) {
  const up = button("上传并继续", () => busy(up, async () => {
    err.replaceChildren();
    const missing = slots.filter((s) => !s.blob && !s.done);
    if (missing.length) return showError(err, new Error(`请先选择：${missing.map((s) => DOC_LABELS[s.kind]).join("、")}`));
    let current = null;
    try {
      for (const s of slots) {
        if (s.done) continue;
        current = s;
        s.state.textContent = "上传中…";
        await uploadDoc(s.kind, s.blob);
        s.done = true;
        s.state.textContent = "已上传 ✓";
        s.state.className = "state done";
      }
      current = null;
      toast(uploaded);
      await continueJourney();
    } catch (e) {
      if (current) {
        current.fail();
        const box = problemBox(e);
        box.prepend(h("b", {}, `${DOC_LABELS[current.kind]}上传失败：`));
        err.replaceChildren(box);
        err.scrollIntoView({ block: "nearest" });
      } else {
        showError(err, e);
      }
    }
  }), "btn primary");
  return up;
}
async function uploadScreen() {
  const doc = S.app || (await loadStatus());
  const kinds = photoKinds(doc);
  const slots = kinds.map(photoSlot);
  const err = h("div");
  const sample = button("使用示例照片", () => busy(sample, async () => {
    for (const s of slots) if (!s.blob) s.set(await examplePhoto(s.kind), "示例照片，待上传");
  }));
  const up = uploadButton(slots, err, "照片已上传");
  show("上传证件照片", back,
    h("div", { class: "section-title", id: "upload-title" }, rejectedPhotos(doc).length
      ? "请重新拍摄被退回的照片（四角完整、字迹清晰），其余照片无需重传"
      : "请拍摄或选择身份证原件照片（四角完整、字迹清晰）"),
    h("div", { class: "photo-grid" }, slots.map((s) => s.el)),
    h("p", { class: "hint" }, "支持 JPG 或 PNG 格式、不超过 5MB 的图片。照片上传后服务器会去除位置等 EXIF 信息并加密保存。没有证件照片？可用“使用示例照片”生成演示图片。"),
    err,
    h("div", { class: "btns" }, sample, up));
}

// ------------------------------------------------------------------ 9. the form and the e-signature

function formTable(rows) {
  return h("table", {}, rows.filter(Boolean).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v ?? "—"))));
}
async function signScreen() {
  show("签名确认", back, h("p", { class: "loading" }, "加载中…"));
  let answer, cfg;
  try {
    [answer, cfg] = await Promise.all([api("GET", `${base()}/form`), config()]);
  } catch (e) {
    return show("签名确认", back, problemBox(e), h("div", { class: "btns" }, button("返回申请进度", back)));
  }
  const f = answer.form;
  const eth = (c) => cfg.ethnic_groups[c] || c;
  const d = f.delivery;
  const person = (p) => p ? formTable([
    ["姓名", p.name], ["年龄", p.age], ["国籍", cfg.nationalities?.[p.nationality] || p.nationality], ["民族", eth(p.ethnicity)],
    ["证件号码", p.id_number], ["住址", p.address],
  ]) : h("p", {}, "（无）");
  const paper = h("div", { class: "paper", id: "form-paper" },
    h("h3", {}, f.title),
    h("div", { class: "sect" }, "分娩信息（医院录入）"),
    formTable([
      ["助产机构", d.institution_name], ["住院病历号", d.inpatient_no], ["新生儿性别", { F: "女", M: "男" }[d.newborn_sex]],
      ["出生时间", fmtTime(d.born_at)], ["孕周 / 体重 / 身长", `${d.gestational_weeks} 周 / ${d.weight_g} 克 / ${d.length_cm} 厘米`],
      ["出生地点", `${d.birthplace.province}${d.birthplace.city}${d.birthplace.county}`], ["接生人员", d.attendant],
    ]),
    h("div", { class: "sect" }, "新生儿姓名：", f.newborn?.name || "—"),
    h("div", { class: "sect" }, "母亲"), person(f.mother),
    h("div", { class: "sect" }, "父亲"), person(f.father),
    h("div", { class: "sect" }, "知情告知"), h("p", { class: "notice" }, f.notice));
  const canvas = h("canvas", { id: "sigpad", "aria-label": "签名板" });
  const pad = signaturePad(canvas);
  const err = h("div");
  const submit = button("确认签名", () => busy(submit, async () => {
    try {
      if (!pad.strokes()) throw new Error("请先在签名框内手写签名");
      const png = await pad.png();
      const form = new FormData();
      form.append("form_sha256", answer.sha256);
      form.append("file", png, "signature.png");
      await api("POST", `${base()}/signature`, { form, ifMatch: true });
      toast("签名成功");
      await continueJourney();
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  show("签名确认", back,
    h("div", { class: "section-title" }, "请核对登记表，签名即确认以下内容"),
    paper,
    h("div", { class: "section-title" }, "登记表 SHA-256（签名针对这份内容）"),
    h("div", { class: "sha", id: "form-sha" }, answer.sha256),
    h("div", { class: "sigpad-wrap" },
      h("div", { class: "head" }, h("span", {}, "申办人（母亲）手写签名"), button("清除", () => pad.clear(), "link")),
      canvas),
    err,
    h("div", { class: "btns" }, submit));
  pad.fit();
}
function signaturePad(canvas) {
  const g = canvas.getContext("2d");
  let drawing = false;
  let strokes = 0;
  let last = null;
  const ratio = () => window.devicePixelRatio || 1;
  const pos = (e) => {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  const pad = {
    fit() {
      const r = canvas.getBoundingClientRect();
      canvas.width = Math.round(r.width * ratio());
      canvas.height = Math.round(r.height * ratio());
      g.setTransform(ratio(), 0, 0, ratio(), 0, 0);
      g.lineWidth = 3.2;
      g.lineCap = "round";
      g.lineJoin = "round";
      g.strokeStyle = "#111";
      strokes = 0;
    },
    clear() { g.clearRect(0, 0, canvas.width, canvas.height); strokes = 0; },
    strokes: () => strokes,
    png: () => new Promise((resolve) => canvas.toBlob((b) => resolve(b), "image/png")),
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    last = pos(e);
    canvas.setPointerCapture?.(e.pointerId);
    e.preventDefault();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const p = pos(e);
    g.beginPath();
    g.moveTo(...last);
    g.lineTo(...p);
    g.stroke();
    last = p;
    strokes += 1;
  });
  const end = () => { drawing = false; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("pointerleave", end);
  return pad;
}

// ------------------------------------------------------------------ 10. delivery method, postage (wx.requestPayment), submit

async function deliveryScreen() {
  const doc = S.app || (await loadStatus());
  const root = h("div");
  const err = h("div");
  const method = radios("method", [["ems", "邮政速递到家"], ["pickup", "到签发机构现场领取"]], "ems");
  const rName = h("input", { id: "recipient-name", value: S.demo.name || "", autocomplete: "off" });
  const rPhone = h("input", { id: "recipient-phone", type: "tel", maxlength: "11", placeholder: "11 位手机号", autocomplete: "off" });
  const rAddr = h("textarea", { id: "recipient-address", rows: "2", placeholder: "省市区街道门牌号" });
  const emsBox = h("div", {},
    h("div", { class: "section-title" }, "收件信息"),
    h("div", { class: "group" }, field("收件人", rName), field("手机号", rPhone), stackField("收件地址", rAddr)),
    h("p", { class: "hint" }, doc.province === "SD" ? "山东省：邮寄费（20 元）须在线预付。" : "广东省：邮寄费由申办人与邮政速递部门结算。"));
  root.addEventListener("change", () => { emsBox.hidden = radioValue(root, "method") !== "ems"; });
  const go = button("确定", () => busy(go, async () => {
    try {
      const m = radioValue(root, "method");
      const body = m === "ems"
        ? { method: "ems", recipient: { name: rName.value.trim(), phone: rPhone.value.trim(), address: rAddr.value.trim() } }
        : { method: "pickup" };
      await api("PUT", `${base()}/delivery-method`, { json: body, ifMatch: true });
      toast("已选择领取方式");
      await continueJourney();
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  root.append(
    h("div", { class: "section-title" }, "领取方式"),
    h("div", { class: "group" }, h("div", { class: "cell" }, method)),
    emsBox, err, h("div", { class: "btns" }, go));
  show("领取方式", back, root);
}

async function payScreen() {
  const err = h("div");
  const start = button("支付邮寄费", () => busy(start, async () => {
    try {
      const order = await api("POST", `${base()}/payments`);
      const paid = await simulatedPayment(order);
      if (!paid) return;
      await fake("/_fake/pay/notify", { out_trade_no: order.out_trade_no });
      // The payment notification reaches the service from the platform: wait until the status shows it.
      for (let i = 0; i < 30; i++) {
        const doc = await api("GET", base());
        if (doc.postage?.paid) break;
        await new Promise((r) => setTimeout(r, 150));
      }
      toast("支付成功");
      S.version = null;
      await continueJourney();
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  show("支付邮寄费", back,
    h("div", { class: "section-title" }, "邮寄费"),
    h("div", { class: "group" }, info("项目", "出生医学证明 EMS 邮寄费"), info("收款方", "中国邮政速递物流（代收）")),
    h("p", { class: "hint" }, "将调用 wx.requestPayment；在模拟器中由模拟微信平台发送支付结果通知。"),
    err, h("div", { class: "btns" }, start));
}
function simulatedPayment(order) {
  return new Promise((resolve) => {
    const close = (v) => { mask.remove(); resolve(v); };
    const mask = h("div", { class: "sheet-mask", role: "dialog", "aria-label": "微信支付（模拟）" },
      h("div", { class: "sheet" },
        h("div", {}, "微信支付（模拟）"),
        h("div", { class: "amount" }, `¥${(order.amount_fen / 100).toFixed(2)}`),
        h("div", { class: "merchant" }, `出生医学证明邮寄费 · 订单 ${order.out_trade_no.slice(0, 14)}…`),
        h("div", { class: "btns" }, button("确认支付", () => close(true), "btn primary"), button("取消", () => close(false)))));
    document.getElementById("phone").append(mask);
  });
}

async function submitScreen() {
  const doc = await loadStatus();
  const err = h("div");
  const promise = h("input", { type: "checkbox", id: "promise" });
  const go = button("提交申请", () => busy(go, async () => {
    try {
      if (!promise.checked) throw new Error("请先勾选承诺");
      await api("POST", `${base()}/submit`);
      toast("已提交审核");
      await statusScreen(await loadStatus());
    } catch (e) {
      showError(err, e);
    }
  }), "btn primary");
  show("提交申请", back,
    h("div", { class: "section-title" }, "已完成"),
    h("ul", { class: "steps" }, doc.done_steps.map((s) => h("li", { class: "done" }, s.label))),
    h("div", { class: "group" },
      h("div", { class: "cell" }, promise, h("label", { for: "promise", style: null }, "本人承诺所填信息真实有效"))),
    h("p", { class: "hint" }, `提交后由签发机构审核（审核期间不能修改；如需修改请先撤回）。审核结果将通过${S.via ? `${S.via.label}消息` : "微信服务通知"}告知。`),
    err, h("div", { class: "btns" }, go));
}

// ------------------------------------------------------------------ start

(async () => {
  if (location.pathname.endsWith("/face-return")) return faceReturned();
  const faceAnswer = JSON.parse(sessionStorage.getItem("h5.faceReturn") || "null");
  if (faceAnswer && S.token) return finishAppFace(faceAnswer);
  if (!S.token) return loginScreen();
  try {
    if (S.appId) await statusScreen();
    else await listScreen();
  } catch {
    loginScreen();
  }
})();
