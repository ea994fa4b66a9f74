// 出生医学证明办理统计: the managers' page (docs/decisions/0043). The figures come from GET /api/v1/statistics
// with the session the console's login made (sessionStorage); the charts are drawn by Chart.js, served from here.

const SESSION_KEY = "birthcert.console.session";
const Chart = window.Chart;
const COLORS = ["#1d4f91", "#1e7d46", "#c0392b", "#9a6700", "#5b2c9c", "#0f7b8a", "#7a5230", "#5f6b7a"];
const charts = {};

const $ = (selector) => document.querySelector(selector);

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (saved && saved.token && saved.expiresAt > Date.now() + 5000) return saved;
  } catch {
    /* a damaged entry is no session */
  }
  return null;
}

const session = loadSession();
if (!session || session.role !== "manager") {
  location.replace("./");
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

function beijingToday() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai" }).format(new Date());
}

function shiftDay(iso, days) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

function query(format) {
  const params = new URLSearchParams({ from: $("#from").value, to: $("#to").value, granularity: $("#granularity").value });
  if ($("#scope").value.trim()) params.set("scope", $("#scope").value.trim());
  if (format) params.set("format", format);
  return `/api/v1/statistics?${params}`;
}

async function fetchFigures(format) {
  const response = await fetch(query(format), { headers: { Authorization: `Bearer ${session.token}` } });
  if (response.status === 401) {
    sessionStorage.removeItem(SESSION_KEY);
    location.replace("./");
    throw new Error("登录已过期，请重新登录");
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || problem.title || `查询失败（${response.status}）`);
  }
  return response;
}

const hours = (seconds) => (seconds === null || seconds === undefined ? null : Math.round((seconds / 3600) * 10) / 10);
const percent = (share) => (share === null || share === undefined ? "—" : `${(share * 100).toFixed(1)}%`);
function hoursText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} 分钟`;
  return `${hours(seconds)} 小时`;
}

function card(label, value, note, alert) {
  return el("div", { class: `card${alert ? " card-alert" : ""}` },
    el("div", { class: "card-label" }, label),
    el("div", { class: "card-value" }, String(value)),
    note ? el("div", { class: "card-note" }, note) : null);
}

function renderCards(body) {
  const t = body.total;
  $("#cards").replaceChildren(
    card("开始申请", t.started),
    card("首次提交", t.submitted, `修改后再次提交 ${t.resubmitted}`),
    card("签发", t.issued),
    card("送达（签收/领取）", t.delivered + t.collected, `邮寄 ${t.delivered} · 现场 ${t.collected}`),
    card("网办占比", percent(t.online_share), `转窗口 ${t.referred} 件`),
    card("签发用时中位数", hoursText(t.issue_seconds.median), `P90 ${hoursText(t.issue_seconds.p90)}`),
    card("送达用时中位数", hoursText(t.delivery_seconds.median), `P90 ${hoursText(t.delivery_seconds.p90)}`),
    card("当前超时待审", body.overdue_open, `期内超时办结 ${t.decided_late} 件`, body.overdue_open > 0),
    card("宣布作废", t.revoked),
  );
  const late = Object.values(body.bundle_overdue_open || {}).reduce((sum, n) => sum + n, 0);
  const parts = Object.values(t.bundle || {});
  if (parts.length || late) {
    const answered = parts.reduce((sum, p) => sum + p.on_time + p.late, 0);
    const onTime = parts.reduce((sum, p) => sum + p.on_time, 0);
    $("#cards").append(
      card("一件事部门按时答复", answered ? percent(onTime / answered) : "—", `${answered} 件答复，超时 ${answered - onTime} 件`),
      card("一件事超时未答复", late, "各部门当前超过办理时限仍未答复", late > 0),
    );
  }
}

function draw(id, config) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(document.getElementById(id), config);
}

const axis = (title) => ({ beginAtZero: true, title: { display: Boolean(title), text: title }, ticks: { precision: 0 } });

function periodLabel(body, period) {
  return body.granularity === "week" ? `${period.slice(5)}周` : period.slice(5);
}

function renderCharts(body) {
  const labels = body.periods.map((p) => periodLabel(body, p.period));
  const series = (key) => body.periods.map((p) => p[key]);
  draw("chart-volume", {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "开始申请", data: series("started"), backgroundColor: COLORS[7] },
        { label: "首次提交", data: series("submitted"), backgroundColor: COLORS[0] },
        { label: "签发", data: series("issued"), backgroundColor: COLORS[1] },
        { label: "送达", data: body.periods.map((p) => p.delivered + p.collected), type: "line", borderColor: COLORS[3], backgroundColor: COLORS[3] },
      ],
    },
    options: { scales: { y: axis("件") } },
  });
  draw("chart-online", {
    type: "line",
    data: {
      labels,
      datasets: [{ label: "网办占比", data: body.periods.map((p) => (p.online_share === null ? null : p.online_share * 100)), borderColor: COLORS[1], backgroundColor: COLORS[1], spanGaps: true }],
    },
    options: { scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } } },
  });
  const d = (kind, stat) => body.periods.map((p) => hours(p[`${kind}_seconds`][stat]));
  draw("chart-durations", {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: "签发 中位数", data: d("issue", "median"), borderColor: COLORS[0], backgroundColor: COLORS[0], spanGaps: true },
        { label: "签发 P90", data: d("issue", "p90"), borderColor: COLORS[0], backgroundColor: COLORS[0], borderDash: [6, 4], spanGaps: true },
        { label: "送达 中位数", data: d("delivery", "median"), borderColor: COLORS[3], backgroundColor: COLORS[3], spanGaps: true },
        { label: "送达 P90", data: d("delivery", "p90"), borderColor: COLORS[3], backgroundColor: COLORS[3], borderDash: [6, 4], spanGaps: true },
      ],
    },
    options: { scales: { y: { beginAtZero: true, title: { display: true, text: "小时" } } } },
  });
  draw("chart-overdue", {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "按时办结", data: body.periods.map((p) => p.decided - p.decided_late), backgroundColor: COLORS[1], stack: "s" },
        { label: "超时办结", data: series("decided_late"), backgroundColor: COLORS[2], stack: "s" },
      ],
    },
    options: { scales: { x: { stacked: true }, y: { ...axis("件"), stacked: true } } },
  });
  const names = body.labels;
  // By reason code (the issuer's picklist), then by field ("· "): a rejection may count under several of each.
  const byReason = body.total.rejections_by_reason;
  const byField = body.total.rejections_by_field;
  draw("chart-rejections", {
    type: "bar",
    data: {
      labels: [...Object.keys(byReason).map((k) => names.rejections_by_reason[k] || k), ...Object.keys(byField).map((k) => `· ${names.rejections_by_field[k] || k}`)],
      datasets: [{
        label: "驳回件数",
        data: [...Object.values(byReason), ...Object.values(byField)],
        backgroundColor: [...Object.keys(byReason).map(() => COLORS[2]), ...Object.keys(byField).map(() => "#e59a91")],
      }],
    },
    options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: axis("件") } },
  });
  // 出生一件事 by department (decision 0049): its answers against the time limit, and its turnaround.
  const departments = Object.keys(names.bundle_departments || {});
  const part = (d) => body.total.bundle[d] || { on_time: 0, late: 0, turnaround_seconds: { median: null, p90: null } };
  const departmentNames = departments.map((d) => names.bundle_departments[d]);
  document.getElementById("bundle-answers").hidden = !departments.length;
  document.getElementById("bundle-turnaround").hidden = !departments.length;
  draw("chart-bundle-answers", {
    type: "bar",
    data: {
      labels: departmentNames,
      datasets: [
        { label: "按时答复", data: departments.map((d) => part(d).on_time), backgroundColor: COLORS[1], stack: "s" },
        { label: "超时答复", data: departments.map((d) => part(d).late), backgroundColor: COLORS[2], stack: "s" },
        { label: "超时未答复（当前）", data: departments.map((d) => (body.bundle_overdue_open || {})[d] || 0), backgroundColor: COLORS[3], stack: "s" },
      ],
    },
    options: { indexAxis: "y", scales: { x: { ...axis("件"), stacked: true }, y: { stacked: true } } },
  });
  draw("chart-bundle-turnaround", {
    type: "bar",
    data: {
      labels: departmentNames,
      datasets: [
        { label: "中位数", data: departments.map((d) => hours(part(d).turnaround_seconds.median)), backgroundColor: COLORS[0] },
        { label: "P90", data: departments.map((d) => hours(part(d).turnaround_seconds.p90)), backgroundColor: COLORS[5] },
      ],
    },
    options: { indexAxis: "y", scales: { x: { beginAtZero: true, title: { display: true, text: "小时" } } } },
  });
  const referrals = body.total.referrals_by_reason;
  draw("chart-referrals", {
    type: "bar",
    data: {
      labels: Object.keys(referrals).map((k) => names.referrals_by_reason[k] || k),
      datasets: [{ label: "转窗口件数", data: Object.values(referrals), backgroundColor: COLORS[4] }],
    },
    options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: axis("件") } },
  });
}

async function refresh() {
  $("#error").hidden = true;
  try {
    const body = await (await fetchFigures()).json();
    $("#header-scope").textContent = `统计范围：${body.scope.label}（${body.scope.kind}:${body.scope.code}）`;
    $("#as-of").textContent = `${body.from} 至 ${body.to}，按${body.granularity === "week" ? "周（周一起）" : "日"}，北京时间；数据截至 ${body.as_of.replace("T", " ").slice(0, 19)}`;
    document.body.dataset.loaded = "true";
    renderCards(body);
    renderCharts(body);
  } catch (error) {
    $("#error").textContent = error.message;
    $("#error").hidden = false;
  }
}

async function download() {
  $("#error").hidden = true;
  try {
    const response = await fetchFigures("csv");
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `出生医学证明统计_${$("#from").value}_${$("#to").value}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    $("#error").textContent = error.message;
    $("#error").hidden = false;
  }
}

if (session && session.role === "manager") {
  Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.animation = false;
  Chart.defaults.datasets.bar.maxBarThickness = 28;
  const today = beijingToday();
  $("#to").value = today;
  $("#from").value = shiftDay(today, -13);
  $("#header-user").textContent = `统计管理 ${session.name || ""}`;
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
  $("#download").addEventListener("click", download);
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(SESSION_KEY);
    location.replace("./");
  });
  refresh();
}
